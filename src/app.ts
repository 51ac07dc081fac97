/**
 * @module
 * The sidecar as a Hono app: routes, middleware and the one place errors are
 * rendered. No I/O happens here; `main.ts` serves it, tests call it in process.
 */

import { Hono } from "hono";
import type { Context } from "hono";
import type { AppEnv, Deps } from "./context.ts";
import { ProxyError, toErrorResponse } from "./errors.ts";
import { requestContext } from "./middleware/request_context.ts";
import { API_PATHS, type ApiKind } from "./protocol/api.ts";
import { PATH_HEALTH } from "./protocol/fields.ts";
import { createGenerationHandler } from "./routes/generation.ts";
import { health } from "./routes/health.ts";
import { createPassthroughHandler } from "./routes/passthrough.ts";

const APIS: readonly ApiKind[] = ["chat", "completions", "responses"];

function renderError(error: Error, c: Context<AppEnv>): Response {
  const log = c.get("log");
  if (!(error instanceof ProxyError)) {
    log.error("unexpected error while handling the request", { error });
    return toErrorResponse(
      new ProxyError(500, `Internal error in the sidecar: ${error.message}`),
    );
  }
  if (c.req.raw.signal.aborted) {
    // Nobody is left to read the answer; not an error of the sidecar's.
    log.debug("client disconnected", { path: c.req.path });
  } else if (error.status >= 500) {
    log.error(error.message, { status: error.status, cause: error.cause });
  } else {
    log.info(error.message, { status: error.status });
  }
  return toErrorResponse(error);
}

/** Builds the sidecar app from its dependencies. */
export function createApp(deps: Deps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use(requestContext(deps.log));
  app.get(PATH_HEALTH, health);
  for (const api of APIS) {
    app.post(API_PATHS[api], createGenerationHandler(deps, api));
  }
  app.all("*", createPassthroughHandler(deps));
  app.onError(renderError);
  return app;
}
