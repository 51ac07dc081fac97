/**
 * @module
 * `POST` on the generation APIs: with a prefill target the configured
 * connector runs P/D; without one the request is passed through untouched
 * (its body is not even parsed).
 */

import type { Handler } from "hono";
import { createPdRunner } from "../connectors/run.ts";
import type { AppEnv, Deps } from "../context.ts";
import type { ApiKind } from "../protocol/api.ts";
import {
  clientIpOf,
  passthroughRequest,
  pathAndQueryOf,
} from "./passthrough.ts";

/** Handler for one generation API. */
export function createGenerationHandler(
  deps: Deps,
  api: ApiKind,
): Handler<AppEnv> {
  const pd = createPdRunner(deps);
  return async function generation(c) {
    const log = c.get("log");
    const request = c.req.raw;
    const prefiller = pd.select(request.headers);
    if (prefiller === undefined) {
      log.debug("skip disaggregated prefill: no prefiller header");
      return passthroughRequest(deps, c);
    }
    const access = c.get("access");
    access.route = "pd";
    access.connector = deps.config.connector;
    access.prefillTarget = prefiller.hostPort;
    return await pd.run(prefiller, {
      api,
      pathAndQuery: pathAndQueryOf(request),
      headers: request.headers,
      clientIp: clientIpOf(c),
      requestId: c.get("requestId"),
      signal: request.signal,
      log,
      readBody: () => request.text(),
    });
  };
}
