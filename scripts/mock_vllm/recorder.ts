/**
 * Records every request the mock receives so tests assert on what crossed
 * the wire, and lets them wait for a request that has not arrived yet.
 *
 * @module
 */

import type {
  FinishedState,
  KvTransferRecord,
  RecordedRequest,
  RequestRole,
} from "./types.ts";

/** Fields known when a request arrives. */
export interface ArrivedRequest {
  readonly method: string;
  readonly path: string;
  readonly search: string;
  readonly headers: Headers;
  readonly bodyText: string;
  readonly body: unknown;
  readonly role: RequestRole;
}

/** A recorded request plus the mock's handle to settle it. */
export class Recording implements RecordedRequest {
  readonly seq: number;
  readonly method: string;
  readonly path: string;
  readonly search: string;
  readonly headers: Headers;
  readonly bodyText: string;
  readonly body: unknown;
  readonly role: RequestRole;
  status?: number;
  kvTransfer?: KvTransferRecord;
  readonly finished: Promise<FinishedState>;
  #resolve: (state: FinishedState) => void;
  #settled = false;

  /** Records an arrived request under sequence number `seq`. */
  constructor(seq: number, arrived: ArrivedRequest) {
    this.seq = seq;
    this.method = arrived.method;
    this.path = arrived.path;
    this.search = arrived.search;
    this.headers = arrived.headers;
    this.bodyText = arrived.bodyText;
    this.body = arrived.body;
    this.role = arrived.role;
    const { promise, resolve } = Promise.withResolvers<FinishedState>();
    this.finished = promise;
    this.#resolve = resolve;
  }

  /** True once {@linkcode settle} has run. */
  get settled(): boolean {
    return this.#settled;
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
