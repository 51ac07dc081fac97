/**
 * @module A small command-line parser that accepts the syntax of Go's `flag` package, which is
 * what deployments of the Go sidecar pass. Pure: takes the arguments, returns values or throws.
 */

/** Kinds of value a flag can hold. */
export type FlagKind = "string" | "int" | "bool" | "list";

/** Flag names (without dashes) mapped to their kinds. */
export type FlagSpecs = Readonly<Record<string, FlagKind>>;

/** The type a flag of kind `K` parses to. */
export type FlagValue<K extends FlagKind> = K extends "string" ? string
  : K extends "int" ? number
  : K extends "bool" ? boolean
  : readonly string[];

/** Parsed values; a property is present only when its flag was given (pflag's "Changed"). */
export type FlagValues<S extends FlagSpecs> = {
  readonly [N in keyof S]?: FlagValue<S[N]>;
};

/** The result of {@linkcode parseFlags}. */
export interface ParsedFlags<S extends FlagSpecs> {
  readonly values: FlagValues<S>;
  /** Names of the flags given, in command-line order, one entry per occurrence. */
  readonly order: readonly (keyof S & string)[];
  /**
   * The value text of each entry of `order`, undefined for a bool given
   * without "=": a later occurrence replaces a value, yet Go's flag package
   * checks every one, so a check of the value must read them all.
   */
  readonly texts: readonly (string | undefined)[];
  /** Arguments after the `--` terminator, untouched. */
  readonly rest: readonly string[];
}

/** Why parsing failed: lets callers replace the message for flags they know about. */
export type FlagErrorReason =
  | "unknown-flag"
  | "bad-syntax"
  | "missing-value"
  | "invalid-value"
  | "positional";

/** Options for {@linkcode FlagError}. */
export interface FlagErrorOptions {
  readonly reason: FlagErrorReason;
  /** Flag name without dashes, when the error concerns one. */
  readonly flag?: string | undefined;
}

/** A command-line argument the parser cannot accept. */
export class FlagError extends Error {
  override readonly name = "FlagError";
  readonly reason: FlagErrorReason;
  readonly flag?: string;

  constructor(message: string, options: FlagErrorOptions) {
    super(message);
    this.reason = options.reason;
    if (options.flag !== undefined) this.flag = options.flag;
  }
}

const GO_BOOLS: Readonly<Record<string, boolean>> = {
  "1": true,
  "t": true,
  "T": true,
  "TRUE": true,
  "true": true,
  "True": true,
  "0": false,
  "f": false,
  "F": false,
  "FALSE": false,
  "false": false,
  "False": false,
};

/** Parses a boolean like Go's `strconv.ParseBool`; returns undefined when `text` is not one. */
export function parseGoBool(text: string): boolean | undefined {
  return Object.hasOwn(GO_BOOLS, text) ? GO_BOOLS[text] : undefined;
}

/**
 * Parses Go-style flags: `-name=value`, `--name=value`, `-name value`, `--name value`, boolean
 * `-name` (true) or `-name=<Go bool>`; `--` ends the flags. A repeated flag's last value wins,
 * except `list` flags, whose comma-separated values append. Throws {@linkcode FlagError}.
 */
export function parseFlags<const S extends FlagSpecs>(
  args: readonly string[],
  specs: S,
): ParsedFlags<S> {
  const values: Record<string, FlagValue<FlagKind>> = {};
  const order: string[] = [];
  const texts: (string | undefined)[] = [];
  // A bool flag given without "=" just before: Go would stop at a following "false" and
  // silently ignore every flag after it, so we reject that argument with a hint instead.
  let bareBool: string | undefined;
  let index = 0;
  while (index < args.length) {
    const arg = args[index] ?? "";
    index++;
    if (arg === "--") {
      return done(values, order, texts, args.slice(index));
    }
    if (!arg.startsWith("-") || arg === "-") {
      throw positionalError(arg, bareBool);
    }
    const { name, inline } = splitFlag(arg);
    const kind = kindOf(specs, name);
    if (kind === undefined) {
      throw new FlagError(`Unknown flag "-${name}"`, {
        reason: "unknown-flag",
        flag: name,
      });
    }
    let text = inline;
    if (text === undefined && kind !== "bool") {
      text = takeSeparateValue(name, args[index]);
      index++;
    }
    bareBool = kind === "bool" && inline === undefined ? name : undefined;
    values[name] = convertValue(name, { kind, text, previous: values[name] });
    order.push(name);
    texts.push(text);
  }
  return done(values, order, texts, []);
}

