/**
 * @module
 * A one-handler loopback server for upstream answers the mock vLLM would
 * never give (a non-JSON 200, a reply without `kv_transfer_params`).
 */

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
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** A raw TCP upstream that reads requests and never answers. */
export interface SilentUpstream extends AsyncDisposable {
  readonly hostPort: string;
  readonly port: number;
  /** Resolves when the first bytes of a request arrive. */
  readonly requestSeen: Promise<void>;
  /** Resolves when the client closes that connection. */
  readonly closedByClient: Promise<void>;
}

/**
 * Starts a silent upstream. It sees a client's close directly on the socket,
 * which `Deno.serve` does not always report once a request was read whole.
 */
export function startSilentUpstream(): SilentUpstream {
  const seen = Promise.withResolvers<void>();
  const closed = Promise.withResolvers<void>();
  const server = startScriptedServer(async (conn) => {
    const buffer = new Uint8Array(16384);
    for (;;) {
      const read = await conn.read(buffer).catch(() => null);
      if (read === null) break;
      seen.resolve();
    }
    closed.resolve();
  });
  return {
    hostPort: `127.0.0.1:${server.port}`,
    port: server.port,
    requestSeen: seen.promise,
    closedByClient: closed.promise,
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
  options: { readonly port?: number } = {},
): ScriptedServer {
  const listener = Deno.listen({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
  });
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
