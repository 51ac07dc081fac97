/**
 * @module
 * Durations in Go's `time.ParseDuration` syntax (`500ms`, `5s`, `2m`,
 * `1h30m`), the spelling the Go sidecar's duration flags and YAML keys take.
 */

/** Milliseconds per unit Go accepts. */
const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const TERM = /^(\d*)(?:\.(\d*))?([a-zµμ]+)/;

/**
 * Parses a Go duration into milliseconds; undefined when `text` is not one.
 * As in Go, `0` needs no unit and every other number needs one.
 */
export function parseGoDuration(text: string): number | undefined {
  let rest = text;
  let sign = 1;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    if (rest.startsWith("-")) sign = -1;
    rest = rest.slice(1);
  }
  if (rest === "0") return 0;
  if (rest === "") return undefined;
  let total = 0;
  while (rest !== "") {
    const match = TERM.exec(rest);
    if (match === null) return undefined;
    const [whole, integer = "", fraction = "", unit = ""] = match;
    if (integer === "" && fraction === "") return undefined;
    const scale = Object.hasOwn(UNIT_MS, unit) ? UNIT_MS[unit] : undefined;
    if (scale === undefined) return undefined;
    total += Number(`${integer || "0"}.${fraction || "0"}`) * scale;
    rest = rest.slice(whole.length);
  }
  return Number.isFinite(total) ? sign * total : undefined;
}

/** Longest duration a flag accepts: what `setTimeout` can wait (about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A Go duration a timer can wait, in whole milliseconds (rounded up): 0 or
 * more (1 ms or more when `positive`) and at most `MAX_TIMER_MS`; undefined
 * otherwise.
 */
export function parseTimerDuration(
  text: string,
  options: { readonly positive?: boolean } = {},
): number | undefined {
  const ms = parseGoDuration(text);
  if (ms === undefined || ms < 0 || ms > MAX_TIMER_MS) return undefined;
  const whole = Math.ceil(ms);
  return options.positive && whole === 0 ? undefined : whole;
}

/** Formats milliseconds as Go prints a duration, e.g. `1m30s`, `200ms`, `0s`. */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return "0s";
  const sign = ms < 0 ? "-" : "";
  let rest = Math.abs(ms);
  if (rest < 1000) return `${sign}${trimNumber(rest)}ms`;
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = `${trimNumber(rest / 1000)}s`;
  if (hours > 0) return `${sign}${hours}h${minutes}m${seconds}`;
  if (minutes > 0) return `${sign}${minutes}m${seconds}`;
  return `${sign}${seconds}`;
}

function trimNumber(value: number): string {
  return String(Math.round(value * 1e6) / 1e6);
}
