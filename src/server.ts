/**
 * @module
 * Serves the app with `Deno.serve`: TLS when a certificate is given, no read
 * or write timeouts (a generation can stream for hours), and a graceful stop
 * bounded by a deadline.
 */

import type { Hono } from "hono";
import type { AppEnv } from "./context.ts";
import { errorMessage } from "./errors.ts";
import type { Logger } from "./log.ts";
import type { TlsCertificate } from "./tls.ts";

/** Options of `serveApp`. */
export interface ServeOptions {
  readonly hostname: string;
  readonly port: number;
  /** Serve HTTPS with this certificate; plain HTTP when absent. */
  readonly tls?: TlsCertificate | undefined;
  readonly log: Logger;
  /** Share the port with other listeners (SO_REUSEPORT; needs `--unstable-net`). */
  readonly reusePort?: boolean;
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

/** Starts listening; throws when the address cannot be bound. */
export function serveApp(
  app: Hono<AppEnv>,
  options: ServeOptions,
): Deno.HttpServer<Deno.NetAddr> {
  const { log } = options;
  const listen = {
    hostname: options.hostname,
    port: options.port,
    reusePort: options.reusePort ?? false,
    onListen(addr: Deno.NetAddr): void {
      logStarting(log, addr, options.tls !== undefined);
    },
  };
  const handler = (
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ) => app.fetch(request, info);
  if (options.tls) {
    return Deno.serve({
      ...listen,
      cert: options.tls.cert,
      key: options.tls.key,
    }, handler);
  }
  return Deno.serve(listen, handler);
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
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), options.deadlineMs);
  });
  const finished = server.shutdown().then(() => true);
  const clean = await Promise.race([finished, deadline]);
  clearTimeout(timer);
  if (!clean) {
    options.log.error("failed to gracefully shutdown: deadline exceeded");
  }
  return clean;
}
