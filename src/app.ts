/**
 * @module
 * The sidecar as a Hono app: routes, middleware and the one place errors are
 * rendered. No I/O happens here; `main.ts` serves it, tests call it in process.
 */

import { Hono } from "hono";
import type { Context } from "hono";
import type { AppEnv, Deps } from "./context.ts";
import { reportError, toErrorResponse } from "./errors.ts";
import { requestGuards } from "./middleware/request_guards.ts";
import { requestContext } from "./middleware/request_context.ts";
import { API_KINDS, API_PATHS, usesAnthropicErrors } from "./protocol/api.ts";
import { PATH_HEALTH } from "./protocol/fields.ts";
import { createGenerationHandler } from "./routes/generation.ts";
import { createHealthHandler } from "./routes/health.ts";
import { createPassthroughHandler } from "./routes/passthrough.ts";

function renderError(error: Error, c: Context<AppEnv>): Response {
  const access = c.get("access");
  // A refused Host moved the router's path off the one asked for (the guard noted it).
  const path = access.targetPath ?? c.req.path;
  const answered = reportError(error, c.get("log"), {
    aborted: c.get("clientGone").aborted,
    path,
  });
  access.errorCode = answered.code;
  return toErrorResponse(
    answered,
    usesAnthropicErrors(path) ? "anthropic" : "vllm",
  );
}

/** Builds the sidecar app from its dependencies. */
export function createApp(deps: Deps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use(
    requestContext(deps.log, {
      ...(deps.metrics ? { metrics: deps.metrics } : {}),
      ...(deps.tracing ? { tracing: deps.tracing } : {}),
    }),
  );
  app.use(requestGuards(deps.config.maxRequestBodyBytes));
  app.get(PATH_HEALTH, createHealthHandler(deps));
  for (const api of API_KINDS) {
    app.post(API_PATHS[api], createGenerationHandler(deps, api));
  }
  app.all("*", createPassthroughHandler(deps));
  app.onError(renderError);
  return app;
}
