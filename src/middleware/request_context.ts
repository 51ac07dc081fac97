/**
 * @module
 * Gives every request an id, a logger carrying it and a record for its
 * access line, and writes that line once the answer has been sent.
 */

import type { MiddlewareHandler } from "hono";
import type { AccessRecord, AppEnv, ServeBindings } from "../context.ts";
import { type Logger, VERBOSITY_INFO } from "../log.ts";
import { HEADER_REQUEST_ID } from "../protocol/fields.ts";
import type { HeaderLookup } from "../upstream/headers.ts";
import { knownBodyBytes, writeAccessLine } from "./access_log.ts";

/** The client's request id (first value when several), or a new UUID. */
export function requestIdOf(headers: HeaderLookup): string {
  const sent = headers.get(HEADER_REQUEST_ID)?.split(",")[0]?.trim();
  return sent ? sent : crypto.randomUUID();
}

/**
 * Middleware setting `requestId`, `log` and `access` on the context. The
 * access line waits for `Deno.serve`'s `completed`, so a stream's line
 * carries its whole duration; without a connection (`app.request()`) it is
 * written when the handler returns.
 */
export function requestContext(log: Logger): MiddlewareHandler<AppEnv> {
  return async function requestContext(c, next) {
    const started = performance.now();
    const request = c.req.raw;
    const requestId = requestIdOf(request.headers);
    const requestLog = log.child({ request_id: requestId });
    const access: AccessRecord = { route: "passthrough" };
    c.set("requestId", requestId);
    c.set("log", requestLog);
    c.set("access", access);
    await next();
    if (!requestLog.enabled(VERBOSITY_INFO)) return;
    const response = c.res;
    const path = c.req.path;
    function finish(): void {
      writeAccessLine(requestLog, {
        method: request.method,
        path,
        status: response.status,
        started,
        bytes: knownBodyBytes(response),
        clientGone: request.signal.aborted,
        access,
      });
    }
    // c.env is undefined when the app is called without connection info.
    const env: ServeBindings | undefined = c.env;
    if (env?.completed === undefined) finish();
    else env.completed.then(finish, finish);
  };
}
