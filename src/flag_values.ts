/**
 * @module
 * Checks of flag values that the settings modules share, with the messages
 * people see: enumerated values, in this sidecar's words or the Go sidecar's,
 * and durations.
 */

import { ConfigError, invalidValue } from "./config_error.ts";
import { parseTimerDuration } from "./duration.ts";

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