function kindOf(specs: FlagSpecs, name: string): FlagKind | undefined {
  // hasOwn, not `in`: "constructor" or "toString" must not count as flags.
  return Object.hasOwn(specs, name) ? specs[name] : undefined;
}

function done<S extends FlagSpecs>(
  values: Record<string, FlagValue<FlagKind>>,
  order: string[],
  texts: (string | undefined)[],
  rest: readonly string[],
): ParsedFlags<S> {
  // Sound by construction: every key came through kindOf(specs) and was converted per its kind.
  return {
    values: values as FlagValues<S>,
    order: order as (keyof S & string)[],
    texts,
    rest,
  };
}

function splitFlag(arg: string): { name: string; inline: string | undefined } {
  const body = arg.startsWith("--") ? arg.slice(2) : arg.slice(1);
  // Same rejections as Go's flag package: "---x", "-=x", "--=x".
  if (body === "" || body.startsWith("-") || body.startsWith("=")) {
    throw new FlagError(`Bad flag syntax "${arg}"`, { reason: "bad-syntax" });
  }
  const equals = body.indexOf("=");
  if (equals === -1) return { name: body, inline: undefined };
  return { name: body.slice(0, equals), inline: body.slice(equals + 1) };
}

function takeSeparateValue(name: string, next: string | undefined): string {
  if (next === undefined) {
    throw new FlagError(`Flag "-${name}" needs a value`, {
      reason: "missing-value",
      flag: name,
    });
  }
  // Go would take the next flag as the value ("-kv-connector -port 9000"); we refuse. A value
  // that really starts with "-" can still be given as "-name=-value"; negative numbers pass.
  if (next.length > 1 && next.startsWith("-") && !/^-\d/.test(next)) {
    throw new FlagError(
      `Flag "-${name}" needs a value but is followed by "${next}"; ` +
        `if that is the value, write "-${name}=${next}"`,
      { reason: "missing-value", flag: name },
    );
  }
  return next;
}

interface RawValue {
  readonly kind: FlagKind;
  /** Undefined only for a bool flag given without "=". */
  readonly text: string | undefined;
  readonly previous: FlagValue<FlagKind> | undefined;
}

function convertValue(name: string, raw: RawValue): FlagValue<FlagKind> {
  const { kind, text, previous } = raw;
  if (text === undefined) return true;
  switch (kind) {
    case "string":
      return text;
    case "bool":
      return parseGoBool(text) ??
        invalidValue(name, text, "a boolean (true or false)");
    case "int":
      return parseDecimal(text) ?? invalidValue(name, text, "an integer");
    case "list": {
      // pflag StringSlice: an empty value adds nothing; commas separate items; repeats append.
      const items = text === "" ? [] : text.split(",");
      return Array.isArray(previous) ? [...previous, ...items] : items;
    }
  }
}

/**
 * A base-10 integer with an optional sign, as Go's `strconv.Atoi` reads one; undefined when
 * `text` is not one or not a safe integer.
 */
export function parseDecimal(text: string): number | undefined {
  // Base 10 only, so "010" is 10: Go's flag.Int (base 0) also reads 0x/0o/0b prefixes, "_"
  // separators and a leading 0 as octal. The sidecar's int flags (-v, -workers) are base 10.
  if (!/^[+-]?\d+$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}

function invalidValue(name: string, text: string, expected: string): never {
  throw new FlagError(
    `Invalid value "${text}" for flag "-${name}": expected ${expected}`,
    {
      reason: "invalid-value",
      flag: name,
    },
  );
}

function positionalError(arg: string, bareBool: string | undefined): FlagError {
  if (bareBool !== undefined) {
    const example = parseGoBool(arg) === undefined ? "false" : arg;
    return new FlagError(
      `Unexpected argument "${arg}" after flag "-${bareBool}": boolean flags take their value ` +
        `with "=", e.g. "-${bareBool}=${example}"`,
      { reason: "positional", flag: bareBool },
    );
  }
  return new FlagError(
    `Unexpected argument "${arg}": expected a flag such as "-name=value"`,
    { reason: "positional" },
  );
}
