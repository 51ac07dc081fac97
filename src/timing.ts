/**
 * @module
 * Where a P/D request's time went: the moments its legs were sent and
 * answered, filled in by the shared leg code, and their rendering as a
 * `Server-Timing` header (W3C Server Timing) a client or load test can read
 * without a tracing backend.
 */

/** `performance.now()` moments of one request; absent until they happen. */
export interface RequestTiming {
  /** The request arrived. */
  readonly started: number;
  /** The first prefill attempt was sent. */
  prefillSent?: number;
  /** The last prefill attempt was answered: the KV cache is ready on the prefiller. */
  prefillAnswered?: number;
  /** Whether the prefill leg succeeded (a 2xx); unset while it runs, or when it was cut short. */
  prefillOk?: boolean;
  /** The decode leg was sent. */
  decodeSent?: number;
  /** The decoder's answer head arrived. */
  decodeAnswered?: number;
}

/** Header the timings are sent in. */
export const HEADER_SERVER_TIMING = "server-timing";

/** Milliseconds from `from` to `to`, rounded to 0.1 ms; undefined unless both happened. */
export function elapsedMs(
  from: number | undefined,
  to: number | undefined,
): number | undefined {
  if (from === undefined || to === undefined) return undefined;
  return Math.round((to - from) * 10) / 10;
}

/**
 * The `Server-Timing` value of what has happened so far: `prefill` (the
 * prefill leg, retries included), `kv_ready` (arrival until the prefill
 * answered) and `decode_ttfb` (decode leg sent until the decoder's answer
 * head). A concurrent connector whose prefill is still running when the
 * answer starts omits the first two. Undefined when nothing is known.
 */
export function buildServerTiming(timing: RequestTiming): string | undefined {
  const entries: [string, number | undefined][] = [
    ["prefill", elapsedMs(timing.prefillSent, timing.prefillAnswered)],
    ["kv_ready", elapsedMs(timing.started, timing.prefillAnswered)],
    ["decode_ttfb", elapsedMs(timing.decodeSent, timing.decodeAnswered)],
  ];
  const known = entries.filter(([, ms]) => ms !== undefined);
  if (known.length === 0) return undefined;
  return known.map(([metric, ms]) => `${metric};dur=${ms}`).join(", ");
}
