/**
 * @module
 * What every request is checked for before any route reads it: a `Host`
 * that is a host and port (src/middleware/host_header.ts) and a declared
 * body within `-max-request-body-bytes`. Chunked bodies are counted where
 * they are read (`readWholeBody`, `limitBodyStream`).
 */

import type { MiddlewareHandler } from "hono";
import { ensureDeclaredWithin } from "../body_limit.ts";
import type { AppEnv } from "../context.ts";
import { invalidHostError, targetPathOf } from "./host_header.ts";

/**
 * Middleware refusing a bad `Host` (400) or a `Content-Length` over `limit`
 * (413). One plain function, not async: each middleware layer keeps its
 * frames alive for the whole request, which costs memory per request in
 * flight (scripts/bench/README.md, "What a request in flight holds").
 */
export function requestGuards(limit: number): MiddlewareHandler<AppEnv> {
  return function requestGuards(c, next) {
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
