/**
 * @module
 * The `-help` text, in the style of Go's `flag.PrintDefaults`.
 */

import type { FlagKind } from "./flags.ts";
import {
  ENV_HELP,
  flagEntries,
  type FlagEntry,
  type FlagStatus,
  LOGGING_NOTE,
} from "./flag_table.ts";

/** The program name the usage text and error hints show (the Go binary's). */
export const PROGRAM = "llm-d-routing-sidecar";

/** Usage text in Go's flag.PrintDefaults style, then the flags accepted or rejected by name. */
export function formatUsage(program: string = PROGRAM): string {
  // Byte order, as Go sorts: "-" < "_" < letters.
  const entries = flagEntries().sort(([a], [b]) => a < b ? -1 : 1);
  const lines = [`Usage of ${program}:`];
  for (const [name, entry] of entries) {
    if (entry.status === "supported") lines.push(formatFlag(name, entry));
  }
  const namesWith = (status: FlagStatus): string[] =>
    entries.flatMap(([name, entry]) =>
      entry.status === status ? [`-${name}`] : []
    );
  lines.push(
    "",
    'Flags take one or two dashes: -port=9000, --port 9000. Booleans take their value with "=":',
    "-secure-proxy=false.",
    "",
    "Environment variables:",
    ...formatEnv(),
    "",
    `Accepted for compatibility, without effect (${LOGGING_NOTE}):`,
    ...wrapNames(namesWith("no-effect")),
    "",
    "Not supported yet (rejected with exit code 2):",
    ...wrapNames(namesWith("not-yet")),
    "",
    "Not supported (rejected with exit code 2):",
    ...wrapNames(namesWith("unsupported")),
  );
  return lines.join("\n") + "\n";
}

/** Mirrors Go's PrintDefaults: "  -name type" then the help on the next line after "    \t". */
function formatFlag(name: string, entry: FlagEntry): string {
  const type = entry.kind === "bool" ? "" : ` ${typeName(entry.kind)}`;
  const head = `  -${name}${type}`;
  // Go keeps a one-letter boolean's help on the same line.
  const separator = head.length <= 4 ? "\t" : "\n    \t";
  return `${head}${separator}${entry.help}${formatDefault(entry.default)}`;
}

function typeName(kind: FlagKind): string {
  return kind === "list" ? "strings" : kind;
}

function formatDefault(value: string | number | boolean | undefined): string {
  if (value === undefined || value === "" || value === 0 || value === false) {
    return "";
  }
  const text = typeof value === "string"
    ? JSON.stringify(value)
    : String(value);
  return ` (default ${text})`;
}

function formatEnv(): string[] {
  const entries = Object.entries(ENV_HELP).sort(([a], [b]) => a < b ? -1 : 1);
  const width = Math.max(...entries.map(([name]) => name.length));
  return entries.map(([name, help]) => `  ${name.padEnd(width)}  ${help}`);
}

function wrapNames(names: readonly string[]): string[] {
  const lines: string[] = [];
  let line = "";
  for (const name of names) {
    const next = line === "" ? `  ${name}` : `${line}, ${name}`;
    if (next.length > 78 && line !== "") {
      lines.push(`${line},`);
      line = `  ${name}`;
    } else {
      line = next;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}
