/**
 * @module
 * The error a command line the sidecar cannot run with turns into: the
 * message `main.ts` prints, the flag it names and the exit code.
 */

/** Options for {@linkcode ConfigError}. */
export interface ConfigErrorOptions {
  /** 2: unknown flag, bad value or syntax; 1: values that parse but make no sense together. */
  readonly exitCode: 1 | 2;
  /** Flag name without dashes. */
  readonly flag?: string | undefined;
  readonly cause?: unknown;
}

/** A command line the sidecar cannot run with; `main.ts` prints the message and exits. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly exitCode: 1 | 2;
  readonly flag?: string;

  constructor(message: string, options: ConfigErrorOptions) {
    super(
      message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.exitCode = options.exitCode;
    if (options.flag !== undefined) this.flag = options.flag;
  }
}

/** The exit-2 error for a value flag `flag` cannot take, saying what it expects. */
export function invalidValue(
  flag: string,
  value: string,
  expected: string,
): ConfigError {
  return new ConfigError(
    `Invalid value "${value}" for flag "-${flag}": expected ${expected}`,
    { exitCode: 2, flag },
  );
}
