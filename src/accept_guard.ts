/**
 * @module
 * What the accept loop does when it cannot accept: wait a little longer each
 * time, report at a bounded rate, and say when it works again. Running out
 * of descriptors is a state that passes once connections close, never a
 * reason to stop serving.
 */

import { errorMessage } from "./errors.ts";
import type { Logger } from "./log.ts";

/** First wait after a failed accept. */
const FIRST_RETRY_MS = 5;
/** Longest wait between accept attempts: the loop notices freed descriptors this soon. */
const MAX_RETRY_MS = 200;
/** At most one log line per condition per this interval. */
export const REPORT_INTERVAL_MS = 10_000;

/** Error codes that mean "out of descriptors or memory for now". */
const EXHAUSTION_CODES: ReadonlySet<string> = new Set([
  "EMFILE",
  "ENFILE",
  "ENOBUFS",
  "ENOMEM",
]);

/** Whether `error` is a temporary shortage of descriptors or memory. */
export function isResourceExhaustion(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code: unknown = Reflect.get(error, "code");
  return typeof code === "string" && EXHAUSTION_CODES.has(code);
}

/** Options of `createAcceptGuard`. */
export interface AcceptGuardOptions {
  readonly log: Logger;
  /** Clock in milliseconds; tests pass their own. */
  readonly now?: () => number;
}

/** Back-off and bounded-rate reports for one accept loop. */
export interface AcceptGuard {
  /** Records a failed accept; returns how long to wait before the next attempt. */
  failed(error: unknown, openConnections: number): number;
  /** Records a successful accept; reports the recovery after failures. */
  accepted(): void;
  /** Records that the connection cap holds new connections in the listen queue. */
  capped(openConnections: number): void;
}

/** Lets one report through per interval and counts those it holds back. */
function createReportGate(now: () => number) {
  let last = -Infinity;
  let held = 0;
  return {
    /** Held-back count since the last report when this one may be logged, else undefined. */
    pass(): number | undefined {
      const time = now();
      if (time - last < REPORT_INTERVAL_MS) {
        held++;
        return undefined;
      }
      last = time;
      const count = held;
      held = 0;
      return count;
    },
  };
}

/** Creates the guard of one accept loop. */
export function createAcceptGuard(options: AcceptGuardOptions): AcceptGuard {
  const { log } = options;
  const now = options.now ?? (() => performance.now());
  const failureGate = createReportGate(now);
  const capGate = createReportGate(now);
  let failures = 0;
  let failingSince = 0;
  let retryMs = 0;
  return {
    failed(error, openConnections) {
      if (failures === 0) failingSince = now();
      failures++;
      retryMs = Math.min(
        retryMs === 0 ? FIRST_RETRY_MS : retryMs * 2,
        MAX_RETRY_MS,
      );
      const held = failureGate.pass();
      if (held !== undefined) {
        const cause = isResourceExhaustion(error)
          ? "the process is out of descriptors"
          : "unexpected error";
        log.error(
          `Cannot accept a connection: ${
            errorMessage(error)
          }; ${cause}, retrying every ${MAX_RETRY_MS} ms at most`,
          {
            open_connections: openConnections,
            failed_accepts: failures,
            reports_held_back: held,
          },
        );
      }
      return retryMs;
    },
    accepted() {
      if (failures === 0) return;
      log.info("accepting connections again", {
        failed_accepts: failures,
        failing_ms: Math.round(now() - failingSince),
      });
      failures = 0;
      retryMs = 0;
    },
    capped(openConnections) {
      const held = capGate.pass();
      if (held === undefined) return;
      log.warn(
        `Connection limit reached: ${openConnections} connections open; new connections wait in the listen queue`,
        { open_connections: openConnections, reports_held_back: held },
      );
    },
  };
}
