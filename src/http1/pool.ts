/**
 * @module
 * Idle keep-alive connections to one upstream, reused across requests and
 * dropped when older than the idle limit (kept below uvicorn's 5 s
 * keep-alive, the cause of llm-d #1564).
 */

import { ConnReader } from "./conn_reader.ts";

/** Options of a `ConnPool`. */
export interface ConnPoolOptions {
  readonly hostname: string;
  readonly port: number;
  readonly maxIdle: number;
  readonly idleTimeoutMs: number;
}

/** A connection from the pool, and whether it had carried a request before. */
export interface PooledConn {
  readonly reader: ConnReader;
  readonly reused: boolean;
}

interface Idle {
  readonly reader: ConnReader;
  readonly since: number;
}

/** Closes a connection that may already be closed. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed (by an abort, or by the peer).
  }
}

/** Keep-alive connections to one upstream. */
export class ConnPool {
  readonly #options: ConnPoolOptions;
  #idle: Idle[] = [];

  /** Creates an empty pool. */
  constructor(options: ConnPoolOptions) {
    this.#options = options;
  }

  /** An idle connection, or a new one; throws what `Deno.connect` throws. */
  async take(): Promise<PooledConn> {
    const now = Date.now();
    for (let idle = this.#idle.pop(); idle; idle = this.#idle.pop()) {
      if (
        now - idle.since < this.#options.idleTimeoutMs && !idle.reader.ended
      ) {
        return { reader: idle.reader, reused: true };
      }
      closeQuietly(idle.reader.conn);
    }
    const conn = await Deno.connect({
      hostname: this.#options.hostname,
      port: this.#options.port,
    });
    conn.setNoDelay(true);
    return { reader: new ConnReader(conn), reused: false };
  }

  /** Returns a connection whose last answer was read whole. */
  give(reader: ConnReader): void {
    if (this.#idle.length >= this.#options.maxIdle || reader.buffered > 0) {
      // Bytes past the answer mean the upstream broke framing: never reuse.
      closeQuietly(reader.conn);
      return;
    }
    this.#idle.push({ reader, since: Date.now() });
  }

  /** Closes every idle connection. */
  close(): void {
    for (const idle of this.#idle) closeQuietly(idle.reader.conn);
    this.#idle = [];
  }
}
