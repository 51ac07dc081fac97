/**
 * @module
 * A deadline on every read of a client's body (`-client-body-timeout`): a
 * read that waits too long for its chunk fails, as nginx's
 * `client_body_timeout` bounds the time between two reads, not the whole
 * body. Only an outstanding read is timed. The stream keeps at most one
 * timer, moved at most once per timeout, not set per chunk (a body arrives
 * in many small reads).
 *
 * The read that expired is left outstanding, not cancelled: the runtime's
 * HTTP/1.1 engine (Deno 2.9.6) closes the connection after the answer when
 * a reader still holds the body, but drains a cancelled body to its end
 * before closing, which a stalled client never reaches, so its connection
 * would stay open. Closing the connection fails that read; it is ignored.
 * Over HTTP/2 the stream is answered and the connection stays: the runtime
 * keeps the stream's body, and the read, open until the client ends it.
 */

/** The clock of {@linkcode watchWaits}. */
export interface WaitClock {
  /** A wait begins (a read was asked for). */
  begin(): void;
  /** The wait ended (the read settled). */
  end(): void;
  /** Disarms the timer; call once waiting ends for good. */
  stop(): void;
}

/**
 * Calls `onIdle` with how long a wait has lasted once one outlasts `ms`.
 * Only a wait under way is timed, by one timer per silence, moved at most
 * once per `ms`, not set per wait (a stream arrives in many small reads).
 * Used for client bodies here and for the decoder's stream idle timeout
 * (upstream/decode_watch.ts).
 */
export function watchWaits(
  ms: number,
  onIdle: (waitedMs: number) => void,
): WaitClock {
  /** When the wait under way began; undefined when none is. */
  let since: number | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  function check(): void {
    timer = undefined;
    if (since === undefined) return;
    const waited = performance.now() - since;
    if (waited < ms) {
      timer = setTimeout(check, ms - waited);
      return;
    }
    onIdle(waited);
  }
  return {
    begin() {
      since = performance.now();
      timer ??= setTimeout(check, ms);
    },
    end() {
      since = undefined;
    },
    stop() {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}

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
  /** The error a read that waited too long rejects with. */
  readonly expired: () => Error;
}

/** `reader` with every read bounded as the module doc says. */
export function timeReads(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  options: TimeReadsOptions,
): TimedReader {
  if (options.ms <= 0) return { read: () => reader.read(), release() {} };
  /** Fails the outstanding read. */
  let failRead: ((error: Error) => void) | undefined;
  let expiry: Error | undefined;
  const clock = watchWaits(options.ms, () => {
    expiry = options.expired();
    failRead?.(expiry);
  });
  return {
    async read() {
      if (expiry !== undefined) throw expiry;
      clock.begin();
      try {
        return await new Promise((resolve, reject) => {
          failRead = reject;
          // Once expired, the read's own end settles nothing (see the module doc).
          reader.read().then(resolve, reject);
        });
      } finally {
        clock.end();
        failRead = undefined;
      }
    },
    release: () => clock.stop(),
  };
}
