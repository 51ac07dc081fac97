/**
 * @module
 * `GET /health`: the sidecar's own liveness, answered without asking vLLM
 * (as the Go sidecar does; vLLM's readiness is probed on vLLM's own port).
 */

import type { Context } from "hono";
import type { AppEnv } from "../context.ts";

/** Answers 200 with an empty body (Hono serves HEAD from the GET route). */
export function health(c: Context<AppEnv>): Response {
  c.get("access").route = "health";
  return c.body(null, 200);
}
