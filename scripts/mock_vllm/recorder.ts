/**
 * Records every request the mock receives so tests assert on what crossed
 * the wire, and lets them wait for a request that has not arrived yet.
 *
 * @module
 */

import type {
  ArrivedRequest,
  FinishedState,
  RecordedRequest,
} from "./types.ts";

/** The request fields of a {@linkcode Recording}; its constructor assigns them. */
export interface Recording extends RecordedRequest {}

/** A recorded request plus the mock's handle to settle it. */
export class Recording {
  #resolve: (state: FinishedState) => void;
  #settled = false;

  /** Records an arrived request under sequence number `seq`. */
  constructor(seq: number, arrived: ArrivedRequest) {
    const { promise, resolve } = Promise.withResolvers<FinishedState>();
    Object.assign(this, {
      seq,
      ...arrived,
      status: undefined,
      kvTransfer: undefined,
      finished: promise,
    });
    this.#resolve = resolve;
  }

  /** Resolves `finished`; only the first call counts, and it returns true. */
  settle(state: FinishedState): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    this.#resolve(state);
    return true;
  }
}

/** Ordered request log with waiters. */
export interface Recorder {
  /** Every recorded request, in arrival order. */
  readonly requests: readonly Recording[];
  /** Records a request and wakes matching waiters. */
  add(arrived: ArrivedRequest): Recording;
  /** First recorded or future request matching `predicate`. */
  next(predicate?: (r: RecordedRequest) => boolean): Promise<RecordedRequest>;
}

interface Waiter {
  predicate: (r: RecordedRequest) => boolean;
  resolve: (r: RecordedRequest) => void;
}

/** Creates an empty recorder. */
export function createRecorder(): Recorder {
  const requests: Recording[] = [];
  let waiters: Waiter[] = [];
  return {
    requests,
    add(arrived) {
      const recording = new Recording(requests.length + 1, arrived);
      requests.push(recording);
      const still: Waiter[] = [];
      for (const waiter of waiters) {
        if (waiter.predicate(recording)) waiter.resolve(recording);
        else still.push(waiter);
      }
      waiters = still;
      return recording;
    },
    next(predicate = () => true) {
      const found = requests.find(predicate);
      if (found) return Promise.resolve(found);
      const { promise, resolve } = Promise.withResolvers<RecordedRequest>();
      waiters.push({ predicate, resolve });
      return promise;
    },
  };
}
