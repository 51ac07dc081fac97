/**
 * @module
 * One scrape for all listener threads (`-workers` > 1): each thread keeps its
 * own registry (no shared memory between workers), and on a scrape the main
 * thread asks every other thread for a snapshot over a `MessagePort` and
 * merges them, as prom-client's cluster aggregation does for processes.
 */

import type { MetricSnapshot, MetricsRegistry } from "./metrics.ts";

/** How long a scrape waits for a thread's snapshot. */
export const SNAPSHOT_TIMEOUT_MS = 5000;

interface SnapshotRequest {
  readonly id: number;
}

interface SnapshotReply {
  readonly id: number;
  readonly snapshot: MetricSnapshot;
}

/** In a listener thread: answers every snapshot request arriving on `port`. */
export function answerSnapshots(
  port: MessagePort,
  registry: MetricsRegistry,
): void {
  port.onmessage = async ({ data }: MessageEvent<SnapshotRequest>) => {
    const reply: SnapshotReply = {
      id: data.id,
      snapshot: await registry.snapshot(),
    };
    port.postMessage(reply);
  };
}

/** Asks one listener thread for snapshots. */
export interface SnapshotClient {
  /** The thread's snapshot; rejects when none arrives within the timeout. */
  request(): Promise<MetricSnapshot>;
  /** Closes the port; requests still waiting reject at once. */
  close(): void;
}

/** In the main thread: the asking end of a thread's port. */
export function createSnapshotClient(
  port: MessagePort,
  timeoutMs = SNAPSHOT_TIMEOUT_MS,
): SnapshotClient {
  let next = 0;
  const pending = new Map<
    number,
    { resolve(snapshot: MetricSnapshot): void; reject(error: Error): void }
  >();
  port.onmessage = ({ data }: MessageEvent<SnapshotReply>) => {
    pending.get(data.id)?.resolve(data.snapshot);
    pending.delete(data.id);
  };
  return {
    request() {
      const id = next++;
      const { promise, resolve, reject } = Promise.withResolvers<
        MetricSnapshot
      >();
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(
          new Error(`No metrics from a listener thread in ${timeoutMs} ms`),
        );
      }, timeoutMs);
      pending.set(id, {
        resolve(snapshot) {
          clearTimeout(timer);
          resolve(snapshot);
        },
        reject(error) {
          clearTimeout(timer);
          reject(error);
        },
      });
      const message: SnapshotRequest = { id };
      port.postMessage(message);
      return promise;
    },
    close() {
      port.close();
      // No answer can come any more: waiting out the timeout would hold a scrape.
      for (const waiter of pending.values()) {
        waiter.reject(new Error("The listener thread has stopped"));
      }
      pending.clear();
    },
  };
}
