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
  ALL_INTERFACES,
  serveAppWithFallback,
  shutdownGracefully,
} from "./server.ts";
import type { TlsCertificate } from "./tls.ts";
import { createUpstreamClient } from "./upstream/client.ts";
import { createWireDecoder } from "./wire/decoder_leg.ts";
import { createWireHandler } from "./wire/handler.ts";
import { refuseMalformed } from "./wire/response.ts";
import { serveWire, type WireServer } from "./wire/server.ts";

/** Options of `startListener`. */
export interface ListenerOptions {
  readonly config: Config;
  readonly tls: TlsCertificate | undefined;
  readonly log: Logger;
}

/** A running listener. */
export interface Listener {
  /** The bound address. */
  readonly addr: Deno.NetAddr;
  /** Stops accepting, waits for in-flight requests (bounded), closes pools; resolves clean or not. */
  stop(deadlineMs: number): Promise<boolean>;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
}

/** Idle keep-alive connections kept per upstream (the Go sidecar's default). */
const MAX_IDLE_PER_HOST = 1024;
/** Below uvicorn's 5 s keep-alive (llm-d #1564). */
const IDLE_TIMEOUT_MS = 4000;

function logStarting(log: Logger, addr: Deno.NetAddr, tls: boolean): void {
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  log.info("starting", { addr: `${host}:${addr.port}`, tls });
}

function startServeListener(options: ListenerOptions): Listener {
  const { config, tls, log } = options;
  const upstream = createUpstreamClient({
    poolMaxIdlePerHost: MAX_IDLE_PER_HOST,
    poolIdleTimeoutMs: IDLE_TIMEOUT_MS,
  });
  const app = createApp({ config, log, upstream });
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = serveAppWithFallback(app, {
      hostname: config.listenHost,
      port: config.port,
      tls,
      log,
      reusePort: config.workers > 1,
    });
  } catch (error) {
    upstream.close();
    throw error;
  }
  const finished = server.finished.then(() => upstream.close());
  return {
    addr: server.addr,
    finished,
    async stop(deadlineMs) {
      const clean = await shutdownGracefully(server, { deadlineMs, log });
      // Past the deadline the in-flight streams are abandoned, not awaited.
      if (clean) await finished;
      return clean;
    },
  };
}

function startWireListener(options: ListenerOptions): Listener {
  const { config, tls, log } = options;
  const upstream = createUpstreamClient({
    poolMaxIdlePerHost: MAX_IDLE_PER_HOST,
    poolIdleTimeoutMs: IDLE_TIMEOUT_MS,
  });
  const decoder = createWireDecoder({
    port: config.vllmPort,
    maxIdle: MAX_IDLE_PER_HOST,
    idleTimeoutMs: IDLE_TIMEOUT_MS,
  });
  const handler = createWireHandler({ config, log, upstream, decoder });
  const serve = (hostname: string) =>
    serveWire({
      hostname,
      port: config.port,
      tls,
      reusePort: config.workers > 1,
      log,
      handler,
      refuse: refuseMalformed,
      onListen: (addr) => logStarting(log, addr, tls !== undefined),
    });
  let server: WireServer;
  try {
    try {
      server = serve(config.listenHost);
    } catch (error) {
      // As on Deno.serve: no IPv6 on the node means every IPv4 interface.
      if (
        config.listenHost !== ALL_INTERFACES ||
        error instanceof Deno.errors.AddrInUse
      ) throw error;
      log.warn("cannot listen on IPv6, listening on IPv4 only", {
        error: error instanceof Error ? error.message : String(error),
      });
      server = serve("0.0.0.0");
    }
  } catch (error) {
    upstream.close();
    decoder.close();
    throw error;
  }
  const finished = server.finished.then(() => {
    upstream.close();
    decoder.close();
  });
  return {
    addr: server.addr,
    finished,
    async stop(deadlineMs) {
      log.info("shutting down");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), deadlineMs);
      });
      const clean = await Promise.race([
        server.shutdown().then(() => true),
        deadline,
      ]);
      clearTimeout(timer);
      if (!clean) {
        log.error("failed to gracefully shutdown: deadline exceeded");
      } else await finished;
      return clean;
    },
  };
}

/** Serves the sidecar on the configured address; throws when it cannot listen. */
export function startListener(options: ListenerOptions): Listener {
  return options.config.engine === "wire"
    ? startWireListener(options)
    : startServeListener(options);
}
