/**
 * @module
 * What every request is checked for before any route reads it: a
 * connection that still takes requests (one closed for its client's resets
 * refuses them, src/connection_server.ts), a `Host` that is a host and port
 * (src/middleware/host_header.ts) and a declared body within
 * `-max-request-body-bytes`. Chunked bodies are counted where they are read
 * (`readWholeBody`, `limitBodyStream`).
 */

import type { MiddlewareHandler } from "hono";
import { ensureDeclaredWithin } from "../body_limit.ts";
import type { AppEnv, ServeBindings } from "../context.ts";
import { invalidHostError, targetPathOf } from "./host_header.ts";

/**
 * Middleware refusing what the connection refused (429), a bad `Host` (400)
 * or a `Content-Length` over `limit` (413). One plain function, not async:
 * each middleware layer keeps its frames alive for the whole request, which
 * costs memory per request in flight (scripts/bench/README.md, "What a
 * request in flight holds").
 */
export function requestGuards(limit: number): MiddlewareHandler<AppEnv> {
  return function requestGuards(c, next) {
    // c.env is undefined when the app is called without connection info.
    const env: ServeBindings | undefined = c.env;
    if (env?.refusal !== undefined) throw env.refusal;
    const request = c.req.raw;
    const badHost = invalidHostError(request.headers);
    if (badHost !== undefined) {
      // The router's path is the one the Host made up; logs name the asked one.
      c.get("access").targetPath = targetPathOf(request);
      throw badHost;
    }
    ensureDeclaredWithin(request.headers, limit);
    return next();
  };
}
