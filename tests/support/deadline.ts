/**
 * @module
 * Deadlines for awaited events, so a regression fails naming what it waited
 * for instead of hanging the suite.
 */

/** Settles as `promise` does, or rejects with `message` once `ms` passed. */
export async function within<T>(
  promise: Promise<T>,
  ms: number,
  message: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
