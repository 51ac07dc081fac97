/**
 * @module
 * An HTTP/1.1 server over `Deno.listen`/`Deno.listenTls`: the wire engine's
 * front. It reads request heads, hands each request to a handler as an
 * `Exchange`, keeps connections alive between requests and notices a client
 * that leaves mid-request. Bodies are never wrapped in streams: the handler
 * moves bytes between sockets itself, which is what makes it cheap.
 */

import type { Logger } from "../log.ts";
import type { TlsCertificate } from "../tls.ts";
import { type ByteSink, readBody, readText, relayBody } from "../http1/body.ts";
import { ChunkedFramingError } from "../http1/chunked.ts";
import { writeAll } from "../http1/write.ts";
import {
  ClosedEarlyError,
  closeQuietly,
  ConnReader,
  HeadTooLargeError,
} from "../http1/conn_reader.ts";
import { errorMessage, ProxyError } from "../errors.ts";
import { parseRequestHead, type RequestHead } from "../http1/message.ts";

/** Largest request head accepted; larger ones get 431. */
const HEAD_LIMIT = 64 * 1024;

const encoder = new TextEncoder();
const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");

/** One request on a connection, and the means to answer it. */
export class Exchange {
  readonly head: RequestHead;
  /** The client connection's reader, positioned at the request body. */
  readonly reader: ConnReader;
  /** The client's address. */
  readonly remoteAddr: Deno.NetAddr;
  readonly #aborter = new AbortController();
  #continued = false;
  #bodyDone: boolean;
  /** Set once the response head has been written. */
  headSent = false;
  /** Set by the handler when the connection cannot carry another request. */
  closeAfter = false;
  readonly #server: { readonly stopping: boolean };

  /** Creates the exchange for `head` read from `reader`. */
  constructor(
    head: RequestHead,
    reader: ConnReader,
    remoteAddr: Deno.NetAddr,
    server: { readonly stopping: boolean },
  ) {
    this.head = head;
    this.reader = reader;
    this.remoteAddr = remoteAddr;
    this.#server = server;
    this.#bodyDone = head.framing.kind === "none";
  }

  /** Whether the server is shutting down (answers then close their connection). */
  get stopping(): boolean {
    return this.#server.stopping;
  }

  /** Fires when the client closes the connection before the answer is complete. */
  get signal(): AbortSignal {
    return this.#aborter.signal;
  }

  /** Whether the request body has been read (or relayed) whole. */
  get bodyDone(): boolean {
    return this.#bodyDone;
  }

  /** Sends `100 Continue` when the client waits for it; call before reading the body. */
  async #continue(): Promise<void> {
    if (!this.head.expectContinue || this.#continued || this.#bodyDone) return;
    this.#continued = true;
    await writeAll(this.reader.conn, CONTINUE);
  }

  // Every read of the body goes through one of the three methods below, so
  // its failures are the client's, mapped by #readFailure. Each catches in
  // place rather than through a shared wrapper: an extra await per request
  // measurably widened the tail latency (see ConnReader.exactly).

  /** Reads the request body whole. */
  async readBody(): Promise<Uint8Array> {
    await this.#continue();
    let body: Uint8Array;
    try {
      body = await readBody(this.reader, this.head.framing);
    } catch (error) {
      throw this.#readFailure(error);
    }
    this.#markBodyDone();
    return body;
  }

  /** Reads the request body whole, as UTF-8 text. */
  async readText(): Promise<string> {
    await this.#continue();
    let text: string;
    try {
      // Decoded before #markBodyDone starts the next read into the same buffer.
      text = await readText(this.reader, this.head.framing);
    } catch (error) {
      throw this.#readFailure(error);
    }
    this.#markBodyDone();
    return text;
  }

  /** Relays the request body as it arrives, framing kept, to `sink`, after `prefix`. */
  async relayBody(sink: ByteSink, prefix: string): Promise<void> {
    await this.#continue();
    try {
      await relayBody(this.reader, this.head.framing, sink, { prefix });
    } catch (error) {
      throw this.#readFailure(error);
    }
    this.#markBodyDone();
  }

  /**
   * What a failure while moving the body becomes: bad chunked framing is the
   * client's error (400), and a client that closed mid-body aborts the
   * exchange. Errors of the sink (the decoder's socket) pass through.
   */
  #readFailure(error: unknown): unknown {
    if (error instanceof ChunkedFramingError) {
      return new ProxyError(400, `Request body: ${error.message}`);
    }
    if (error instanceof ClosedEarlyError) {
      this.#aborter.abort(new Error("client disconnected"));
      return new ProxyError(
        400,
        "The client closed the connection before sending its whole body",
        { cause: error },
      );
    }
    return error;
  }

  /** Records that the body was consumed; starts watching for the client leaving. */
  #markBodyDone(): void {
    this.#bodyDone = true;
    this.reader.watch().then((closed) => {
      if (closed) this.#aborter.abort(new Error("client disconnected"));
    });
  }
}

