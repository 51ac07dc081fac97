/**
 * @module
 * A wait with a deadline, for the server's drain, hand-off and handshake
 * waits: the timer is cleared however the race ends, so no wait keeps the
 * process alive or a callback pending past its use.
 */

/** `promise`'s value, or undefined when `ms` pass first; rejects when `promise` does first. */
export async function settleWithin<T>(
  promise: Promise<T>,
  ms: number,
): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
