/**
 * @module
 * One listener: the sidecar's app served by `Deno.serve` on the sidecar's
 * port, and with `-data-parallel-size=N` on the N ports of its ranks, all in
 * this thread and sharing one upstream pool (as the Go sidecar's rank servers
 * share one process and its prefiller connections). With `-workers=N` each of
 * N threads runs one, sharing the ports through SO_REUSEPORT so the kernel
 * spreads connections over them.
 */

import { createApp } from "./app.ts";
import { type Config, configForRank, listenPort } from "./config.ts";
import { errorMessage } from "./errors.ts";
import type { Logger } from "./log.ts";
import { createMetrics, type MetricsRegistry } from "./metrics.ts";
import { listenWithFallback, serveApp, shutdownGracefully } from "./server.ts";
import type { TlsCertificate } from "./tls.ts";
import { createTracing } from "./tracing.ts";
import { readProcTable } from "./peer_watch.ts";
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

/** How a listener stops. */
export interface StopOptions {
  /** Longest graceful stop, the drain delay included (`-shutdown-grace`). */
  readonly graceMs: number;
  /**
   * How long to keep accepting, `/health` answering 503, before accepting
   * stops (`-shutdown-drain-delay`); 0 by default.
   */
  readonly drainDelayMs?: number;
}

/** A running listener. */
export interface Listener {
  /** This listener's metrics (every rank's), or undefined with `-metrics-port=0`. */
  readonly metrics: MetricsRegistry | undefined;
  /**
   * Drains (`/health` 503 while still accepting), stops accepting, waits for
   * in-flight requests (bounded), closes pools; resolves clean or not.
   */
  stop(options: StopOptions): Promise<boolean>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The logger of rank `rank`'s server: Go names each after its port. */
function rankLog(log: Logger, config: Config): Logger {
  if (config.dataParallelSize === 1) return log;
  return log.child({
    logger: `proxy server on port ${listenPort(config)}`,
    data_parallel_rank: config.dataParallelRank,
  });
}

/**
 * Serves the sidecar on the configured address, one server per data-parallel
 * rank; throws, with nothing left listening, when a port cannot be bound.
 */
export function startListener(options: ListenerOptions): Listener {
  const { config, tls, log } = options;
  const drain = { draining: false };
  const upstream = createUpstreamClient(
    upstreamClientOptions(config, options.caCerts ?? []),
  );
  // One registry per thread: its ranks share it as they share the pool.
  const metrics = config.metricsPort > 0 ? createMetrics() : undefined;
  const tracing = createTracing(config.tracing);
  // Certificate reload (issue 11): a new pair starts a second server on the
  // port, so every server on it must share it.
  const reload = tls !== undefined && config.certPath !== "";
  const reusePort = config.workers > 1 || reload;
  const servers: ListeningServer[] = [];
  // The first rank settles the address, so an IPv4-only node warns once.
  let hostname = config.listenHost;
  try {
    for (let rank = 0; rank < config.dataParallelSize; rank++) {
      const rankConfig = configForRank(config, rank);
      const port = listenPort(rankConfig);
      const serverLog = rankLog(log, rankConfig);
      const app = createApp({
        config: rankConfig,
        log: serverLog,
        upstream,
        drain,
        tracing,
        ...(metrics ? { metrics } : {}),
        ...(options.allowlist ? { allowlist: options.allowlist } : {}),
      });
      const serve = (
        host: string,
        pair: TlsCertificate | undefined,
        boundPort = port,
      ) =>
        serveApp(app, {
          hostname: host,
          port: boundPort,
          tls: pair,
          log: serverLog,
          reusePort,
          maxClientResets: config.maxClientResets,
          ...(config.maxConnections > 0
            ? { maxConnections: config.maxConnections }
            : {}),
          ...(config.watchClientConnections
            ? { readTcpTable: readProcTable }
            : {}),
        });
      const listen = (pair: TlsCertificate | undefined) =>
        listenWithFallback(hostname, (host) => serve(host, pair), serverLog);
      try {
        const server = reload
          ? serveWithCertificateReload({
            certPath: config.certPath,
            initial: tls,
            // A reload binds beside the running server, on the address it settled.
            start: (pair, beside) =>
              beside === undefined
                ? listen(pair)
                : serve(hostname, pair, beside),
            log: serverLog,
          })
          : listen(tls);
        servers.push(server);
        hostname = server.addr.hostname;
      } catch (error) {
        throw new Error(
          `Cannot listen on port ${port}: ${errorMessage(error)}`,
          { cause: error },
        );
      }
    }
  } catch (error) {
    // Go's rank servers share an errgroup: one failing stops them all.
    for (const server of servers) server.shutdown();
    upstream.close();
    throw error;
  }
  const finished = Promise.all(servers.map((server) => server.finished)).then(
    () => upstream.close(),
  );
  const all = {
    shutdown: async () => {
      await Promise.all(servers.map((server) => server.shutdown()));
    },
  };
  return {
    metrics,
    async stop({ graceMs, drainDelayMs = 0 }) {
      drain.draining = true;
      const delay = Math.min(drainDelayMs, graceMs);
      if (delay > 0) {
        log.info("draining: /health answers 503, still accepting", {
          drain_delay_ms: delay,
        });
        await sleep(delay);
      }
      const clean = await shutdownGracefully(all, {
        deadlineMs: graceMs - delay,
        log,
      });
      // Past the deadline the in-flight streams are abandoned, not awaited.
      if (clean) await finished;
      return clean;
    },
  };
}
