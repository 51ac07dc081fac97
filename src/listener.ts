/**
 * @module
 * One listener: the sidecar's app with its own upstream pool, served on the
 * sidecar's port by `Deno.serve`. With `-workers=N` each of N threads runs
 * one, sharing the port through SO_REUSEPORT so the kernel spreads
 * connections over them.
 */

import { createApp } from "./app.ts";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { listenWithFallback, serveApp, shutdownGracefully } from "./server.ts";
import type { TlsCertificate } from "./tls.ts";
import { createUpstreamClient } from "./upstream/client.ts";
// SSRF protection, upstream TLS and certificate reload (issue 11).
import type { Allowlist } from "./allowlist/allowlist.ts";
import { upstreamClientOptions } from "./security.ts";
import {
  type ListeningServer,
  serveWithCertificateReload,
} from "./tls_reload.ts";

/** Options of `startListener`. */
export interface ListenerOptions {
  readonly config: Config;
  readonly tls: TlsCertificate | undefined;
  readonly log: Logger;
  // SSRF protection and upstream TLS (issue 11).
  /** Checks targets named by request headers; absent admits everything. */
  readonly allowlist?: Allowlist | undefined;
  /** `-ca-cert`'s certificates, already loaded. */
  readonly caCerts?: readonly string[];
}

/** A running listener. */
export interface Listener {
  /** Stops accepting, waits for in-flight requests (bounded), closes pools; resolves clean or not. */
  stop(deadlineMs: number): Promise<boolean>;
}

/** Serves the sidecar on the configured address; throws when it cannot listen. */
export function startListener(options: ListenerOptions): Listener {
  const { config, tls, log } = options;
  const upstream = createUpstreamClient(
    upstreamClientOptions(config, options.caCerts ?? []),
  );
  const app = createApp({
    config,
    log,
    upstream,
    ...(options.allowlist ? { allowlist: options.allowlist } : {}),
  });
  // Certificate reload (issue 11): a new pair starts a second server on the
  // port, so every server on it must share it.
  const reload = tls !== undefined && config.certPath !== "";
  const reusePort = config.workers > 1 || reload;
  let bound = config.listenHost;
  const listen = (pair: TlsCertificate | undefined, port?: number) =>
    port === undefined
      ? listenWithFallback(config.listenHost, (hostname) => {
        const server = serveApp(app, {
          hostname,
          port: config.port,
          tls: pair,
          log,
          reusePort,
        });
        bound = hostname;
        return server;
      }, log)
      : serveApp(app, { hostname: bound, port, tls: pair, log, reusePort });
  let server: ListeningServer;
  try {
    server = reload
      ? serveWithCertificateReload({
        certPath: config.certPath,
        initial: tls,
        start: listen,
        log,
      })
      : listen(tls);
  } catch (error) {
    upstream.close();
    throw error;
  }
  const finished = server.finished.then(() => upstream.close());
  return {
    async stop(deadlineMs) {
      const clean = await shutdownGracefully(server, { deadlineMs, log });
      // Past the deadline the in-flight streams are abandoned, not awaited.
      if (clean) await finished;
      return clean;
    },
  };
}
