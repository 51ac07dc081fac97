/**
 * A keyed meeting point with deadlines: one side publishes a value (or a
 * failure) under a key, the other waits for it. Concurrent P/D protocols
 * (SGLang, Mooncake, offloading) send both legs at once, so a decoder may
 * ask for KV before its prefiller has computed it, or for KV that never comes.
 *
 * Every wait ends: on publication, on failure, at its deadline, when the
 * waiter's signal aborts, or when the table closes. Timers are cleared on
 * each of those paths so tests see no leaked timers.
 *
 * @module
 */

/** How a wait ended. */
export type WaitOutcome<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly status: number; readonly reason: string };

/** A table of keys one side publishes and the other waits for. */
export interface Rendezvous<T> {
  /** Settles `key` with a value and wakes its waiters; later waits see it at once. */
  publish(key: string, value: T): void;
  /** Settles `key` with a failure; later waits see it at once. */
  fail(key: string, status: number, reason: string): void;
  /** Fails `key` with 410 unless it settled already: its producer is gone, so waits should end. */
  abandon(key: string, reason: string): void;
  /** The settled outcome of `key`, if any. */
  peek(key: string): WaitOutcome<T> | undefined;
  /** Forgets `key` (a consumed transfer); its pending waiters keep waiting. */
  delete(key: string): void;
  /**
   * Waits up to `ms` for `key` to settle. A deadline gives status 504;
   * an aborted `signal` rejects with its reason.
   */
  wait(key: string, ms: number, signal: AbortSignal): Promise<WaitOutcome<T>>;
  /** Ends every pending and future wait with status 503 (the server is going away). */
  close(): void;
}

/** Settled keys kept before the oldest are forgotten. */
const CAPACITY = 10_000;

interface Entry<T> {
  settled: WaitOutcome<T> | undefined;
  readonly waiters: Set<(outcome: WaitOutcome<T>) => void>;
}

/** Creates an empty table. */
export function createRendezvous<T>(): Rendezvous<T> {
  const entries = new Map<string, Entry<T>>();
  let closed = false;
  const entry = (key: string): Entry<T> => {
    let found = entries.get(key);
    if (found === undefined) {
      found = { settled: undefined, waiters: new Set() };
      entries.set(key, found);
      evictSettled(entries);
    }
    return found;
  };
  const settle = (key: string, outcome: WaitOutcome<T>) => {
    const found = entry(key);
    found.settled = outcome;
    for (const wake of [...found.waiters]) wake(outcome);
  };
  return {
    publish: (key, value) => settle(key, { ok: true, value }),
    fail: (key, status, reason) => settle(key, { ok: false, status, reason }),
    abandon(key, reason) {
      if (entries.get(key)?.settled === undefined) {
        settle(key, { ok: false, status: 410, reason });
      }
    },
    peek: (key) => entries.get(key)?.settled,
    delete(key) {
      const found = entries.get(key);
      if (found !== undefined && found.waiters.size === 0) entries.delete(key);
      else if (found !== undefined) found.settled = undefined;
    },
    wait(key, ms, signal) {
      if (signal.aborted) return Promise.reject(signal.reason);
      if (closed) return Promise.resolve(shutDown<T>());
      const found = entry(key);
      if (found.settled !== undefined) return Promise.resolve(found.settled);
      return waitOn(found, {
        ms,
        signal,
        timeoutReason: `timed out after ${ms} ms`,
      });
    },
    close() {
      closed = true;
      for (const found of entries.values()) {
        for (const wake of [...found.waiters]) wake(shutDown<T>());
      }
    },
  };
}

interface WaitOptions {
  readonly ms: number;
  readonly signal: AbortSignal;
  readonly timeoutReason: string;
}

function waitOn<T>(
  found: Entry<T>,
  options: WaitOptions,
): Promise<WaitOutcome<T>> {
  const { promise, resolve, reject } = Promise.withResolvers<WaitOutcome<T>>();
  const finish = () => {
    clearTimeout(timer);
    options.signal.removeEventListener("abort", onAbort);
    found.waiters.delete(wake);
  };
  const wake = (outcome: WaitOutcome<T>) => {
    finish();
    resolve(outcome);
  };
  const onAbort = () => {
    finish();
    reject(options.signal.reason);
  };
  const timer = setTimeout(
    () => wake({ ok: false, status: 504, reason: options.timeoutReason }),
    options.ms,
  );
  found.waiters.add(wake);
  options.signal.addEventListener("abort", onAbort, { once: true });
  return promise;
}

function shutDown<T>(): WaitOutcome<T> {
  return { ok: false, status: 503, reason: "the peer engine is shutting down" };
}

function evictSettled<T>(entries: Map<string, Entry<T>>): void {
  if (entries.size <= CAPACITY) return;
  for (const [key, found] of entries) {
    if (found.waiters.size === 0) {
      entries.delete(key);
      return;
    }
  }
}
