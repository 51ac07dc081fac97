/**
 * @module
 * Gives every request an id, a logger carrying it and a record for its
 * access line, and writes that line once the answer has been sent.
 */

import type { ClientLeft } from "../body_limit.ts";
import type { Context, MiddlewareHandler } from "hono";
import type { AccessRecord, AppEnv, ServeBindings } from "../context.ts";
import { type Logger, VERBOSITY_INFO } from "../log.ts";
import { type MetricConnector, type Metrics, NO_METRICS } from "../metrics.ts";
import type { RequestTiming } from "../timing.ts";
import { NO_TRACING, type Tracing } from "../tracing.ts";
import { HEADER_REQUEST_ID } from "../protocol/fields.ts";
import type { HeaderLookup } from "../upstream/headers.ts";
import { knownBodyBytes, outcomeOf, writeAccessLine } from "./access_log.ts";

/** The client's request id (first value when several), or a new UUID. */
export function requestIdOf(headers: HeaderLookup): string {
  const sent = headers.get(HEADER_REQUEST_ID)?.split(",")[0]?.trim();
  return sent ? sent : crypto.randomUUID();
}

/**
 * What a body reader calls when it sees the client of the request leave in
 * the middle of its body, where Deno 2.9.6's `request.signal` does not fire (it
 * watches the connection only when the whole body came with the head). The
 * signal joining this one is made only then: `clientGone` becomes an aborted
 * signal, which every later check of the context sees.
 */
export function clientLeftOf(c: Context<AppEnv>): ClientLeft {
  return (cause) => {
    if (!c.get("clientGone").aborted) {
      c.set("clientGone", AbortSignal.abort(cause));
    }
  };
}

/** What the middleware records into besides the access line. */
export interface RequestContextOptions {
  readonly metrics?: Metrics;
  readonly tracing?: Tracing;
}

function secondsSince(started: number): number {
  return (performance.now() - started) / 1000;
}

/** Observes, once per request, the legs' durations its timing holds. */
function observeLegs(
  metrics: Metrics,
  connector: MetricConnector | "" | undefined,
  timing: RequestTiming,
): void {
  if (!connector) return;
  const { prefillSent, prefillAnswered, decodeSent, decodeAnswered } = timing;
  // A prefill still running or cut short has no outcome to observe: counted
  // as an error, every client leaving during a prefill raised its error rate.
  const { prefillOk } = timing;
  if (prefillSent !== undefined && prefillOk !== undefined) {
    const end = prefillAnswered ?? performance.now();
    metrics.prefill(connector, prefillOk, (end - prefillSent) / 1000);
  }
  if (decodeSent !== undefined && decodeAnswered !== undefined) {
    metrics.decodeFirstByte(connector, (decodeAnswered - decodeSent) / 1000);
    metrics.decodeEnded(connector, secondsSince(decodeSent));
  }
}

/**
 * Middleware setting `requestId`, `log`, `access` and `observation` on the
 * context. The access line and the request's metrics wait for `Deno.serve`'s
 * `completed`, so a stream's line carries its whole duration; without a
 * connection (`app.request()`) they are written when the handler returns.
 */
export function requestContext(
  log: Logger,
  options: RequestContextOptions = {},
): MiddlewareHandler<AppEnv> {
  const metrics = options.metrics ?? NO_METRICS;
  const tracing = options.tracing ?? NO_TRACING;
  return async function requestContext(c, next) {
    const started = performance.now();
    const request = c.req.raw;
    const requestId = requestIdOf(request.headers);
    const requestLog = log.child({ request_id: requestId });
    const access: AccessRecord = { route: "passthrough" };
    // c.env is undefined when the app is called without connection info.
    const env: ServeBindings | undefined = c.env;
    const completed = env?.completed ?? Promise.resolve();
    const timing: RequestTiming = { started };
    // Built once here (and replaced by `clientLeftOf`'s callback only), so every leg,
    // the error renderer and the access line agree on whether the client left.
    c.set(
      "clientGone",
      env?.peerGone === undefined
        ? request.signal
        : AbortSignal.any([request.signal, env.peerGone]),
    );
    c.set("requestId", requestId);
    c.set("log", requestLog);
    c.set("access", access);
    c.set("observation", { timing, access, metrics, tracing, completed });
    metrics.requestStarted();
    // Hono's onError has rendered any error into c.res by now.
    await next();
    const response = c.res;
    const path = access.targetPath ?? c.req.path;
    const bytes = knownBodyBytes(response, request.method);
    const streaming = bytes === undefined;
    const abortedEarly = c.get("clientGone").aborted;
    metrics.responseStarted(access.route, secondsSince(started), streaming);
    function finish(): void {
      const gone = c.get("clientGone").aborted;
      if (streaming) metrics.streamEnded();
      if (gone) {
        metrics.clientAbort(
          abortedEarly ? "before_response" : "during_response",
        );
      }
      observeLegs(metrics, access.connector, timing);
      metrics.requestEnded({
        route: access.route,
        connector: access.connector,
        outcome: outcomeOf(gone, access),
        seconds: secondsSince(started),
      });
      if (!requestLog.enabled(VERBOSITY_INFO)) return;
      writeAccessLine(requestLog, {
        method: request.method,
        path,
        status: response.status,
        started,
        bytes,
        clientGone: gone,
        access,
        timing,
      });
    }
    if (env?.completed === undefined) finish();
    else env.completed.then(finish, finish);
  };
}
