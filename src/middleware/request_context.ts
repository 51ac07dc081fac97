/**
 * @module
 * Gives every request an id and a logger carrying it, and writes one access
 * line per request at debug verbosity.
 */

import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context.ts";
import { type Logger, VERBOSITY_DEBUG } from "../log.ts";
import { HEADER_REQUEST_ID } from "../protocol/fields.ts";
import type { HeaderLookup } from "../upstream/headers.ts";

/** The client's request id (first value when several), or a new UUID. */
export function requestIdOf(headers: HeaderLookup): string {
  const sent = headers.get(HEADER_REQUEST_ID)?.split(",")[0]?.trim();
  return sent ? sent : crypto.randomUUID();
}

/**
 * Writes the access line of a request at debug verbosity.
 * Callers check `log.enabled(VERBOSITY_DEBUG)` first, so nothing is built
 * for it on a request when debug is off.
 */
export function logHandled(
  log: Logger,
  request: {
    readonly method: string;
    readonly path: string;
    readonly status: number;
    /** `performance.now()` when the request arrived. */
    readonly started: number;
  },
): void {
  log.debug("request handled", {
    method: request.method,
    path: request.path,
    status: request.status,
    duration_ms: Math.round((performance.now() - request.started) * 1000) /
      1000,
  });
}

/** Middleware setting `requestId` and `log` on the context. */
export function requestContext(log: Logger): MiddlewareHandler<AppEnv> {
  return async function requestContext(c, next) {
    const started = performance.now();
    const requestId = requestIdOf(c.req.raw.headers);
    const requestLog = log.child({ request_id: requestId });
    c.set("requestId", requestId);
    c.set("log", requestLog);
    await next();
    if (!requestLog.enabled(VERBOSITY_DEBUG)) return;
    logHandled(requestLog, {
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      started,
    });
  };
}
