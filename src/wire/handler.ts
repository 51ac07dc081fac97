/**
 * @module
 * The sidecar's routes on the wire engine, the same as the Hono app's:
 * `GET`/`HEAD /health` answered here, `POST` on a generation API with a
 * prefiller header run through the connector, everything else relayed to the
 * decoder byte for byte. Errors are rendered by `toErrorResponse`, as on the
 * app, and logged by `reportError`.
 */

import { createPdRunner } from "../connectors/run.ts";
import type { Deps } from "../context.ts";
import { errorMessage, reportError, toErrorResponse } from "../errors.ts";
import { type Logger, VERBOSITY_DEBUG } from "../log.ts";
import { logHandled, requestIdOf } from "../middleware/request_context.ts";
import { API_PATHS, type ApiKind } from "../protocol/api.ts";
import { PATH_HEALTH, ROUTING_HEADERS } from "../protocol/fields.ts";
import { buildUpstreamHeaders } from "../upstream/headers.ts";
import type { DecoderAnswer, WireDecoder } from "./decoder_leg.ts";
import { relayResponse, writeResponse } from "./response.ts";
import type { Exchange, WireHandler } from "./server.ts";

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
  const pd = createPdRunner(deps);
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
    const prefiller = pd.select(head.headers);
    if (prefiller === undefined) {
      log.debug("skip disaggregated prefill: no prefiller header");
      return await passthrough(exchange, log);
    }
    const answer = await pd.run<DecoderAnswer>(prefiller, {
      api,
      pathAndQuery: head.target,
      headers: head.headers,
      clientIp: exchange.remoteAddr.hostname,
      requestId,
      signal: exchange.signal,
      log,
      readBody: () => exchange.readText(),
      decode: (leg) =>
        wireDecoder.send({
          method: "POST",
          target: head.target,
          headers: leg.headers,
          body: leg.body,
          signal: exchange.signal,
        }),
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
            error: errorMessage(error),
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
      const response = toErrorResponse(failure);
      await writeResponse(exchange, response);
      status = response.status;
    }
    if (!log.enabled(VERBOSITY_DEBUG)) return;
    logHandled(log, {
      method: head.method,
      path: head.path,
      status,
      started,
    });
  };
}
