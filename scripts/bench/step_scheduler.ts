/**
 * @module
 * The step-synchronous clock of the bench's decoder. vLLM runs one engine
 * step for the whole batch and every running sequence gets its next token
 * from that step, so a decode pod writes one SSE event to every open stream
 * in the same instant, STEP ms apart. This scheduler does the same: ticks
 * on a fixed grid (`origin + k * stepMs`), one event per open stream per
 * tick, a stream that opens between ticks gets its first event at the next
 * one. A late timer never makes up for missed ticks: like an engine step
 * that ran long, the next tick is the next grid point after the late one.
 */

/** A pending timer of a `StepClock`. */
export type TimerHandle = ReturnType<typeof setTimeout>;

/** What the scheduler needs of time; tests pass a fake one. */
export interface StepClock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Calls `callback` after `delayMs`; returns a handle for `clearTimer`. */
  setTimer(callback: () => void, delayMs: number): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}

/** One open stream, as the scheduler sees it. */
export interface StepStream {
  /** Writes the stream's next event; true when the stream is finished (it is then dropped). */
  step(): boolean;
}

/** The ticker shared by every stream of one decoder. */
export interface StepScheduler {
  /** Adds `stream` from the next tick on; the returned function removes it. */
  join(stream: StepStream): () => void;
  /** Streams open now. */
  readonly size: number;
}

/** The runtime's clock: `performance.now()` and `setTimeout`. */
export const SYSTEM_CLOCK: StepClock = {
  now: () => performance.now(),
  setTimer: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimer: (handle) => clearTimeout(handle),
};

/** Creates a scheduler whose grid starts at `clock.now()`. */
export function createStepScheduler(
  stepMs: number,
  clock: StepClock = SYSTEM_CLOCK,
): StepScheduler {
  if (!(stepMs > 0)) throw new Error(`Step must be above 0 ms, not ${stepMs}`);
  const origin = clock.now();
  const streams = new Set<StepStream>();
  let timer: TimerHandle | undefined;
  /** The grid point of the last tick: a timer firing a little early must not tick twice on one point. */
  let lastDue = -Infinity;

  function nextGridPoint(): number {
    const elapsed = clock.now() - origin;
    const next = origin + (Math.floor(elapsed / stepMs) + 1) * stepMs;
    return next <= lastDue ? lastDue + stepMs : next;
  }

  function schedule(): void {
    if (timer !== undefined || streams.size === 0) return;
    const due = nextGridPoint();
    timer = clock.setTimer(() => tick(due), Math.max(0, due - clock.now()));
  }

  function tick(due: number): void {
    timer = undefined;
    lastDue = due;
    for (const stream of [...streams]) {
      let finished: boolean;
      try {
        finished = stream.step();
      } catch {
        finished = true; // Its reader went away.
      }
      if (finished) streams.delete(stream);
    }
    schedule();
  }

  return {
    join(stream) {
      streams.add(stream);
      schedule();
      return () => {
        streams.delete(stream);
        if (streams.size === 0 && timer !== undefined) {
          clock.clearTimer(timer);
          timer = undefined;
        }
      };
    },
    get size() {
      return streams.size;
    },
  };
}
