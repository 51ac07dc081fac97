/**
 * @module
 * Serves the app with the runtime's HTTP engine on a listener the sidecar
 * owns: TLS when a certificate is given, HTTP/2 by ALPN, no read or write
 * timeouts on a request (a generation can stream for hours), connections that
 * carry no request closed after a while, and a graceful stop bounded by a
 * deadline.
 */

import { settleWithin } from "./settle_within.ts";
import type { Hono } from "hono";
import {
  type HandingOverServer,
  serveConnections,
} from "./connection_server.ts";
import type { AppEnv } from "./context.ts";
import { errorMessage } from "./errors.ts";
import type { Logger } from "./log.ts";
import { createPeerWatch, type TcpTableReader } from "./peer_watch.ts";
import { findServeConnection } from "./runtime_http.ts";
import type { TlsCertificate } from "./tls.ts";
import { setTlsListenerNoDelayLogged } from "./tls_nodelay.ts";

/**
 * How long a connection may carry no request before it is closed: an idle
 * keep-alive connection, or a request head that never completes (slowloris).
 * nginx's client_header_timeout; longer than vLLM's own 5 s keep-alive, so a
 * client that pools connections to vLLM directly is not surprised.
 */
export const IDLE_TIMEOUT_MS = 60_000;

/** Options of `serveApp`. */
export interface ServeOptions {
  readonly hostname: string;
  readonly port: number;
  /** Serve HTTPS with this certificate; plain HTTP when absent. */
  readonly tls?: TlsCertificate | undefined;
  readonly log: Logger;
  /** Share the port with other listeners (SO_REUSEPORT; needs `--unstable-net`). */
  readonly reusePort?: boolean;
  /**
   * Connections served at once (`-max-connections`); more wait in the listen
   * queue. Unbounded by default: Deno lets no process read its own open-file limit
   * (`/proc/self/limits` needs `--allow-all`), so no safe default exists.
   */
  readonly maxConnections?: number;
  /** Close a connection that carries no request for this long; `IDLE_TIMEOUT_MS` by default. */
  readonly idleTimeoutMs?: number;
  /**
   * Reads the kernel's TCP tables for the peer watch
   * (`-watch-client-connections`: `readProcTable`; tests pass their own);
   * without it the watch is off and no request pays for it.
   */
  readonly readTcpTable?: TcpTableReader;
  /** `-max-client-resets`: close a connection whose client cancels this many requests, most of its own; 0 never. */
  readonly maxClientResets?: number;
}

/** Logs the listening address, the line operators (and tests) wait for. */
export function logStarting(
  log: Logger,
  addr: Deno.NetAddr,
  tls: boolean,
): void {
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  log.info("starting", { addr: `${host}:${addr.port}`, tls });
}

/**
 * The listen queue's length, as Go's net/http asks for (it reads
 * `net.core.somaxconn`, 4096 on current kernels, which also caps this).
 * Deno's default of 511 overflowed when 2,000 clients connected at once: the
 * kernel dropped their SYNs and they retried 1, 3 and 7 s later, which made
 * the burst's p99 seconds long (issue 9's bench, load 2).
 */
export const LISTEN_BACKLOG = 4096;

/** Opens the listening socket, TLS with HTTP/2 offered by ALPN when a certificate is given. */
function listen(options: ServeOptions): Deno.Listener<Deno.Conn, Deno.NetAddr> {
  const address = {
    hostname: options.hostname,
    port: options.port,
    reusePort: options.reusePort ?? false,
    tcpBacklog: LISTEN_BACKLOG,
  };
  if (!options.tls) return Deno.listen({ ...address, transport: "tcp" });
  const listener = Deno.listenTls({
    ...address,
    cert: options.tls.cert,
    key: options.tls.key,
    alpnProtocols: ["h2", "http/1.1"],
  });
  // The runtime sets it on plain TCP connections only.
  setTlsListenerNoDelayLogged(listener.addr.port, options.log);
  return listener;
}

/** Starts listening; throws when the address cannot be bound. */
export function serveApp(
  app: Hono<AppEnv>,
  options: ServeOptions,
): HandingOverServer {
  const { log } = options;
  const serveConnection = findServeConnection();
  if (!serveConnection) {
    throw new Error(
      `This Deno runtime (${Deno.version.deno}) does not expose its per-connection HTTP server; the sidecar is built for Deno 2.9.6`,
    );
  }
  const listener = listen(options);
  logStarting(log, listener.addr, options.tls !== undefined);
  return serveConnections(listener, {
    handler: (request, info) => app.fetch(request, info),
    serveConnection,
    log,
    maxConnections: options.maxConnections ?? Infinity,
    idleTimeoutMs: options.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
    maxClientResets: options.maxClientResets ?? 0,
    ...(options.readTcpTable
      ? {
        peerWatch: createPeerWatch({
          listenAddr: listener.addr,
          log,
          readTable: options.readTcpTable,
        }),
      }
      : {}),
  });
}

/** Address that means "every interface", IPv4 and IPv6 (Go's `:port`). */
const ALL_INTERFACES = "::";

/**
 * Calls `listen` with `hostname`; when that is the dual-stack wildcard and
 * the node has IPv6 disabled (some Kubernetes clusters do), falls back to
 * every IPv4 interface as Go's `:port` does. A port in use is not retried:
 * another address would not help.
 */
export function listenWithFallback<T>(
  hostname: string,
  listen: (hostname: string) => T,
  log: Logger,
): T {
  try {
    return listen(hostname);
  } catch (error) {
    if (hostname !== ALL_INTERFACES || error instanceof Deno.errors.AddrInUse) {
      throw error;
    }
    log.warn("cannot listen on IPv6, listening on IPv4 only", {
      error: errorMessage(error),
    });
    return listen("0.0.0.0");
  }
}

/**
 * Stops accepting connections and waits for in-flight requests, at most
 * `deadlineMs` (the Go sidecar waits 60 s); returns whether all finished.
 */
export async function shutdownGracefully(
  server: { shutdown(): Promise<void> },
  options: { readonly deadlineMs: number; readonly log: Logger },
): Promise<boolean> {
  options.log.info("shutting down");
  const clean = (await settleWithin(
    server.shutdown().then(() => true),
    options.deadlineMs,
  )) ?? false;
  if (!clean) {
    options.log.error("failed to gracefully shutdown: deadline exceeded");
  }
  return clean;
}
