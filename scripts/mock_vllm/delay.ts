/**
 * Abortable sleep. Every latency the mock simulates goes through here so a
 * client disconnect or `close()` clears the pending timer (Deno's test
 * sanitizers fail on leaked timers).
 *
 * @module
 */

/** Waits `ms`, or rejects with `signal.reason` as soon as `signal` aborts; 0 ms sets no timer. */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  if (ms <= 0) return Promise.resolve();
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const onAbort = () => {
    clearTimeout(timer);
    reject(signal.reason);
  };
  const timer = setTimeout(() => {
    signal.removeEventListener("abort", onAbort);
    resolve();
  }, ms);
  signal.addEventListener("abort", onAbort, { once: true });
  return promise;
}

/**
 * Lets the runtime run one event-loop turn (a MessageChannel hop: no timer,
 * no 4 ms clamp), so the HTTP layer flushes the previous chunk before the
 * next one exists. Without it back-to-back events share one TCP write and a
 * client sees them in one read. Settles at once when `signal` aborts.
 */
export function yieldToEventLoop(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const channel = new MessageChannel();
  const finish = () => {
    signal.removeEventListener("abort", onAbort);
    channel.port1.close();
    channel.port2.close();
  };
  const onAbort = () => {
    finish();
    reject(signal.reason);
  };
  channel.port2.onmessage = () => {
    finish();
    resolve();
  };
  signal.addEventListener("abort", onAbort, { once: true });
  channel.port1.postMessage(null);
  return promise;
}
