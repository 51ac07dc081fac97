/**
 * @module
 * The sidecar's routes on the wire engine, the same as the Hono app's:
 * `GET`/`HEAD /health` answered here, `POST` on a generation API with a
 * prefiller header run through the connector, everything else relayed to the
 * decoder byte for byte. Errors are rendered by `toErrorResponse`, as on the
 * app, and logged by `reportError`.
 */

import { getConnector } from "../connectors/mod.ts";
import type { Deps } from "../context.ts";
import { reportError, toErrorResponse } from "../errors.ts";
import { type Logger, VERBOSITY_DEBUG } from "../log.ts";
import { requestIdOf } from "../middleware/request_context.ts";
import { selectPrefillTarget } from "../prefill_selection.ts";
import { API_PATHS, type ApiKind } from "../protocol/api.ts";
import {
  OMITTED_ON_PD_LEGS,
  PATH_HEALTH,
  ROUTING_HEADERS,
} from "../protocol/fields.ts";
import { parseGenerationRequest } from "../protocol/request.ts";
import { buildUpstreamHeaders } from "../upstream/headers.ts";
import type { DecoderAnswer, WireDecoder } from "./decoder_leg.ts";
import { relayResponse, writeResponse } from "./response.ts";
import type { Exchange, WireHandler } from "./server.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const API_BY_PATH: ReadonlyMap<string, ApiKind> = new Map(
  (Object.entries(API_PATHS) as [ApiKind, string][]).map((
    [api, path],
  ) => [path, api]),
);

// The sidecar answers 100 Continue itself, so `expect` stops here.
const OMITTED_ON_PASSTHROUGH = [...ROUTING_HEADERS, "content-length", "expect"];

/** Dependencies of the wire handler: the app's, plus the decoder client. */
export interface WireDeps extends Deps {
  readonly decoder: WireDecoder;
}

/** Builds the handler serving the sidecar's routes on the wire engine. */
export function createWireHandler(deps: WireDeps): WireHandler {
  const connector = getConnector(deps.config.connector);
  const random = deps.random ?? Math.random;
  const sampling = deps.config.enablePrefillerSampling;
  const { decoder: wireDecoder } = deps;

  async function relay(
    exchange: Exchange,
    answer: DecoderAnswer,
  ): Promise<number> {
    let complete = false;
    const abort = () => wireDecoder.release(answer, false);
    exchange.signal.addEventListener("abort", abort, { once: true });
    try {
      await relayResponse(exchange, answer.reader, answer.head);
      complete = true;
    } finally {
      exchange.signal.removeEventListener("abort", abort);
      wireDecoder.release(answer, complete && !exchange.signal.aborted);
    }
    return answer.head.status;
  }

  async function passthrough(exchange: Exchange, log: Logger): Promise<number> {
    const { head } = exchange;
    if (log.enabled(VERBOSITY_DEBUG)) {
      log.debug("proxying to decoder", {
        method: head.method,
        path: head.path,
      });
    }
    const headers = buildUpstreamHeaders(head.headers, {
      clientIp: exchange.remoteAddr.hostname,
      omit: OMITTED_ON_PASSTHROUGH,
    });
    const { framing } = head;
    // A body already received whole goes in the same write as the head.
    const buffered = framing.kind === "none" ||
      (framing.kind === "length" &&
        exchange.reader.buffered >= framing.length);
    const answer = await wireDecoder.send({
      method: head.method,
      target: head.target,
      headers,
      ...(buffered
        ? { body: await exchange.readBody() }
        : { stream: exchange }),
      signal: exchange.signal,
    });
    return await relay(exchange, answer);
  }

  async function generation(
    exchange: Exchange,
    api: ApiKind,
    log: Logger,
    requestId: string,
  ): Promise<number> {
    const { head } = exchange;
    const prefiller = selectPrefillTarget(head.headers, { sampling, random });
    if (prefiller === undefined) {
      log.debug("skip disaggregated prefill: no prefiller header");
      return await passthrough(exchange, log);
    }
    const request = parseGenerationRequest(
      decoder.decode(await exchange.readBody()),
    );
    log.debug("using P/D protocol", {
      connector: connector.name,
      prefiller: prefiller.hostPort,
    });
    log.trace("client request", { body: request.text });
    const answer = await connector.run<DecoderAnswer>({
      api,
      pathAndQuery: head.target,
      request,
      prefiller,
      decoder: wireDecoder.hostPort,
      decode: (leg) =>
        wireDecoder.send({
          method: "POST",
          target: head.target,
          headers: leg.headers,
          body: encoder.encode(leg.body),
          signal: exchange.signal,
        }),
      requestId,
      headers: buildUpstreamHeaders(head.headers, {
        clientIp: exchange.remoteAddr.hostname,
        omit: OMITTED_ON_PD_LEGS,
      }),
      signal: exchange.signal,
      log: log.child({ prefiller: prefiller.hostPort }),
      upstream: deps.upstream,
    });
    return await relay(exchange, answer);
  }

  function route(
    exchange: Exchange,
    log: Logger,
    requestId: string,
  ): Promise<number> {
    const { method, path } = exchange.head;
    if (path === PATH_HEALTH && (method === "GET" || method === "HEAD")) {
      return writeResponse(exchange, new Response(null, { status: 200 }))
        .then(() => 200);
    }
    const api = method === "POST" ? API_BY_PATH.get(path) : undefined;
    if (api !== undefined) return generation(exchange, api, log, requestId);
    return passthrough(exchange, log);
  }

  return async function handle(exchange) {
    const started = performance.now();
    const { head } = exchange;
    const requestId = requestIdOf(head.headers);
    const log = deps.log.child({ request_id: requestId });
    let status: number;
    try {
      status = await route(exchange, log, requestId);
    } catch (error) {
      if (exchange.headSent) {
        // The answer was already streaming: all that is left is to end it.
        exchange.closeAfter = true;
        if (!exchange.signal.aborted) {
          log.warn("decoder answer broken off", {
            path: head.path,
            error: error instanceof Error ? error.message : String(error),
          });
        }
        return;
      }
      const failure = reportError(error, log, {
        aborted: exchange.signal.aborted,
        path: head.path,
      });
      if (exchange.signal.aborted) {
        exchange.closeAfter = true;
        return;
      }
      // An unread body would be taken for the next request.
      if (!exchange.bodyDone) exchange.closeAfter = true;
      const response = toErrorResponse(failure);
      await writeResponse(exchange, response);
      status = response.status;
    }
    if (log.enabled(VERBOSITY_DEBUG)) {
      log.debug("request handled", {
        method: head.method,
        path: head.path,
        status,
        duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
      });
    }
  };
}
