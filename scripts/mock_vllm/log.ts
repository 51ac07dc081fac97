/**
 * vLLM-style log lines, so a demo's output reads like real vLLM pods and
 * greps written for vLLM (e.g. llm-d's "Received request" / "request_finished"
 * checks) work on the mock.
 *
 * Format: `(<name>) <LEVEL> <MM-DD HH:MM:SS> [<file>:<line>] <message>`; the
 * `(<name>)` prefix stands in for vLLM's `(APIServer pid=N)`.
 *
 * @module
 */

/** vLLM's log levels. */
export type LogLevel = "DEBUG" | "INFO" | "WARNING" | "ERROR";

/** Writes vLLM-style lines and keeps every one of them. */
export interface MockLogger {
  /** Every line written so far. */
  readonly lines: readonly string[];
  /** Formats and emits one line; `source` is vLLM's `file.py:line`. */
  write(level: LogLevel, source: string, message: string): void;
  /** Emits a uvicorn access-log line (`INFO:     host:port - "POST /x HTTP/1.1" 200 OK`). */
  access(client: string, method: string, target: string, status: number): void;
}

/** Where a logger sends lines and how it labels them; read on every write so `setConfig` applies. */
export interface LogTarget {
  readonly name: string;
  readonly log: (line: string) => void;
}

/** Builds a logger that reads its name and sink from `target` at each write. */
export function createLogger(target: LogTarget): MockLogger {
  const lines: string[] = [];
  function emit(line: string): void {
    lines.push(line);
    target.log(line);
  }
  return {
    lines,
    write(level, source, message) {
      emit(
        `(${target.name}) ${level} ${
          formatTimestamp(new Date())
        } [${source}] ${message}`,
      );
    },
    access(client, method, requestTarget, status) {
      const phrase = STATUS_PHRASES[status] ?? "";
      emit(
        `(${target.name}) INFO:     ${client} - "${method} ${requestTarget} HTTP/1.1" ${status} ${phrase}`
          .trimEnd(),
      );
    },
  };
}

/** vLLM's `%m-%d %H:%M:%S` timestamp, local time. */
export function formatTimestamp(date: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(date.getMonth() + 1)}-${two(date.getDate())} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${
      two(date.getSeconds())
    }`;
}

/** Renders a JSON value the way Python's `repr` prints the equivalent dict/list, as vLLM logs do. */
export function pyRepr(value: unknown): string {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return pyString(value);
  if (Array.isArray(value)) return `[${value.map(pyRepr).join(", ")}]`;
  if (typeof value === "object") {
    const entries = Object.entries(value).map(([k, v]) =>
      `${pyString(k)}: ${pyRepr(v)}`
    );
    return `{${entries.join(", ")}}`;
  }
  return pyString(String(value));
}

function pyString(value: string): string {
  const escaped = value.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
  // Python switches to double quotes when the text holds a single quote but no double quote.
  if (escaped.includes("'") && !escaped.includes('"')) return `"${escaped}"`;
  return `'${escaped.replaceAll("'", "\\'")}'`;
}

const STATUS_PHRASES: Readonly<Record<number, string>> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  410: "Gone",
  422: "Unprocessable Entity",
  429: "Too Many Requests",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};