/** Handles one exchange: must answer it, or throw before writing anything. */
export type WireHandler = (exchange: Exchange) => Promise<void>;

/** Answers a request the server could not parse; the connection closes after. */
export type BadRequestWriter = (
  conn: Deno.Conn,
  error: ProxyError,
) => Promise<void>;

/** Options of `serveWire`. */
export interface WireServerOptions {
  readonly hostname: string;
  readonly port: number;
  readonly tls?: TlsCertificate | undefined;
  /** Share the port with other listeners (SO_REUSEPORT; needs `--unstable-net`). */
  readonly reusePort?: boolean;
  readonly log: Logger;
  readonly handler: WireHandler;
  /** Renders the refusal of a malformed request. */
  readonly refuse: BadRequestWriter;
  /** Called once listening. */
  readonly onListen?: (addr: Deno.NetAddr) => void;
}

/** A running wire server. */
export interface WireServer {
  readonly addr: Deno.NetAddr;
  /** Resolves when the listener is closed and every connection has ended. */
  readonly finished: Promise<void>;
  /** Stops accepting, closes idle connections, lets requests in flight finish. */
  shutdown(): Promise<void>;
}

interface Connection {
  readonly conn: Deno.Conn;
  busy: boolean;
}

function listen(
  options: WireServerOptions,
): Deno.Listener<Deno.Conn, Deno.NetAddr> {
  const base = {
    hostname: options.hostname,
    port: options.port,
    reusePort: options.reusePort ?? false,
  };
  if (options.tls) {
    return Deno.listenTls({
      ...base,
      cert: options.tls.cert,
      key: options.tls.key,
      alpnProtocols: ["http/1.1"],
    });
  }
  return Deno.listen({ ...base, transport: "tcp" });
}

/** Starts listening; throws when the address cannot be bound. */
export function serveWire(options: WireServerOptions): WireServer {
  const listener = listen(options);
  const connections = new Set<Connection>();
  const state = { stopping: false };
  let allClosed: (() => void) | undefined;

  function ended(connection: Connection): void {
    connections.delete(connection);
    if (state.stopping && connections.size === 0) allClosed?.();
  }

  async function serveConnection(connection: Connection): Promise<void> {
    const { conn } = connection;
    const reader = new ConnReader(conn);
    const remoteAddr = conn.remoteAddr as Deno.NetAddr;
    try {
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      while (!state.stopping) {
        let head: RequestHead;
        try {
          const text = await reader.head(HEAD_LIMIT);
          if (text === undefined) break;
          head = parseRequestHead(text);
        } catch (error) {
          const refusal = error instanceof HeadTooLargeError
            ? new ProxyError(431, error.message)
            : error;
          if (refusal instanceof ProxyError) {
            options.log.info("malformed request refused", {
              status: refusal.status,
              reason: refusal.message,
            });
            await options.refuse(conn, refusal);
          }
          break;
        }
        connection.busy = true;
        const exchange = new Exchange(head, reader, remoteAddr, state);
        await options.handler(exchange);
        connection.busy = false;
        if (exchange.closeAfter || !exchange.bodyDone || !head.keepAlive) break;
      }
    } catch (error) {
      // The client went away or the socket failed: nobody to answer.
      options.log.trace("connection ended", { error: String(error) });
    } finally {
      closeQuietly(conn);
      ended(connection);
    }
  }

  const addr = listener.addr;
  options.onListen?.(addr);
  const accepting = (async () => {
    let backoffMs = 0;
    while (!state.stopping) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (state.stopping || error instanceof Deno.errors.BadResource) return;
        // Out of file descriptors and the like pass: back off and go on
        // accepting, as Go's server does, rather than stop serving.
        backoffMs = Math.min(Math.max(5, backoffMs * 2), 1000);
        options.log.error("accepting a connection failed", {
          error: errorMessage(error),
          retry_in_ms: backoffMs,
        });
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
        continue;
      }
      backoffMs = 0;
      const connection: Connection = { conn, busy: false };
      connections.add(connection);
      serveConnection(connection);
    }
  })();

  let finishing: Promise<void> | undefined;
  const finished = new Promise<void>((resolve) => {
    allClosed = resolve;
  });
  return {
    addr,
    finished: accepting.then(() => finished),
    shutdown() {
      finishing ??= (async () => {
        state.stopping = true;
        try {
          listener.close();
        } catch {
          // Already closed.
        }
        for (const connection of connections) {
          if (!connection.busy) closeQuietly(connection.conn);
        }
        if (connections.size === 0) allClosed?.();
        await accepting;
        await finished;
      })();
      return finishing;
    },
  };
}
