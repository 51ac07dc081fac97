/**
 * @module
 * JSON-lines logger on stderr, with klog/zap-style verbosity: errors, warnings
 * and info always; `debug` (routing decisions) from verbosity 4; `trace`
 * (bodies) from 5, the levels the Go sidecar uses. The only module that writes
 * to the process's output streams.
 *
 * Info lines (one access line per request) are the hot path: lines below
 * warn wait up to `FLUSH_DELAY_MS` (or `FLUSH_CHARS` of text) and go out in
 * one write, a warn or error line goes out at once with whatever waits
 * before it, and an exit flushes what is left (klog flushes every 5 s).
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

/** Where finished lines go; `urgent` lines must be written before it returns. */
type LineSink = (line: string, urgent: boolean) => void;

function writeAll(text: string): void {
  const bytes = encoder.encode(text);
  let written = 0;
  while (written < bytes.length) {
    written += Deno.stderr.writeSync(bytes.subarray(written));
  }
}

/**
 * Longest a line below warn waits before it is written. A write per request
 * (one per task, as before) woke whatever reads the sidecar's output once per
 * request: on the bench's 2 cores its log reader added 0.3-0.4 ms to every
 * P/D request one at a time, and the write was most of an access line's own
 * cost (7 of 12 us, measured). A SIGKILL loses at most this much of the
 * lines below warn.
 */
export const FLUSH_DELAY_MS = 50;
/** Text held before it is written whatever the delay: a burst's lines go out in few writes. */
const FLUSH_CHARS = 64 * 1024;

/**
 * Stderr, in batches. Writes stay synchronous so an urgent line, and the
 * lines before it, are out before the process can exit (bad flags, a failed
 * listen); `unload` covers a normal exit, `error` and `unhandledrejection`
 * a crash, `flushLogOutput` a thread about to be terminated.
 */
function createStderrSink(): { write: LineSink; flush(): void } {
  let pending: string[] = [];
  let pendingChars = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  function flush(): void {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (pending.length === 0) return;
    const text = pending.join("\n") + "\n";
    pending = [];
    pendingChars = 0;
    try {
      writeAll(text);
    } catch {
      // Stderr closed (its reader gone): nowhere to say so, and no reason
      // to end the process from a timer.
    }
  }
  globalThis.addEventListener("unload", flush);
  // An uncaught error or rejection ends the process without `unload`.
  globalThis.addEventListener("error", flush);
  globalThis.addEventListener("unhandledrejection", flush);
  return {
    flush,
    write(line, urgent) {
      pending.push(line);
      pendingChars += line.length + 1;
      if (urgent || pendingChars >= FLUSH_CHARS) {
        flush();
      } else if (timer === undefined) {
        const started = setTimeout(flush, FLUSH_DELAY_MS);
        // Pending lines never keep the process alive: `unload` writes them.
        Deno.unrefTimer(started);
        timer = started;
      }
    },
  };
}

/** This thread's stderr batches, shared by its loggers so their lines keep their order. */
let stderrSink: ReturnType<typeof createStderrSink> | undefined;

/** Writes the lines still waiting: before a thread is terminated, which fires no `unload`. */
export function flushLogOutput(): void {
  stderrSink?.flush();
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

/** Whether a value needs `replacer`: any object may hold an Error somewhere. */
function needsReplacer(fields: LogFields | undefined): boolean {
  for (const key in fields) {
    const value = fields[key];
    if (
      (typeof value === "object" && value !== null) || typeof value === "bigint"
    ) {
      return true;
    }
  }
  return false;
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
  const { write } = options;
  const sink: LineSink = write === undefined
    ? (stderrSink ??= createStderrSink()).write
    : (line) => write(line);
  return new JsonLogger(options.verbosity, sink, base);
}

/**
 * The logger. A class rather than closures: every request takes a child, and
 * a child is then one object instead of seven functions.
 */
class JsonLogger implements Logger {
  readonly #verbosity: number;
  readonly #sink: LineSink;
  readonly #context: LogFields;
  /** Whether the context fields need `replacer`; decided once per child. */
  readonly #contextNeedsReplacer: boolean;

  constructor(verbosity: number, sink: LineSink, context: LogFields) {
    this.#verbosity = verbosity;
    this.#sink = sink;
    this.#context = context;
    this.#contextNeedsReplacer = needsReplacer(context);
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
    return new JsonLogger(this.#verbosity, this.#sink, {
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
    // The replacer costs more than the rest of a line of plain values.
    const text = this.#contextNeedsReplacer || needsReplacer(fields)
      ? JSON.stringify(line, replacer)
      : JSON.stringify(line);
    this.#sink(text, level === "error" || level === "warn");
  }
}
