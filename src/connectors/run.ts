/**
 * @module
 * The P/D entry both engines share: choosing the prefiller from the routing
 * headers, and, when there is one, parsing the body and running the
 * configured connector. An engine supplies only its transport: how the body
 * is read and how the decode leg is sent.
 */

import { decoderHostPort } from "../config.ts";
import type { Deps } from "../context.ts";
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
import type { UpstreamTarget } from "../upstream/target.ts";
import { getConnector } from "./mod.ts";
import type { DecodeSender } from "./types.ts";

/** One generation request as an engine hands it over. */
export interface PdRequest<R> {
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
  /** Sends the decode leg on the engine's transport. */
  readonly decode: DecodeSender<R>;
}

/** Chooses prefillers and runs P/D for either engine. */
export interface PdRunner {
  /** The prefiller the headers name, or undefined (plain decode); throws a 400 for a bad value. */
  select(headers: HeaderSource): UpstreamTarget | undefined;
  /** Parses the body and runs the connector's protocol against `prefiller`. */
  run<R>(prefiller: UpstreamTarget, request: PdRequest<R>): Promise<R>;
}

/** Headers of both legs, built once per request. */
function legHeaders(request: PdRequest<unknown>): HeaderList {
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
      const { log } = request;
      const parsed = parseGenerationRequest(await request.readBody());
      log.debug("using P/D protocol", {
        connector: connector.name,
        prefiller: prefiller.hostPort,
      });
      log.trace("client request", { body: parsed.text });
      return await connector.run({
        api: request.api,
        pathAndQuery: request.pathAndQuery,
        request: parsed,
        prefiller,
        decoder,
        decode: request.decode,
        headers: legHeaders(request),
        signal: request.signal,
        log: log.child({ prefiller: prefiller.hostPort }),
        upstream: deps.upstream,
      });
    },
  };
}
