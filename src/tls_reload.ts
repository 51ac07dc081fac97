/**
 * @module
 * The listener's certificate follows `-cert-path`. `Deno.serve` cannot change
 * the certificate of a running server, so a new pair starts a second server
 * on the same port (SO_REUSEPORT) and the old one is shut down gracefully:
 * its in-flight requests finish on their connections, new connections get the
 * new certificate. A pair that does not load or does not match keeps the old
 * one, with an error line (as the Go sidecar's reloader).
 *
 * The old listener is closed only once its queue is found empty (no
 * connection for 1 ms, at most 2 s; Linux resets the connections queued on a
 * listening socket as it closes, unless `net.ipv4.tcp_migrate_req=1`), and
 * its connections that have not sent their first request yet get the time to
 * send it. Measured with scripts/bench/experiments/cert_reload_gap.ts
 * (`--loops 8 --gap-ms 300`): 312 of 2,140 connections failed before; after,
 * 1 of 2,109 and 0 of 2,051 (the one still in its handshake as the listener
 * closed).
 */

import { errorMessage } from "./errors.ts";
import type { HandingOverServer } from "./connection_server.ts";
import type { Logger } from "./log.ts";
import { loadCertificate, type TlsCertificate } from "./tls.ts";

/** What the listener needs of its server, with or without reloads. */
export interface ListeningServer {
  readonly addr: Deno.NetAddr;
  /** Resolves once the server (and every server it replaced) has closed. */
  readonly finished: Promise<void>;
  /** Stops accepting and waits for in-flight requests on every server. */
  shutdown(): Promise<void>;
}

/** Options of `serveWithCertificateReload`. */
export interface ReloadOptions {
  /** Directory holding `tls.crt` and `tls.key`, watched for changes. */
  readonly certPath: string;
  /** The pair already loaded from it. */
  readonly initial: TlsCertificate;
  /**
   * Starts a server with `tls`: on the configured port when `port` is
   * undefined, else on `port` beside the running one. Throws when the pair
   * is invalid or the port cannot be bound. Must set `reusePort`.
   */
  readonly start: (
    tls: TlsCertificate,
    port: number | undefined,
  ) => HandingOverServer;
  readonly log: Logger;
  /** Quiet time after the last file event before reloading (the Go sidecar's 250 ms). */
  readonly debounceMs?: number;
}

function samePair(a: TlsCertificate, b: TlsCertificate): boolean {
  return a.cert === b.cert && a.key === b.key;
}

/** Serves with `initial` and replaces the server whenever `certPath` holds a new valid pair. */
export function serveWithCertificateReload(
  options: ReloadOptions,
): ListeningServer {
  const { certPath, log } = options;
  const debounceMs = options.debounceMs ?? 250;
  let current = options.start(options.initial, undefined);
  let pair = options.initial;
  let stopping = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let reloading = Promise.resolve();
  const draining = new Set<Promise<void>>();
  const finished = Promise.withResolvers<void>();
  const watcher = Deno.watchFs(certPath, { recursive: false });

  async function reload(): Promise<void> {
    if (stopping) return;
    let next: TlsCertificate;
    try {
      next = await loadCertificate(certPath);
    } catch (error) {
      log.error("Failed to reload TLS certificate", {
        error: errorMessage(error),
      });
      return;
    }
    if (stopping || samePair(next, pair)) return;
    let server: HandingOverServer;
    try {
      server = options.start(next, current.addr.port);
    } catch (error) {
      log.error("Failed to reload TLS certificate", {
        error: errorMessage(error),
        cert_path: certPath,
      });
      return;
    }
    const old = current;
    current = server;
    pair = next;
    // Logged once the old listener is closed: from then on every new
    // connection gets the new pair.
    await old.handOff();
    const drained = old.finished.catch(() => {});
    draining.add(drained);
    void drained.finally(() => draining.delete(drained));
    log.info("reloaded TLS certificate", { cert_path: certPath });
  }

  void (async () => {
    try {
      for await (const _event of watcher) {
        clearTimeout(timer);
        timer = setTimeout(() => {
          timer = undefined;
          reloading = reloading.then(reload);
        }, debounceMs);
      }
    } catch (error) {
      if (!stopping) {
        log.error("Certificate directory watch ended", {
          error: errorMessage(error),
          cert_path: certPath,
        });
      }
    }
  })();

  return {
    get addr() {
      return current.addr;
    },
    finished: finished.promise,
    async shutdown() {
      stopping = true;
      clearTimeout(timer);
      try {
        watcher.close();
      } catch {
        // Already closed.
      }
      await reloading;
      await Promise.all([current.shutdown(), ...draining]);
      finished.resolve();
    },
  };
}
