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
import { ensureValidHost } from "./host_header.ts";

/**
 * Middleware refusing a bad `Host` (400) or a `Content-Length` over `limit`
 * (413). One plain function, not async: each middleware layer keeps its
 * frames alive for the whole request, which costs memory per request in
 * flight (scripts/bench/README.md, "What a request in flight holds").
 */
export function requestGuards(limit: number): MiddlewareHandler<AppEnv> {
  return function requestGuards(c, next) {
    const { headers } = c.req.raw;
    ensureValidHost(headers);
    ensureDeclaredWithin(headers, limit);
    return next();
  };
}
