/**
 * @module
 * A deadline on every read of a stream, for bodies read whole from a client
 * (`-client-body-timeout`): a read that waits too long for its chunk cancels
 * the stream and fails, as nginx's `client_body_timeout` bounds the time
 * between two reads, not the whole body. Only an outstanding read is timed.
 * The stream keeps at most one timer, moved at most once per timeout, not
 * set per chunk (a body arrives in many small reads).
 */

/** A stream reader whose reads have a deadline. */
export interface TimedReader {
  /** The next chunk; rejects with the expiry error once a read waited too long. */
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  /** Disarms the timer; call once reading ends, however it ends. */
  release(): void;
}

/** Options of {@linkcode timeReads}. */
export interface TimeReadsOptions {
  /** Longest wait of one read, in ms; 0 or less: reads are not timed. */
  readonly ms: number;
  /** The error a read that waited too long rejects with; also the cancel's reason. */
  readonly expired: () => Error;
}

/** `reader` with every read bounded as the module doc says. */
export function timeReads(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  options: TimeReadsOptions,
): TimedReader {
  const { ms } = options;
  if (ms <= 0) return { read: () => reader.read(), release() {} };
  /** When the outstanding read began; undefined when none is. */
  let readSince: number | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let expiry: Error | undefined;
  function check(): void {
    timer = undefined;
    if (readSince === undefined) return;
    const waited = performance.now() - readSince;
    if (waited < ms) {
      timer = setTimeout(check, ms - waited);
      return;
    }
    expiry = options.expired();
    // Ends the outstanding read (it resolves done) and lets go of the source.
    reader.cancel(expiry).catch(() => {});
  }
  return {
    async read() {
      if (expiry !== undefined) throw expiry;
      readSince = performance.now();
      timer ??= setTimeout(check, ms);
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        throw expiry ?? error;
      } finally {
        readSince = undefined;
      }
      if (expiry !== undefined) throw expiry;
      return result;
    },
    release() {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
