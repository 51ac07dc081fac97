/**
 * @module
 * The timeout, retry, failure-policy and shutdown settings (issue 12): read
 * from the flag values (Go durations) and validated. Durations are kept in
 * milliseconds; 0 turns a timeout off.
 */

import { ConfigError, invalidValue } from "./config_error.ts";
import { formatGoDuration, MAX_TIMER_MS, parseGoDuration } from "./duration.ts";
import { defaultOf, type FlagName, type ParserSpecs } from "./flag_table.ts";
import type { FlagValues } from "./flags.ts";
import { parseChoice, parseDurationValue } from "./flag_values.ts";

/** What a prefill leg that failed for good gives the client. */
export type PrefillFailurePolicy = "fail" | "decode";

/** The accepted `-prefill-failure-policy` values. */
export const PREFILL_FAILURE_POLICIES: readonly PrefillFailurePolicy[] = [
  "fail",
  "decode",
];

/** Timeouts, retries and shutdown, in milliseconds. */
export interface ResilienceSettings {
  /** `-connect-timeout`: longest TCP connect to an upstream not reached lately; 0 off. */
  readonly connectTimeout: number;
  /** `-prefill-timeout`: longest prefill leg, retries included; 0 off. */
  readonly prefillTimeout: number;
  /** `-encoder-timeout`: longest encoder stage, every item included; 0 off. */
  readonly encoderTimeout: number;
  /** `-decode-first-byte-timeout`: longest wait for a streaming decode's first byte; 0 off. */
  readonly decodeFirstByteTimeout: number;
  /** `-stream-idle-timeout`: longest silence of a decoder answer once begun; 0 off. */
  readonly streamIdleTimeout: number;
  /** `-client-body-timeout`: longest wait on one read of a client body read whole; 0 off. */
  readonly clientBodyTimeout: number;
  /** `-prefill-max-retries`: extra prefill attempts; negative values act as 0 (as in Go). */
  readonly prefillMaxRetries: number;
  /** `-prefill-retry-backoff`: constant delay between prefill attempts. */
  readonly prefillRetryBackoff: number;
  /** `-prefill-failure-policy`. */
  readonly prefillFailurePolicy: PrefillFailurePolicy;
  /** `-shutdown-grace`: longest graceful stop, drain delay included. */
  readonly shutdownGrace: number;
  /** `-shutdown-drain-delay`: accepting with /health 503 before accepting stops. */
  readonly shutdownDrainDelay: number;
}

/** The settings held as durations, with the flag each is read from. */
const DURATION_FLAGS = {
  connectTimeout: "connect-timeout",
  prefillTimeout: "prefill-timeout",
  encoderTimeout: "encoder-timeout",
  decodeFirstByteTimeout: "decode-first-byte-timeout",
  streamIdleTimeout: "stream-idle-timeout",
  clientBodyTimeout: "client-body-timeout",
  prefillRetryBackoff: "prefill-retry-backoff",
  shutdownGrace: "shutdown-grace",
  shutdownDrainDelay: "shutdown-drain-delay",
} as const satisfies Partial<Record<keyof ResilienceSettings, FlagName>>;

type DurationFlag = typeof DURATION_FLAGS[keyof typeof DURATION_FLAGS];

/** The settings held as durations, which `-print-config` shows in Go syntax. */
export const DURATION_SETTINGS: ReadonlySet<string> = new Set(
  Object.keys(DURATION_FLAGS),
);

/** The flag values the settings are read from, as the parser gives them. */
export type ResilienceValues = Pick<
  FlagValues<ParserSpecs>,
  DurationFlag | "prefill-max-retries" | "prefill-failure-policy"
>;

function duration(values: ResilienceValues, flag: DurationFlag): number {
  return parseDurationValue(flag, values[flag] ?? defaultOf(flag));
}

/**
 * `-prefill-retry-backoff` as the Go sidecar reads it: any Go duration, negative
 * included, checked only when retries are on, with its message. Unused (0) otherwise.
 */
function retryBackoff(values: ResilienceValues, retries: number): number {
  const flag = "prefill-retry-backoff";
  const text = values[flag] ?? defaultOf(flag);
  const ms = parseGoDuration(text);
  if (ms === undefined) {
    throw invalidValue(flag, text, 'a Go duration such as "200ms" or "1s"');
  }
  // Unused without retries, as in Go: any duration passes then.
  if (retries > 0 && ms <= 0) {
    throw new ConfigError(
      `--${flag} must be positive when --prefill-max-retries > 0, got ${
        formatGoDuration(ms)
      }`,
      { exitCode: 1, flag },
    );
  }
  if (retries > 0 && ms > MAX_TIMER_MS) {
    throw invalidValue(
      flag,
      text,
      `a Go duration of at most ${formatGoDuration(MAX_TIMER_MS)}`,
    );
  }
  return Math.max(0, Math.ceil(ms));
}

/** Reads and validates the settings; throws `ConfigError` naming the flag. */
export function resolveResilienceSettings(
  values: ResilienceValues,
): ResilienceSettings {
  const policy = parseChoice(
    "prefill-failure-policy",
    values["prefill-failure-policy"] ?? defaultOf("prefill-failure-policy"),
    PREFILL_FAILURE_POLICIES,
  );
  const retries = Math.max(
    0,
    values["prefill-max-retries"] ?? defaultOf("prefill-max-retries"),
  );
  const backoff = retryBackoff(values, retries);
  return {
    connectTimeout: duration(values, "connect-timeout"),
    prefillTimeout: duration(values, "prefill-timeout"),
    encoderTimeout: duration(values, "encoder-timeout"),
    decodeFirstByteTimeout: duration(values, "decode-first-byte-timeout"),
    streamIdleTimeout: duration(values, "stream-idle-timeout"),
    clientBodyTimeout: duration(values, "client-body-timeout"),
    prefillMaxRetries: retries,
    prefillRetryBackoff: backoff,
    prefillFailurePolicy: policy,
    shutdownGrace: duration(values, "shutdown-grace"),
    shutdownDrainDelay: duration(values, "shutdown-drain-delay"),
  };
}

/** Built-in settings: what a configuration without these flags gets. */
export const DEFAULT_RESILIENCE: ResilienceSettings = resolveResilienceSettings(
  {},
);
