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
 * (`error_code` says which). A decoder whose stream breaks after the first
 * byte shows as `ok`: the runtime pipes the decoder's body to the client
 * without JS and reports no break (see the README on stream observation).
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
 * Length of a response's body when known without reading it: its
 * Content-Length, else 0 when it has none. The header is read first because
 * `response.body` turns a body built from text or bytes into a stream, which
 * the runtime then pumps through JavaScript instead of writing it at once
 * (3.4% of the busy time of non-streaming P/D, measured): so every such body
 * the sidecar builds carries its length.
 */
export function knownBodyBytes(response: Response): number | undefined {
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
    prefill_ms: input.timing === undefined
      ? undefined
      : elapsedMs(input.timing.prefillSent, input.timing.prefillAnswered),
    decode_ttfb_ms: input.timing === undefined
      ? undefined
      : elapsedMs(input.timing.decodeSent, input.timing.decodeAnswered),
  });
}
