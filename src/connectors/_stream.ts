/**
 * @module
 * Relaying a decode answer the sidecar has started reading: what was read
 * goes first, then the rest as the decoder produces it, chunk by chunk.
 */

/** A pending or finished read of the decode answer. */
export type ReadResult = ReadableStreamReadResult<Uint8Array>;

/** Hooks of `resumeStream`. */
export interface ResumeHooks {
  /** The decode answer broke mid-stream; the client's stream breaks too, never ending cleanly. */
  readonly onBroken?: (error: unknown) => void;
  /** The client stopped reading. */
  readonly onCancel?: () => void;
}

/**
 * A stream yielding the reads in `head` (already read chunks, or a read
 * still pending), then the rest of `reader`. Nothing is buffered beyond one
 * chunk: each pull reads one upstream chunk.
 */
export function resumeStream(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  head: readonly Promise<ReadResult>[],
  hooks: ResumeHooks = {},
): ReadableStream<Uint8Array> {
  const queue = [...head];
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadResult;
      try {
        result = await (queue.shift() ?? reader.read());
      } catch (error) {
        hooks.onBroken?.(error);
        controller.error(error);
        return;
      }
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    async cancel(reason) {
      hooks.onCancel?.();
      await reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}

/** `response`'s status and headers with `body`. */
export function withBody(
  response: Response,
  // A body held whole goes through fixedResponse, which sends its length.
  body: ReadableStream<Uint8Array> | null,
): Response {
  return new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}
