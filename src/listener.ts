/**
 * @module
 * One listener: the sidecar's routes with their own upstream pools, served on
 * the sidecar's port by the configured engine. With `-workers=N` each of N
 * threads runs one, sharing the port through SO_REUSEPORT so the kernel
 * spreads connections over them.
 */

import { createApp } from "./app.ts";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import {
  listenWithFallback,
  logStarting,
  serveApp,
  shutdownGracefully,
} from "./server.ts";
import type { TlsCertificate } from "./tls.ts";
import {
  createUpstreamClient,
  IDLE_TIMEOUT_MS,
  MAX_IDLE_PER_HOST,
} from "./upstream/client.ts";
import { createWireDecoder } from "./wire/decoder_leg.ts";
import { createWireHandler } from "./wire/handler.ts";
import { refuseMalformed } from "./wire/response.ts";
import { serveWire } from "./wire/server.ts";

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

/** What either engine's server offers the listener. */
interface RunningServer {
  readonly finished: Promise<void>;
  shutdown(): Promise<void>;
}

/** Serves the sidecar on the configured address; throws when it cannot listen. */
export function startListener(options: ListenerOptions): Listener {
  const { config, tls, log } = options;
  const upstream = createUpstreamClient();
  const reusePort = config.workers > 1;
  let closePools = () => upstream.close();
  let listen: (hostname: string) => RunningServer;
  if (config.engine === "wire") {
    const decoder = createWireDecoder({
      port: config.vllmPort,
      maxIdle: MAX_IDLE_PER_HOST,
      idleTimeoutMs: IDLE_TIMEOUT_MS,
    });
    closePools = () => {
      upstream.close();
      decoder.close();
    };
    const handler = createWireHandler({ config, log, upstream, decoder });
    listen = (hostname) =>
      serveWire({
        hostname,
        port: config.port,
        tls,
        reusePort,
        log,
        handler,
        refuse: refuseMalformed,
        onListen: (addr) => logStarting(log, addr, tls !== undefined),
      });
  } else {
    const app = createApp({ config, log, upstream });
    listen = (hostname) =>
      serveApp(app, { hostname, port: config.port, tls, log, reusePort });
  }
  let server: RunningServer;
  try {
    server = listenWithFallback(config.listenHost, listen, log);
  } catch (error) {
    closePools();
    throw error;
  }
  const finished = server.finished.then(closePools);
  return {
    async stop(deadlineMs) {
      const clean = await shutdownGracefully(server, { deadlineMs, log });
      // Past the deadline the in-flight streams are abandoned, not awaited.
      if (clean) await finished;
      return clean;
    },
  };
}
