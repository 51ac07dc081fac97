/**
 * @module
 * `POST` on the generation APIs: with a prefill target the configured
 * connector runs P/D; without one the request is passed through untouched
 * (its body is not even parsed).
 */

import type { Handler } from "hono";
import { getConnector } from "../connectors/mod.ts";
import type { AppEnv, Deps } from "../context.ts";
import type { ApiKind } from "../protocol/api.ts";
import { OMITTED_ON_PD_LEGS } from "../protocol/fields.ts";
import { parseGenerationRequest } from "../protocol/request.ts";
import { selectPrefillTarget } from "../prefill_selection.ts";
import { buildUpstreamHeaders } from "../upstream/headers.ts";
import { forwardToDecoder } from "../upstream/relay.ts";
import {
  clientIpOf,
  decoderBaseUrl,
  passthroughRequest,
  pathAndQueryOf,
} from "./passthrough.ts";

/** Handler for one generation API. */
export function createGenerationHandler(
  deps: Deps,
  api: ApiKind,
): Handler<AppEnv> {
  const connector = getConnector(deps.config.connector);
  const random = deps.random ?? Math.random;
  const sampling = deps.config.enablePrefillerSampling;
  return async function generation(c) {
    const log = c.get("log");
    const request = c.req.raw;
    const prefiller = selectPrefillTarget(request.headers, {
      sampling,
      random,
    });
    if (prefiller === undefined) {
      log.debug("skip disaggregated prefill: no prefiller header");
      return passthroughRequest(deps, c);
    }
    const parsed = parseGenerationRequest(await request.text());
    log.debug("using P/D protocol", {
      connector: connector.name,
      prefiller: prefiller.hostPort,
    });
    log.trace("client request", { body: parsed.text });
    return connector.run({
      api,
      pathAndQuery: pathAndQueryOf(request),
      request: parsed,
      prefiller,
      decoder: `127.0.0.1:${deps.config.vllmPort}`,
      decode: (leg) =>
        forwardToDecoder(deps.upstream, {
          baseUrl: decoderBaseUrl(deps),
          pathAndQuery: pathAndQueryOf(request),
        }, {
          method: "POST",
          headers: leg.headers,
          body: leg.body,
          signal: request.signal,
        }),
      requestId: c.get("requestId"),
      headers: buildUpstreamHeaders(request.headers, {
        clientIp: clientIpOf(c),
        omit: OMITTED_ON_PD_LEGS,
      }),
      signal: request.signal,
      log: log.child({ prefiller: prefiller.hostPort }),
      upstream: deps.upstream,
    });
  };
}
