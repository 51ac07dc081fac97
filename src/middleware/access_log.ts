/**
 * @module
 * The access line: one info line per request, written once its answer has
 * been sent (a stream's last byte, not its first) or its client has gone.
 */

import type { AccessRecord } from "../context.ts";
import type { Logger } from "../log.ts";
import type { MetricOutcome } from "../metrics.ts";
import { elapsedMs, type RequestTiming } from "../timing.ts";

/**
 * How a request ended. `error`: the sidecar answered with its own error
 * (`error_code` says which), or broke off a stream that `-stream-idle-timeout`
 * found silent. Any other decoder stream that breaks after the first byte
 * shows as `ok`: the runtime pipes the decoder's body to the client without
 * JS and reports no break (see the README on stream observation).
 */
export type Outcome = MetricOutcome;

/** What the access line is built from. */
export interface AccessLineInput {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** `performance.now()` when the request arrived. */
  readonly started: number;
  /** Length of the answer's body when known without reading it. */
  readonly bytes: number | undefined;
  /** Whether the client left before its answer was sent. */
  readonly clientGone: boolean;
  readonly access: AccessRecord;
  /** The request's leg timings, when it ran P/D. */
  readonly timing?: RequestTiming;
}

/** The outcome of a request, from what is known when its answer ended. */
export function outcomeOf(
  clientGone: boolean,
  access: AccessRecord,
): Outcome {
  if (clientGone) return "client_aborted";
  return access.errorCode === undefined ? "ok" : "error";
}

/**
 * Length of a response's body when known without reading it: 0 when it has
 * none (an answer to HEAD, a 204 or 304 keep the length of the body they
 * would have had), else its Content-Length. The header is read before
 * `response.body`, which would turn a body built from text into a stream the
 * runtime pumps through JavaScript (src/fixed_response.ts).
 */
export function knownBodyBytes(
  response: Response,
  method: string,
): number | undefined {
  if (method === "HEAD" || response.status === 204 || response.status === 304) {
    return 0;
  }
  const length = response.headers.get("content-length");
  if (length !== null) return Number(length);
  return response.body === null ? 0 : undefined;
}

/** Writes the access line of a request at info level. */
export function writeAccessLine(log: Logger, input: AccessLineInput): void {
  const { access } = input;
  // Fields left undefined are dropped by JSON.stringify.
  log.info("request handled", {
    method: input.method,
    path: input.path,
    route: access.route,
    status: input.status,
    duration_ms: Math.round((performance.now() - input.started) * 1000) /
      1000,
    bytes: input.bytes,
    outcome: outcomeOf(input.clientGone, access),
    connector: access.connector,
    prefill_target: access.prefillTarget,
    error_code: access.errorCode,
    retries: access.retries,
    fallback: access.fallback,
    fallback_cause: access.fallbackCause,
    prefill_ms: input.timing === undefined
      ? undefined
      : elapsedMs(input.timing.prefillSent, input.timing.prefillAnswered),
    decode_ttfb_ms: input.timing === undefined
      ? undefined
      : elapsedMs(input.timing.decodeSent, input.timing.decodeAnswered),
  });
}
