/**
 * @module
 * A connection with its read buffer: the one place bytes are read from a
 * socket, for both sides of the wire engine and for the prefill client. The
 * buffer stays with the connection (in a pool too), so bytes read past one
 * message belong to the next.
 */

const decoder = new TextDecoder();
const CR = 13;
const LF = 10;

/** Closes a connection that may already be closed. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed (by an abort, or by the peer).
  }
}

/** A connection closed before a message was complete. */
export class ClosedEarlyError extends Error {
  /** Whether nothing at all had been received since `resetReceived`. */
  readonly beforeAnyByte: boolean;

  /** Creates the error; `beforeAnyByte` tells a stale pooled connection apart. */
  constructor(beforeAnyByte: boolean) {
    super(
      beforeAnyByte
        ? "connection closed by the peer before answering"
        : "connection closed in the middle of a message",
    );
    this.name = "ClosedEarlyError";
    this.beforeAnyByte = beforeAnyByte;
  }
}

/** A message head larger than the reader accepts. */
export class HeadTooLargeError extends Error {
  /** Creates the error for a head over `limit` bytes. */
  constructor(limit: number) {
    super(`message head larger than ${limit} bytes`);
    this.name = "HeadTooLargeError";
  }
}

/** Buffered reads from one connection. */
export class ConnReader {
  readonly conn: Deno.Conn;
  #buffer: Uint8Array;
  #start = 0;
  #end = 0;
  #received = 0;
  #pending: Promise<boolean> | undefined;
  #eof = false;
  #closed = false;

  /** Wraps `conn` with a buffer of `initialSize` bytes (it grows as needed). */
  constructor(conn: Deno.Conn, initialSize = 4096) {
    this.conn = conn;
    this.#buffer = new Uint8Array(initialSize);
  }

  /** Bytes received since the last `resetReceived`. */
  get received(): number {
    return this.#received;
  }

  /** Starts counting received bytes anew (before each request on a pooled connection). */
  resetReceived(): void {
    this.#received = this.#end - this.#start;
  }

  /** Number of bytes read but not yet consumed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Whether the peer has closed its side. */
  get ended(): boolean {
    return this.#eof;
  }

  /** Whether `close` was called: such a connection must never be reused. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the connection (again, harmlessly, if it already was). */
  close(): void {
    this.#closed = true;
    closeQuietly(this.conn);
  }

  /**
   * Reads more bytes into the buffer; false at end of stream. Only one read
   * is ever in flight: `watch` may have started one already.
   */
  fill(): Promise<boolean> {
    return this.#pending ??= this.#read();
  }

  /**
   * Resolves when the peer closes (or the connection fails) while nothing is
   * being read; resolves false instead if bytes arrive (a pipelined request),
   * which stay buffered. Used to notice a client leaving mid-request.
   */
  async watch(): Promise<boolean> {
    try {
      return !(await this.fill());
    } catch {
      return true;
    }
  }

  async #read(): Promise<boolean> {
    // At end of stream #pending keeps this settled promise: every later fill
    // is false. One async frame per socket read: this runs for every chunk.
    if (this.#eof) return false;
    try {
      if (this.#start === this.#end) this.#start = this.#end = 0;
      // Should growing the buffer fail (a message too large for memory), the
      // finally below runs before fill() stores this promise, so the reader
      // stays failed: it could not hold that message anyway.
      if (this.#end === this.#buffer.length) this.#makeRoom();
      // An empty buffer is read into whole: no view to allocate per chunk.
      const space = this.#end === 0
        ? this.#buffer
        : this.#buffer.subarray(this.#end);
      const read = await this.conn.read(space);
      if (read === null) {
        this.#eof = true;
        return false;
      }
      this.#end += read;
      this.#received += read;
      return true;
    } finally {
      this.#pending = undefined;
    }
  }

  /** Moves unread bytes to the front of a full buffer, or doubles it. */
  #makeRoom(): void {
    const size = this.#end - this.#start;
    if (this.#start > 0) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
    } else {
      const bigger = new Uint8Array(this.#buffer.length * 2);
      bigger.set(this.#buffer);
      this.#buffer = bigger;
    }
    this.#start = 0;
    this.#end = size;
  }

  #closedEarly(): ClosedEarlyError {
    return new ClosedEarlyError(this.#received === 0);
  }

  /**
   * Reads a message head through its empty line and returns it without the
   * final CRLFCRLF; undefined when the peer closed before sending a byte of
   * it (the normal end of a keep-alive connection).
   */
  async head(limit: number): Promise<string | undefined> {
    let searched = 0;
    for (;;) {
      const buffer = this.#buffer;
      for (let i = this.#start + searched; i + 3 < this.#end; i++) {
        if (
          buffer[i] === CR && buffer[i + 1] === LF && buffer[i + 2] === CR &&
          buffer[i + 3] === LF
        ) {
          if (i - this.#start > limit) throw new HeadTooLargeError(limit);
          const text = decoder.decode(buffer.subarray(this.#start, i));
          this.#start = i + 4;
          return text;
        }
      }
      const size = this.#end - this.#start;
      if (size > limit) throw new HeadTooLargeError(limit);
      searched = Math.max(0, size - 3);
      if (!(await this.fill())) {
        if (size === 0) return undefined;
        throw this.#closedEarly();
      }
    }
  }

  /** Reads exactly `length` bytes; the view is valid until the next read. */
  async view(length: number): Promise<Uint8Array> {
    while (this.#end - this.#start < length) {
      if (!(await this.fill())) throw this.#closedEarly();
    }
    return this.#advance(length);
  }

  /** Reads exactly `length` bytes into a new array. */
  async exactly(length: number): Promise<Uint8Array> {
    // Not `await this.view()`: a body that came with its head must not cost an
    // await. That one extra await raised the passthrough p99 at 256
    // connections from 70-80 to about 110 ms (measured side by side).
    while (this.#end - this.#start < length) {
      if (!(await this.fill())) throw this.#closedEarly();
    }
    return this.#advance(length).slice();
  }

  /** The next `length` buffered bytes, consumed. */
  #advance(length: number): Uint8Array {
    const bytes = this.#buffer.subarray(this.#start, this.#start + length);
    this.#start += length;
    return bytes;
  }

  /**
   * The buffered bytes, at most `max`, reading first when none are buffered;
   * the view is valid until the next read. Undefined at end of stream.
   */
  async some(max: number): Promise<Uint8Array | undefined> {
    if (this.#start === this.#end && !(await this.fill())) return undefined;
    const end = Math.min(this.#end, this.#start + max);
    return this.#buffer.subarray(this.#start, end);
  }

  /** Marks `length` bytes of what `some` returned as consumed. */
  consume(length: number): void {
    this.#start += length;
  }
}
