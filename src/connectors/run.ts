/**
 * @module
 * The P/D entry of the generation route: choosing the prefiller from the
 * routing headers, and, when there is one, parsing the body and running the
 * configured connector with the legs' shared headers and transports.
 */

import { decoderHostPort } from "../config.ts";
import type { Deps } from "../context.ts";
import { ProxyError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { selectPrefillTarget } from "../prefill_selection.ts";
import type { ApiKind } from "../protocol/api.ts";
import { HEADER_REQUEST_ID, OMITTED_ON_PD_LEGS } from "../protocol/fields.ts";
import { parseGenerationRequest } from "../protocol/request.ts";
import {
  buildUpstreamHeaders,
  type HeaderList,
  type HeaderSource,
} from "../upstream/headers.ts";
import { forwardToDecoder } from "../upstream/relay.ts";
import { httpUrl, type UpstreamTarget } from "../upstream/target.ts";
import { getConnector } from "./mod.ts";
import type { DecodeLeg } from "./types.ts";

/** One generation request as the route hands it over. */
export interface PdRequest {
  readonly api: ApiKind;
  /** Path and query, reused on both legs. */
  readonly pathAndQuery: string;
  readonly headers: HeaderSource;
  /** The client's address, appended to `X-Forwarded-For`. */
  readonly clientIp: string | undefined;
  readonly requestId: string;
  /** Fires when the client disconnects. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Reads the request body whole. */
  readBody(): Promise<string>;
}

/** Chooses prefillers and runs P/D. */
export interface PdRunner {
  /** The prefiller the headers name, or undefined (plain decode); throws a 400 for a bad value. */
  select(headers: HeaderSource): UpstreamTarget | undefined;
  /** Parses the body and runs the connector's protocol against `prefiller`. */
  run(prefiller: UpstreamTarget, request: PdRequest): Promise<Response>;
}

/** Headers of both legs, built once per request. */
function legHeaders(request: PdRequest): HeaderList {
  const headers = buildUpstreamHeaders(request.headers, {
    clientIp: request.clientIp,
    omit: OMITTED_ON_PD_LEGS,
  });
  headers.push(
    ["content-type", "application/json"],
    [HEADER_REQUEST_ID, request.requestId],
  );
  return headers;
}

/**
 * Throws when the client has gone: a leg not yet sent must not start for
 * nobody (a decode would hold GPU memory for a reader that left).
 */
export function ensureClientPresent(signal: AbortSignal): void {
  if (signal.aborted) {
    throw new ProxyError(499, "Client disconnected before the request ended");
  }
}

/** Builds the P/D entry from the sidecar's dependencies. */
export function createPdRunner(deps: Deps): PdRunner {
  const connector = getConnector(deps.config.connector);
  const options = {
    sampling: deps.config.enablePrefillerSampling,
    random: deps.random ?? Math.random,
  };
  const decoder = decoderHostPort(deps.config);
  return {
    select: (headers) => selectPrefillTarget(headers, options),
    async run(prefiller, request) {
      const { log, signal, pathAndQuery } = request;
      const parsed = parseGenerationRequest(await request.readBody());
      ensureClientPresent(signal);
      log.debug("using P/D protocol", {
        connector: connector.name,
        prefiller: prefiller.hostPort,
      });
      log.trace("client request", { body: parsed.text });
      return await connector.run({
        api: request.api,
        pathAndQuery,
        request: parsed,
        prefiller,
        prefillUrl: httpUrl(prefiller.hostPort, pathAndQuery),
        decoder,
        decode: (leg: DecodeLeg) => {
          ensureClientPresent(signal);
          return forwardToDecoder(deps.upstream, {
            hostPort: decoder,
            pathAndQuery,
          }, {
            method: "POST",
            headers: leg.headers,
            body: leg.body,
            signal,
          });
        },
        headers: legHeaders(request),
        signal,
        log: log.child({ prefiller: prefiller.hostPort }),
        upstream: deps.upstream,
      });
    },
  };
}
