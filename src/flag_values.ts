/**
 * @module
 * Checks of flag values that the settings modules share, with the messages
 * people see: enumerated values, in this sidecar's words or the Go sidecar's,
 * and durations.
 */

import { ConfigError, invalidValue } from "./config_error.ts";
import { parseTimerDuration } from "./duration.ts";
import { parseDecimal } from "./flags.ts";

/** `text` as one of `choices`, or undefined when it is none of them. */
function findChoice<T extends string>(
  choices: readonly T[],
  text: string,
): T | undefined {
  return choices.find((choice) => choice === text);
}

/**
 * `text` if it is one of `choices`; the exit-2 {@linkcode invalidValue}
 * naming them otherwise. `anyCase` matches it lower-cased, as
 * controller-runtime matches its zap values.
 */
export function parseChoice<T extends string>(
  flag: string,
  text: string,
  choices: readonly T[],
  options: { readonly anyCase?: boolean } = {},
): T {
  const choice = findChoice(
    choices,
    options.anyCase ? text.toLowerCase() : text,
  );
  if (choice === undefined) {
    throw invalidValue(flag, text, `one of ${choices.join(", ")}`);
  }
  return choice;
}

/**
 * `text` if it is one of `choices`; otherwise the Go sidecar's exit-2 message,
 * `<subject> must be one of: a, b`, where the subject defaults to `--flag`.
 */
export function parseGoChoice<T extends string>(
  flag: string,
  text: string,
  options: { readonly choices: readonly T[]; readonly subject?: string },
): T {
  const choice = findChoice(options.choices, text);
  if (choice === undefined) {
    const subject = options.subject ?? `--${flag}`;
    throw new ConfigError(
      `${subject} must be one of: ${options.choices.join(", ")}`,
      { exitCode: 2, flag },
    );
  }
  return choice;
}

/** A Go duration a timer can wait, in ms: 0 or more, or above 0 when `positive`. */
export function parseDurationValue(
  flag: string,
  text: string,
  options: { readonly positive?: boolean } = {},
): number {
  const positive = options.positive ?? false;
  const ms = parseTimerDuration(text, { positive });
  if (ms === undefined) {
    throw invalidValue(
      flag,
      text,
      positive
        ? 'a positive duration such as "30s" or "500ms"'
        : 'a Go duration of 0 or more such as "500ms", "5s" or "2m"',
    );
  }
  return ms;
}

/** The range of klog's `-v` and `-stderrthreshold`, which it reads with `strconv.ParseInt(s, 10, 32)`. */
const INT32_RANGE = [-(2 ** 31), 2 ** 31 - 1] as const;

/** Whether `value` fits the 32 bits klog reads its numeric flags into. */
export function isInt32(value: number): boolean {
  return value >= INT32_RANGE[0] && value <= INT32_RANGE[1];
}

/** klog's severity names, which `-stderrthreshold` takes in any case. */
const KLOG_SEVERITIES = ["INFO", "WARNING", "ERROR", "FATAL"] as const;

/**
 * A klog `-stderrthreshold` value: a severity name in any case or a 32-bit
 * integer, any number (klog does not check it is a severity). Anything else
 * fails klog's flag parsing, so it is the exit-2 {@linkcode invalidValue}.
 */
export function parseKlogSeverity(flag: string, text: string): number {
  const named = KLOG_SEVERITIES.indexOf(
    text.toUpperCase() as typeof KLOG_SEVERITIES[number],
  );
  if (named !== -1) return named;
  const number = parseDecimal(text);
  if (number === undefined || !isInt32(number)) {
    throw invalidValue(
      flag,
      text,
      `a severity (${
        KLOG_SEVERITIES.join(", ")
      }, any case) or a 32-bit integer`,
    );
  }
  return number;
}
