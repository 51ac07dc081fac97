/**
 * @module
 * Deadlines for awaited events, so a regression fails naming what it waited
 * for instead of hanging the suite: {@linkcode within} for one promise,
 * {@linkcode createWaiters} for a condition over state that changes.
 */

/** How long {@linkcode Waiters.until} waits unless told. */
const UNTIL_DEADLINE_MS = 5_000;

/**
 * Settles as `promise` does, or rejects with `message` once `ms` passed; a function
 * message is called then, so it can tell the state at the deadline.
 */
export async function within<T>(
  promise: Promise<T>,
  ms: number,
  message: string | (() => string),
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(typeof message === "string" ? message : message()),
        ),
      ms,
    );
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Settles as `promise` does, or rejects once `ms` passed with a message naming `what`. */
export function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  return within(promise, ms, `Timed out after ${ms} ms waiting for ${what}`);
}

/** Options of {@linkcode Waiters.until}. */
export interface UntilOptions {
  /** The deadline, in ms (default 5 s). */
  readonly ms?: number;
  /** The state as the failure message should show it, e.g. what was seen instead. */
  readonly detail?: () => string;
}

/** Waits on conditions over state that changes when its owner says so. */
export interface Waiters {
  /** Checks every pending wait again: call after each change of the state. */
  notify(): void;
  /** No change will come any more (`reason` says why): waits that do not hold fail now. */
  end(reason: string): void;
  /**
   * Resolves with `check`'s first result that is neither undefined nor false, tried now and on
   * every {@linkcode Waiters.notify}; rejects naming `what` when the deadline passes first.
   */
  until<T>(
    check: () => T | undefined | false,
    what: string,
    options?: UntilOptions,
  ): Promise<T>;
}

/** A set of waits with deadlines, woken by their owner's `notify`. */
export function createWaiters(): Waiters {
  const pending = new Set<() => void>();
  let ended: string | undefined;
  const notify = () => {
    for (const wake of [...pending]) wake();
  };
  return {
    notify,
    end(reason) {
      ended = reason;
      notify();
    },
    async until<T>(
      check: () => T | undefined | false,
      what: string,
      options: UntilOptions = {},
    ): Promise<T> {
      const ms = options.ms ?? UNTIL_DEADLINE_MS;
      const detail = () => options.detail ? `; ${options.detail()}` : "";
      const { promise, resolve, reject } = Promise.withResolvers<T>();
      const wake = () => {
        const value = check();
        if (value !== undefined && value !== false) resolve(value);
        else if (ended !== undefined) {
          reject(new Error(`${ended} before ${what}${detail()}`));
        }
      };
      pending.add(wake);
      try {
        wake();
        return await within(
          promise,
          ms,
          () => `Timed out after ${ms} ms waiting for ${what}${detail()}`,
        );
      } finally {
        pending.delete(wake);
      }
    },
  };
}

/**
 * Whether `promise` settles within `ms` (it keeps running either way): for
 * the deliberate negative checks ("still queued", "not yet answered"), whose
 * window is the point of the test.
 */
export function settlesWithin(
  promise: Promise<unknown>,
  ms: number,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise.then(() => true, () => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Resolves when `signal` aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}
