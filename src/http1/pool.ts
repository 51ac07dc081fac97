/**
 * @module
 * Idle keep-alive connections to one upstream, reused across requests and
 * dropped when older than the idle limit (kept below uvicorn's 5 s
 * keep-alive, the cause of llm-d #1564).
 */

import { ClosedEarlyError, ConnReader } from "./conn_reader.ts";

/** Options of a `ConnPool`. */
export interface ConnPoolOptions {
  readonly hostname: string;
  readonly port: number;
  readonly maxIdle: number;
  readonly idleTimeoutMs: number;
}

/** A connection from the pool, and whether it had carried a request before. */
interface PooledConn {
  readonly reader: ConnReader;
  readonly reused: boolean;
}

/** An exchange's result, and its connection, still open, for the caller to give back or close. */
export interface Exchanged<T> {
  readonly reader: ConnReader;
  readonly result: T;
}

interface Idle {
  readonly reader: ConnReader;
  readonly since: number;
}

/**
 * Whether `error` means a reused connection had been closed by the upstream
 * while idle: nothing came back, so the request may be sent again.
 */
function isStale(error: unknown, reader: ConnReader): boolean {
  return reader.received === 0 &&
    (error instanceof ClosedEarlyError ||
      error instanceof Deno.errors.ConnectionReset ||
      error instanceof Deno.errors.BrokenPipe);
}

/** Keep-alive connections to one upstream. */
export class ConnPool {
  readonly #options: ConnPoolOptions;
  #idle: Idle[] = [];

  /** Creates an empty pool. */
  constructor(options: ConnPoolOptions) {
    this.#options = options;
  }

  /**
   * Runs `exchange` (write the request, read the answer or its head) on an
   * idle connection or a new one, closing it if `signal` fires meanwhile. A
   * reused connection the upstream had closed while idle is closed and the
   * exchange run again on another, when `replayable` (the request can be
   * written again). On failure the connection is closed and the error thrown
   * as it came (or `signal`'s reason).
   */
  async exchange<T>(
    signal: AbortSignal,
    replayable: boolean,
    exchange: (reader: ConnReader) => Promise<T>,
  ): Promise<Exchanged<T>> {
    for (;;) {
      signal.throwIfAborted();
      const { reader, reused } = await this.#take();
      const abort = () => reader.close();
      signal.addEventListener("abort", abort, { once: true });
      reader.resetReceived();
      try {
        return { reader, result: await exchange(reader) };
      } catch (error) {
        reader.close();
        if (
          reused && replayable && !signal.aborted && isStale(error, reader)
        ) continue;
        throw error;
      } finally {
        signal.removeEventListener("abort", abort);
      }
    }
  }

  /** An idle connection, or a new one; throws what `Deno.connect` throws. */
  async #take(): Promise<PooledConn> {
    const now = Date.now();
    for (let idle = this.#idle.pop(); idle; idle = this.#idle.pop()) {
      if (
        now - idle.since < this.#options.idleTimeoutMs && !idle.reader.ended
      ) {
        return { reader: idle.reader, reused: true };
      }
      idle.reader.close();
    }
    const conn = await Deno.connect({
      hostname: this.#options.hostname,
      port: this.#options.port,
    });
    conn.setNoDelay(true);
    return { reader: new ConnReader(conn), reused: false };
  }

  /**
   * Returns a connection whose last answer was read whole. One closed
   * meanwhile (an abort can land after the answer was read) is dropped.
   */
  give(reader: ConnReader): void {
    if (reader.closed) return;
    if (this.#idle.length >= this.#options.maxIdle || reader.buffered > 0) {
      // Bytes past the answer mean the upstream broke framing: never reuse.
      reader.close();
      return;
    }
    this.#idle.push({ reader, since: Date.now() });
  }

  /** Closes every idle connection. */
  close(): void {
    for (const idle of this.#idle) idle.reader.close();
    this.#idle = [];
  }
}
