/**
 * @module
 * The decoder's two timeouts: `-decode-first-byte-timeout` (no body byte
 * yet: answered 504 before any status is sent) and `-stream-idle-timeout`
 * (the answer began, then a read from the decoder waited that long: the
 * stream is broken off). Either aborts the decoder request.
 *
 * Cost: with either on, the decode body is relayed through a JS pump, one
 * pull per chunk, instead of the runtime's native pipe, which costs CPU per
 * chunk (scripts/bench/experiments/observer_cost.ts measured 2.5-2.9x for a
 * per-chunk observer). Hence both are off by default, and with both off the
 * decoder's body is handed to the runtime untouched. The idle check keeps at
 * most one timer, moved at most once per timeout, not per chunk.
 */

import { errorMessage, ProxyError } from "../errors.ts";
import type { AccessRecord } from "../context.ts";
import type { Logger } from "../log.ts";
import { watchWaits } from "../read_timeout.ts";

/** The timeouts of one decoder answer, in ms; 0 turns one off. */
export interface DecodeWatch {
  /** Longest wait for the first body byte (headers included). */
  readonly firstByteMs: number;
  /** Longest wait on a read from the decoder once the first body byte came. */
  readonly idleMs: number;
  readonly log: Logger;
  /** Called once when either timeout ends the answer, before the caller sees the error. */
  readonly onTimeout?: () => void;
  /**
   * The request's access record, given the timeout's code when one ends the
   * answer: a stream broken off after its status went out has no error
   * answer to name it, and its access line and outcome must still say so.
   */
  readonly access?: Pick<AccessRecord, "errorCode">;
}

/** What a timeout that ends the answer tells the caller and the access record. */
function noteTimeout(watch: DecodeWatch, code: DecodeTimeoutCode): void {
  if (watch.access !== undefined) watch.access.errorCode = code;
  watch.onTimeout?.();
}

/** Code of the `ProxyError` a first-byte timeout throws. */
const FIRST_BYTE_TIMEOUT_CODE = "decode_first_byte_timeout";
/** Code of a stream the idle timeout broke off (the status was already sent). */
const STREAM_IDLE_TIMEOUT_CODE = "stream_idle_timeout";

/** Which of the two timeouts ended a decoder answer. */
export type DecodeTimeoutCode =
  | typeof FIRST_BYTE_TIMEOUT_CODE
  | typeof STREAM_IDLE_TIMEOUT_CODE;

/** Why the watchdog aborted the decoder request. */
class DecodeTimeout extends Error {
  override readonly name = "TimeoutError";
}

/**
 * The decoder's answer broke before its first body byte (its status came,
 * then it closed or reset): thrown by `sendWatched`, which waits on that
 * byte, so the caller can say the decoder broke its answer rather than that
 * it could not be reached.
 */
export class AnswerBrokeBeforeFirstByte extends Error {
  override readonly name = "AnswerBrokeBeforeFirstByte";

  /** Wraps the error the first read threw. */
  constructor(cause: unknown) {
    super(errorMessage(cause), { cause });
  }
}

/** Whether `watch` asks for anything, so the native pipe can be kept otherwise. */
export function isWatching(watch: DecodeWatch | undefined): boolean {
  return watch !== undefined && (watch.firstByteMs > 0 || watch.idleMs > 0);
}

function firstByteTimeout(ms: number, cause: unknown): ProxyError {
  return new ProxyError(
    504,
    `Decode server sent no answer within ${ms} ms (-decode-first-byte-timeout)`,
    { code: FIRST_BYTE_TIMEOUT_CODE, cause },
  );
}

/** Whether `error` is the answer of a `-decode-first-byte-timeout` that fired. */
export function isFirstByteTimeout(error: unknown): boolean {
  return error instanceof ProxyError && error.code === FIRST_BYTE_TIMEOUT_CODE;
}

/**
 * Sends the decode through `send` with a signal that also fires on a
 * timeout, and returns its answer watched as the module doc says. `signal`
 * is the caller's (the client's, or the leg's).
 */
export async function sendWatched(
  send: (signal: AbortSignal) => Promise<Response>,
  signal: AbortSignal,
  watch: DecodeWatch,
): Promise<Response> {
  const watchdog = new AbortController();
  const combined = AbortSignal.any([signal, watchdog.signal]);
  let firstByteTimer: ReturnType<typeof setTimeout> | undefined;
  if (watch.firstByteMs > 0) {
    firstByteTimer = setTimeout(
      () => watchdog.abort(new DecodeTimeout("first byte")),
      watch.firstByteMs,
    );
  }
  const timedOut = () => watchdog.signal.aborted && !signal.aborted;
  const failed = (error: unknown): unknown => {
    if (!timedOut()) return error;
    noteTimeout(watch, FIRST_BYTE_TIMEOUT_CODE);
    return firstByteTimeout(watch.firstByteMs, error);
  };
  let response: Response;
  try {
    response = await send(combined);
  } catch (error) {
    clearTimeout(firstByteTimer);
    throw failed(error);
  }
  const reader = response.body?.getReader();
  if (reader === undefined) {
    clearTimeout(firstByteTimer);
    return response;
  }
  const head: Promise<ReadableStreamReadResult<Uint8Array>>[] = [];
  if (firstByteTimer !== undefined) {
    try {
      head.push(Promise.resolve(await reader.read()));
    } catch (error) {
      if (timedOut()) throw failed(error);
      throw signal.aborted ? error : new AnswerBrokeBeforeFirstByte(error);
    } finally {
      clearTimeout(firstByteTimer);
    }
  }
  return new Response(pump(reader, head, { watch, watchdog }), {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/**
 * Relays `reader` after `head`, breaking it off once a read from the
 * decoder has waited `watch.idleMs`. Only an outstanding read is timed: with
 * `highWaterMark: 0` nothing is read while the client does not pull, and a
 * slow reader is no sign of a stalled decoder. Before the first body byte
 * nothing is timed either (a non-streaming answer sends it when done).
 */
function pump(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  head: Promise<ReadableStreamReadResult<Uint8Array>>[],
  state: { readonly watch: DecodeWatch; readonly watchdog: AbortController },
): ReadableStream<Uint8Array> {
  const { watch, watchdog } = state;
  let begun = head.length > 0;
  const idle = watch.idleMs > 0
    ? watchWaits(watch.idleMs, (silent) => {
      watch.log.warn("decoder stream idle: breaking it off", {
        code: STREAM_IDLE_TIMEOUT_CODE,
        idle_ms: Math.round(silent),
      });
      noteTimeout(watch, STREAM_IDLE_TIMEOUT_CODE);
      watchdog.abort(new DecodeTimeout("stream idle"));
    })
    : undefined;
  async function read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    if (idle === undefined || !begun) return await reader.read();
    idle.begin();
    try {
      return await reader.read();
    } finally {
      idle.end();
    }
  }
  function stopWatching(): void {
    idle?.stop();
  }
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await (head.shift() ?? read());
      } catch (error) {
        stopWatching();
        controller.error(error);
        return;
      }
      if (result.done) {
        stopWatching();
        controller.close();
        return;
      }
      begun = true;
      controller.enqueue(result.value);
    },
    async cancel(reason) {
      stopWatching();
      await reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}
