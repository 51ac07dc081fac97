/**
 * @module
 * JSON-lines logger on stderr, with klog/zap-style verbosity: errors, warnings
 * and info always; `debug` (routing decisions) from verbosity 4; `trace`
 * (bodies) from 5, the levels the Go sidecar uses. The only module that writes
 * to the process's output streams.
 */

/** Key/value pairs attached to a log line. */
export type LogFields = Readonly<Record<string, unknown>>;

/** Verbosity at which info lines, the access line among them, are logged (Go: `V(0)`). */
export const VERBOSITY_INFO = 0;
/** Verbosity at which routing decisions are logged (Go: `V(4)`). */
export const VERBOSITY_DEBUG = 4;
/** Verbosity at which request and response bodies are logged (Go: `V(5)`). */
export const VERBOSITY_TRACE = 5;

/** A structured logger; `child` adds fields to every line it writes. */
export interface Logger {
  /** Whether a line at verbosity `v` would be written; guard costly fields with it. */
  enabled(v: number): boolean;
  error(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  trace(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

/** Options of `createLogger`. */
export interface LoggerOptions {
  /** klog-style verbosity: 0 is info, 4 debug, 5 trace; negative keeps errors only. */
  readonly verbosity: number;
  /** Receives each finished line (without newline); defaults to stderr. */
  readonly write?: (line: string) => void;
  /** Name of the logger, as zap's `logger` key. */
  readonly name?: string;
}

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  // Synchronous on purpose: nothing is buffered, so no line is lost when the
  // process exits right after logging (bad flags, a failed listen).
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

function serializeError(value: unknown): unknown {
  if (!(value instanceof Error)) return value;
  const out: Record<string, unknown> = {
    name: value.name,
    message: value.message,
  };
  if (value.cause !== undefined) out.cause = serializeError(value.cause);
  return out;
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return serializeError(value);
  if (typeof value === "bigint") return value.toString();
  return value;
}

/** Creates a logger writing one JSON object per line. */
export function createLogger(options: LoggerOptions): Logger {
  const base: LogFields = options.name === undefined
    ? {}
    : { logger: options.name };
  return new JsonLogger(options.verbosity, options.write ?? writeStderr, base);
}

/**
 * The logger. A class rather than closures: every request takes a child, and
 * a child is then one object instead of seven functions.
 */
class JsonLogger implements Logger {
  readonly #verbosity: number;
  readonly #write: (line: string) => void;
  readonly #context: LogFields;

  constructor(
    verbosity: number,
    write: (line: string) => void,
    context: LogFields,
  ) {
    this.#verbosity = verbosity;
    this.#write = write;
    this.#context = context;
  }

  enabled(v: number): boolean {
    return v <= this.#verbosity;
  }

  error(msg: string, fields?: LogFields): void {
    this.#emit("error", msg, fields);
  }

  warn(msg: string, fields?: LogFields): void {
    if (this.#verbosity >= 0) this.#emit("warn", msg, fields);
  }

  info(msg: string, fields?: LogFields): void {
    if (this.#verbosity >= VERBOSITY_INFO) this.#emit("info", msg, fields);
  }

  debug(msg: string, fields?: LogFields): void {
    if (this.#verbosity >= VERBOSITY_DEBUG) this.#emit("debug", msg, fields);
  }

  trace(msg: string, fields?: LogFields): void {
    if (this.#verbosity >= VERBOSITY_TRACE) this.#emit("trace", msg, fields);
  }

  child(fields: LogFields): Logger {
    return new JsonLogger(this.#verbosity, this.#write, {
      ...this.#context,
      ...fields,
    });
  }

  #emit(level: string, msg: string, fields: LogFields | undefined): void {
    const line = {
      level,
      ts: Date.now() / 1000,
      ...this.#context,
      msg,
      ...fields,
    };
    this.#write(JSON.stringify(line, replacer));
  }
}
