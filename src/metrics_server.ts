/**
 * @module
 * The Prometheus scrape endpoint on a port of its own (`-metrics-port`), so
 * `GET /metrics` on the proxy port keeps reaching vLLM's own metrics.
 */

import { errorMessage } from "./errors.ts";
import type { Logger } from "./log.ts";
import { listenWithFallback } from "./server.ts";

/** Path of the scrape endpoint. */
export const METRICS_PATH = "/metrics";

/** One scrape's answer. */
export interface Exposition {
  readonly contentType: string;
  readonly text: string;
}

/** Options of {@linkcode serveMetrics}. */
export interface MetricsServerOptions {
  readonly hostname: string;
  readonly port: number;
  readonly log: Logger;
  /** Builds the exposition for one scrape. */
  readonly collect: () => Promise<Exposition>;
}

/** Answers a scrape request; anything but `GET`/`HEAD /metrics` is refused. */
export async function handleScrape(
  request: Request,
  collect: () => Promise<Exposition>,
): Promise<Response> {
  if (new URL(request.url).pathname !== METRICS_PATH) {
    return new Response("Not found: metrics are served on /metrics\n", {
      status: 404,
    });
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("Method not allowed\n", {
      status: 405,
      headers: { allow: "GET, HEAD" },
    });
  }
  const { contentType, text } = await collect();
  return new Response(request.method === "HEAD" ? null : text, {
    headers: { "content-type": contentType },
  });
}

/** Starts the metrics listener; throws when the port cannot be bound. */
export function serveMetrics(
  options: MetricsServerOptions,
): Deno.HttpServer<Deno.NetAddr> {
  const { log, collect } = options;
  const serve = (hostname: string) =>
    Deno.serve({
      hostname,
      port: options.port,
      onListen: (addr) =>
        log.info("metrics server starting", {
          addr: `${addr.hostname}:${addr.port}`,
          path: METRICS_PATH,
        }),
      onError: (error) => {
        log.error("cannot collect metrics", { error: errorMessage(error) });
        return new Response("Cannot collect metrics\n", { status: 500 });
      },
    }, (request) => handleScrape(request, collect));
  try {
    return listenWithFallback(options.hostname, serve, log);
  } catch (error) {
    throw new Error(
      `Cannot listen on metrics port ${options.port}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
}
