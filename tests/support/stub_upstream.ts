/**
 * @module
 * Loopback upstreams for what the mock vLLM would never do: a one-handler
 * server for answers it would never give (a non-JSON 200, a reply without
 * `kv_transfer_params`), an upstream that never answers, and raw TCP scripts.
 */

import { createWaiters } from "./deadline.ts";
import { freePort } from "./process.ts";

/** A running stub; `await using` stops it. */
export interface StubUpstream extends AsyncDisposable {
  readonly hostPort: string;
  readonly port: number;
  /** Bodies received, in order. */
  readonly bodies: string[];
}

/** Serves `handler` on 127.0.0.1 on a free port. */
export function startStubUpstream(
  handler: (request: Request) => Response,
): StubUpstream {
  const bodies: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      bodies.push(await request.text());
      return handler(request);
    },
  );
  return {
    hostPort: `127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    bodies,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A loopback port nothing listens on. */
export function closedPort(): number {
  // A free port is one nothing listens on.
  return freePort();
}

/** A raw TCP upstream that reads requests and never answers. */
export interface HangingUpstream extends AsyncDisposable {
  readonly port: number;
  readonly hostPort: string;
  /** Resolves when the first bytes of a request arrive, on any connection. */
  readonly requestSeen: Promise<void>;
  /** Connections accepted so far. */
  connections(): number;
  /** Resolves once `count` connections were accepted; rejects after 5 s. */
  accepted(count: number): Promise<unknown>;
  /**
   * Resolves when connection `which` (an index from 0), or the one that carried the request
   * whose `x-request-id` is `which` (a string), has carried a whole request head.
   */
  received(which: number | string): Promise<void>;
  /** Resolves when the client closed connection `which`, or the one that carried request `which`. */
  closed(which: number | string): Promise<void>;
  /** Bytes that came after the head on connection `which`, or the one that carried request `which`, so far. */
  bodyBytes(which: number | string): number;
  /**
   * Resolves once at least one connection was accepted and every one
   * accepted so far was closed by the client: a sidecar that never connected
   * does not pass for one that aborted.
   */
  allClosed(): Promise<void>;
}

/**
 * Starts a hanging upstream. It sees a client's close on the socket itself:
 * Deno.serve (and so the mock vLLM) does not report a client that leaves
 * before the answer once the request body exceeded a few hundred bytes.
 */
export function startHangingUpstream(
  options: { readonly tls?: { readonly cert: string; readonly key: string } } =
    {},
): HangingUpstream {
  const received = new Map<string, PromiseWithResolvers<void>>();
  const closed = new Map<string, PromiseWithResolvers<void>>();
  const slot = (events: typeof received, which: number | string) => {
    const key = typeof which === "number" ? `#${which}` : `id ${which}`;
    let entry = events.get(key);
    if (entry === undefined) {
      entry = Promise.withResolvers<void>();
      events.set(key, entry);
    }
    return entry;
  };
  const bodies = new Map<string, number>();
  const seen = Promise.withResolvers<void>();
  const accepting = createWaiters();
  const server = startScriptedServer(async (conn, index) => {
    accepting.notify();
    const buffer = new Uint8Array(16384);
    let head = "";
    let id: string | undefined;
    let body = 0;
    for (;;) {
      const read = await conn.read(buffer).catch(() => null);
      if (read === null) break;
      seen.resolve();
      if (id === undefined) {
        // Latin-1, one character a byte, so the head's end is a byte offset.
        head += new TextDecoder("latin1").decode(buffer.subarray(0, read));
        const end = head.indexOf("\r\n\r\n");
        if (end === -1) continue;
        id = /^x-request-id: *(.*)$/im.exec(head)?.[1]?.trim() ?? "";
        body = head.length - end - 4;
        slot(received, index).resolve();
        slot(received, id).resolve();
      } else {
        body += read;
      }
      bodies.set(`#${index}`, body);
      bodies.set(`id ${id}`, body);
    }
    slot(closed, index).resolve();
    if (id !== undefined) slot(closed, id).resolve();
  }, options);
  return {
    port: server.port,
    hostPort: `127.0.0.1:${server.port}`,
    requestSeen: seen.promise,
    connections: () => server.connections(),
    accepted: (count) =>
      accepting.until(
        () => server.connections() >= count,
        `${count} connections to the hanging upstream`,
      ),
    received: (which) => slot(received, which).promise,
    closed: (which) => slot(closed, which).promise,
    bodyBytes: (which) =>
      bodies.get(typeof which === "number" ? `#${which}` : `id ${which}`) ?? 0,
    allClosed: async () => {
      await slot(closed, 0).promise;
      const count = server.connections();
      for (let index = 0; index < count; index++) {
        await slot(closed, index).promise;
      }
    },
    [Symbol.asyncDispose]: () => server[Symbol.asyncDispose](),
  };
}

/** A raw TCP server whose connections are each handed to a script. */
export interface ScriptedServer extends AsyncDisposable {
  readonly port: number;
  /** Connections accepted so far. */
  connections(): number;
}

/** Serves raw TCP on 127.0.0.1 (`options.port`, else a free port): each connection goes to `script`, which reads and writes what it likes. */
export function startScriptedServer(
  script: (conn: Deno.Conn, index: number) => Promise<void>,
  options: {
    readonly port?: number;
    /** Serve TLS with this certificate. */
    readonly tls?: { readonly cert: string; readonly key: string };
  } = {},
): ScriptedServer {
  const address = { hostname: "127.0.0.1", port: options.port ?? 0 };
  const listener: Deno.Listener<Deno.Conn, Deno.NetAddr> = options.tls
    ? Deno.listenTls({ ...address, ...options.tls })
    : Deno.listen(address);
  const conns: Deno.Conn[] = [];
  const scripts: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      scripts.push(script(conn, conns.length - 1).catch(() => {}));
    }
  })();
  return {
    port: listener.addr.port,
    connections: () => conns.length,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Already closed by the script or the peer.
        }
      }
      await Promise.all(scripts);
      await accepting.catch(() => {});
    },
  };
}
