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

/** Options of `startListener`. */
export interface ListenerOptions {
  readonly config: Config;
  readonly tls: TlsCertificate | undefined;
  readonly log: Logger;
}

/** A running listener. */
export interface Listener {
  /** Stops accepting, waits for in-flight requests (bounded), closes pools; resolves clean or not. */
  stop(deadlineMs: number): Promise<boolean>;
}

/** Serves the sidecar on the configured address; throws when it cannot listen. */
export function startListener(options: ListenerOptions): Listener {
  const { config, tls, log } = options;
  const upstream = createUpstreamClient();
  const app = createApp({ config, log, upstream });
  const reusePort = config.workers > 1;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = listenWithFallback(
      config.listenHost,
      (hostname) =>
        serveApp(app, { hostname, port: config.port, tls, log, reusePort }),
      log,
    );
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
