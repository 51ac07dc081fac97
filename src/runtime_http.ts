/**
 * @module
 * The runtime's HTTP server for one connection: the engine `Deno.serve` runs
 * on every connection it accepts (Deno's own HTTP/1.1 codec, hyper for
 * HTTP/2, TCP_NODELAY set), reached through Deno's internals so that the
 * sidecar owns the accept loop. `Deno.serve` accepts in native code and ends
 * for good on the first accept error (EMFILE), and gives no connection cap and
 * no idle timeout (Deno 2.9.6).
 */

/** A request handler as `Deno.serve` calls it. */
export type ConnectionHandler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/** Options of a `ServeConnection` call. */
export interface ServeConnectionOptions {
  readonly handler: ConnectionHandler;
  /** Answers a request whose handler threw. */
  readonly onError: (error: unknown) => Response | Promise<Response>;
}

/** The HTTP server of one connection. */
export interface ConnectionHttpServer {
  /** Settles when the connection is closed and its requests are done. */
  readonly finished: Promise<void>;
  /** Closes the connection once its in-flight requests are answered. */
  shutdown(): Promise<void>;
}

/** Serves HTTP on an accepted connection until it closes. */
export type ServeConnection = (
  conn: Deno.Conn,
  options: ServeConnectionOptions,
) => ConnectionHttpServer;

/** Name of the internal `Deno.serve` uses for a single connection (ext/http/00_serve.ts). */
const INTERNAL_NAME = "serveHttpOnConnection";

function isConnectionHttpServer(value: unknown): value is ConnectionHttpServer {
  return typeof value === "object" && value !== null &&
    Reflect.get(value, "finished") instanceof Promise &&
    typeof Reflect.get(value, "shutdown") === "function";
}

/**
 * The runtime's per-connection server, or undefined when this runtime does
 * not expose it (it is internal: a Deno upgrade may move it; a test pins it).
 */
export function findServeConnection(): ServeConnection | undefined {
  const key: unknown = Reflect.get(Deno, "internal");
  if (typeof key !== "symbol") return undefined;
  const internals: unknown = Reflect.get(Deno, key);
  if (typeof internals !== "object" || internals === null) return undefined;
  const serveOn: unknown = Reflect.get(internals, INTERNAL_NAME);
  if (typeof serveOn !== "function") return undefined;
  return function serveConnection(conn, options) {
    // Arguments: connection, signal, handler, onError, onListen. No signal:
    // its abort throws from inside the runtime once the connection closed.
    const server: unknown = Reflect.apply(serveOn, undefined, [
      conn,
      undefined,
      options.handler,
      options.onError,
      () => {},
    ]);
    if (!isConnectionHttpServer(server)) {
      throw new TypeError(
        `Deno's internal "${INTERNAL_NAME}" did not return a server; this runtime is not supported`,
      );
    }
    return server;
  };
}
