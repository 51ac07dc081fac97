/**
 * @module
 * `GET /health`: the sidecar's own liveness, answered without asking vLLM
 * (as the Go sidecar does; vLLM's readiness is probed on vLLM's own port).
 * While the sidecar drains for a shutdown it answers 503, so a load
 * balancer probing it moves new requests elsewhere before it stops accepting.
 */

import type { Context, Handler } from "hono";
import type { AppEnv, Deps } from "../context.ts";

/** Builds the handler: 200 with an empty body, 503 while draining (Hono serves HEAD from GET). */
export function createHealthHandler(deps: Deps): Handler<AppEnv> {
  return function health(c: Context<AppEnv>): Response {
    c.get("access").route = "health";
    return c.body(null, deps.drain?.draining ? 503 : 200);
  };
}
