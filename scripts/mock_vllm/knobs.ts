/**
 * The mock's runtime-changeable settings ("knobs"): defaults and validation.
 *
 * One validator table serves the constructor options, `setConfig()` and
 * `POST /admin/config`, so all three accept and reject the same values.
 *
 * @module
 */

import type { KvLoadFailurePolicy } from "./types.ts";

/** Current settings of one mock; mutated in place by `setConfig` and `/admin/config`. */
export interface Knobs {
  name: string;
  model: string;
  engineId: string;
  ttftMs: number;
  interTokenMs: number;
  kvTransferMs: number;
  kvLeaseMs: number;
  kvLoadFailurePolicy: KvLoadFailurePolicy;
  kvWaitTimeoutMs: number;
  failureRate: number;
  failureStatus: number;
  enableRequestIdHeaders: boolean;
  promptTokensDetails: boolean;
  /** Prompt tokens found in the local prefix cache of a request computed here (no KV loaded). */
  prefixCachedTokens: number;
  outputTokens: number;
  /** Undefined means "advertise the bound hostname". */
  sideChannelHost: string | undefined;
  log: (line: string) => void;
}

/** Knobs `POST /admin/config` may change (numbers, booleans and the failure policy). */
export const ADMIN_KNOB_KEYS: readonly string[] = [
  "ttftMs",
  "interTokenMs",
  "kvTransferMs",
  "kvLeaseMs",
  "kvLoadFailurePolicy",
  "kvWaitTimeoutMs",
  "failureRate",
  "failureStatus",
  "enableRequestIdHeaders",
  "promptTokensDetails",
  "prefixCachedTokens",
  "outputTokens",
];

/** Options fixed at start-up; changing them needs a new server. */
export const RESTART_KEYS: readonly string[] = [
  "hostname",
  "port",
  "tls",
  "sideChannelPort",
  "kvConnector",
  "kvRole",
  "kvStore",
  "kvStoreUrl",
  "dataParallelSize",
  "ecConnector",
  "ecRole",
  "ecStore",
];

/** Error for a knob patch that names an unknown key or carries a bad value. */
export class KnobError extends Error {
  /** The offending key. */
  readonly key: string;
  /** Builds the error for `key`. */
  constructor(key: string, message: string) {
    super(message);
    this.name = "KnobError";
    this.key = key;
  }
}

/** Knobs before any option is applied. */
export function buildDefaultKnobs(): Knobs {
  return {
    name: "vllm",
    model: "Qwen/Qwen3-0.6B",
    engineId: crypto.randomUUID(),
    ttftMs: 0,
    interTokenMs: 0,
    kvTransferMs: 0,
    kvLeaseMs: 30_000,
    kvLoadFailurePolicy: "fail",
    kvWaitTimeoutMs: 10_000,
    failureRate: 0,
    failureStatus: 503,
    enableRequestIdHeaders: false,
    promptTokensDetails: false,
    prefixCachedTokens: 0,
    outputTokens: 12,
    sideChannelHost: undefined,
    log: discardLine,
  };
}

function discardLine(_line: string): void {}

type Validator = (key: string, value: unknown) => unknown;

/**
 * Builds a validator that returns the value when `ok` accepts it and otherwise
 * throws a {@linkcode KnobError} naming the key, what was `expected` and what came.
 */
function check<T>(
  expected: string,
  ok: (value: unknown) => boolean,
): (key: string, value: unknown) => T {
  return (key, value) => {
    if (!ok(value)) {
      throw new KnobError(
        key,
        `Invalid "${key}": expected ${expected}, got ${JSON.stringify(value)}`,
      );
    }
    return value as T;
  };
}

const nonNegativeMs = check<number>(
  "a number of ms >= 0",
  (value) => typeof value === "number" && Number.isFinite(value) && value >= 0,
);

const tokenCount = check<number>(
  "an integer >= 0",
  (value) => Number.isInteger(value) && (value as number) >= 0,
);

const rate = check<number>(
  "a number in 0..1",
  (value) => typeof value === "number" && value >= 0 && value <= 1,
);

const errorStatus = check<number>(
  "an HTTP error status 400..599",
  (value) =>
    Number.isInteger(value) && (value as number) >= 400 &&
    (value as number) <= 599,
);

const positiveInteger = check<number>(
  "an integer >= 1",
  (value) => Number.isInteger(value) && (value as number) >= 1,
);

const flag = check<boolean>(
  "true or false",
  (value) => typeof value === "boolean",
);

const text = check<string>(
  "a non-empty string",
  (value) => typeof value === "string" && value !== "",
);

const policy = check<KvLoadFailurePolicy>(
  '"fail" or "recompute"',
  (value) => value === "fail" || value === "recompute",
);

function logSink(key: string, value: unknown): (line: string) => void {
  if (typeof value !== "function") {
    throw new KnobError(key, `Invalid "${key}": expected a function`);
  }
  return value as (line: string) => void;
}

const VALIDATORS: Record<keyof Knobs, Validator> = {
  name: text,
  model: text,
  engineId: text,
  ttftMs: nonNegativeMs,
  interTokenMs: nonNegativeMs,
  kvTransferMs: nonNegativeMs,
  kvLeaseMs: nonNegativeMs,
  kvLoadFailurePolicy: policy,
  kvWaitTimeoutMs: nonNegativeMs,
  failureRate: rate,
  failureStatus: errorStatus,
  enableRequestIdHeaders: flag,
  promptTokensDetails: flag,
  prefixCachedTokens: tokenCount,
  outputTokens: positiveInteger,
  sideChannelHost: text,
  log: logSink,
};

/**
 * Validates a knob patch; keys outside `allowed` throw, undefined values are skipped.
 * Returns a patch that `Object.assign` can apply to a {@linkcode Knobs}.
 */
export function parseKnobPatch(
  patch: Record<string, unknown>,
  allowed: readonly string[],
): Partial<Knobs> {
  const parsed: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(patch)) {
    if (!allowed.includes(key) || !Object.hasOwn(VALIDATORS, key)) {
      throw new KnobError(key, `Unknown config key "${key}"`);
    }
    if (value === undefined) continue;
    parsed[key] = VALIDATORS[key as keyof Knobs](key, value);
  }
  return parsed as Partial<Knobs>;
}

/** Keys `setConfig` and the constructor accept (everything in {@linkcode Knobs}). */
export const ALL_KNOB_KEYS: readonly string[] = Object.keys(VALIDATORS);

/** The admin-visible knob values, for `GET`/`POST /admin/config` replies. */
export function snapshotAdminKnobs(knobs: Knobs): Record<string, unknown> {
  const snapshot: Record<string, unknown> = {};
  for (const key of ADMIN_KNOB_KEYS) snapshot[key] = knobs[key as keyof Knobs];
  return snapshot;
}
