/**
 * @module
 * The YAML configuration of `-configuration` and `-configuration-file`: its
 * keys (those of both Go sidecars), and a parser that turns the text into flag
 * values or refuses it, naming the key and line, with the Go sidecar's
 * `failed to unmarshal sidecar configuration: …` prefix. Untrusted input is
 * bounded before the YAML library sees it: size, nesting and alias counts.
 */

import {
  CST,
  type Document,
  isAlias,
  isMap,
  isNode,
  isScalar,
  isSeq,
  Lexer,
  LineCounter,
  type Pair,
  parseDocument,
} from "yaml";
import { ConfigError } from "./config_error.ts";
import { flagEntries, type FlagEntry, lookupFlag } from "./flag_table.ts";
import type { FlagKind, FlagValue } from "./flags.ts";

/** The type of a key in the Go sidecar's `yamlConfiguration` struct: one of the flag kinds. */
export type YamlKind = FlagKind;

/** One key of the YAML configuration; its name is the flag's. */
export interface YamlKey {
  readonly kind: YamlKind;
  /** Flags that, given on the command line, also keep this key from applying (see the flag table). */
  readonly yieldsTo?: readonly string[];
}

/**
 * Every key of the Go sidecars' YAML configuration (LATEST base spec §1.2 and NEXT delta §1.2),
 * plus `listen-host`, `workers`, `max-request-body-bytes`, `max-connections`,
 * `max-client-resets` and the timeout,
 * failure-policy and shutdown keys, which only this sidecar has: the flags whose table row has
 * `yaml`. A key is
 * accepted when its flag is supported in the flag table, refused as its flag is otherwise.
 */
export const YAML_KEYS: Readonly<Record<string, YamlKey>> = buildYamlKeys();

function buildYamlKeys(): Record<string, YamlKey> {
  const keys: Record<string, YamlKey> = {};
  for (const [name, entry] of flagEntries()) {
    if (entry.yaml === undefined) continue;
    const { kind = entry.kind, yieldsTo } = entry.yaml;
    keys[name] = yieldsTo === undefined ? { kind } : { kind, yieldsTo };
  }
  return keys;
}

/** Largest configuration read, in UTF-8 bytes: a complete one with comments is about 3 KiB. */
export const MAX_CONFIGURATION_BYTES = 64 * 1024;
/** Deepest nesting let through to the YAML parser; a valid configuration needs 2. */
const MAX_NESTING = 8;
/** Most alias expansions per value (the library's resource-exhaustion guard). */
const MAX_ALIAS_COUNT = 16;
/** Most items in a list value: the TLS stage lists have three possible items. */
const MAX_LIST_ITEMS = 32;

/** The Go sidecar's prefix for a configuration it cannot decode. */
const UNMARSHAL_PREFIX = "failed to unmarshal sidecar configuration: ";

/** Values of the keys a configuration sets, by flag name, typed as the flags are. */
export type YamlValues = Readonly<Record<string, FlagValue<FlagKind>>>;

/** Options for {@linkcode parseConfigurationYaml}. */
export interface ParseYamlOptions {
  /** The flag the text came from, named by the errors. */
  readonly flag: "configuration" | "configuration-file";
  /**
   * The flag table row of a key, which says whether it is supported and its flag's kind;
   * tests pass another to reach keys whose flags are not supported yet.
   */
  readonly lookup?: (name: string) => FlagEntry | undefined;
}

/** The YAML key `name`, if the configuration has one. */
export function lookupYamlKey(name: string): YamlKey | undefined {
  return Object.hasOwn(YAML_KEYS, name) ? YAML_KEYS[name] : undefined;
}

/**
 * Parses a YAML configuration into flag values. An empty document or `null` sets nothing; a
 * key whose value is null (`port:`) is left unset, as in Go. Throws {@linkcode ConfigError}
 * (exit 2) for bad YAML, a top level that is not a mapping, an unknown, repeated or not yet
 * supported key, or a value of the wrong type.
 */
export function parseConfigurationYaml(
  text: string,
  options: ParseYamlOptions,
): YamlValues {
  const fail = (detail: string): ConfigError =>
    new ConfigError(UNMARSHAL_PREFIX + detail, {
      exitCode: 2,
      flag: options.flag,
    });
  const { doc, pairs, lines } = composeMapping(text, fail);
  const lookup = options.lookup ?? lookupFlag;
  const values: Record<string, FlagValue<FlagKind>> = {};
  const seen = new Map<string, number>();
  for (const pair of pairs) {
    const line = lines.linePos(nodeStart(pair.key ?? pair.value)).line;
    const at = (detail: string) => fail(`line ${line}: ${detail}`);
    const name = keyName(pair.key);
    if (name === undefined) throw at("keys must be plain strings");
    const spec = lookupYamlKey(name);
    if (spec === undefined) throw at(unknownKeyMessage(name));
    const first = seen.get(name);
    if (first !== undefined) {
      throw at(`key "${name}" is given twice, first at line ${first}`);
    }
    seen.set(name, line);
    const entry = lookup(name);
    // Refused as its flag is: a setting the sidecar cannot honour must not pass unnoticed.
    if (entry?.status !== "supported") {
      throw at(`key "${name}" is not supported yet by this sidecar`);
    }
    const converted = readValue(doc, pair.value, spec.kind);
    if (converted.error !== undefined) {
      throw at(`key "${name}": ${converted.error}`);
    }
    if (converted.value === null) continue;
    // A YAML int under a string flag (`port`, `vllm-port`) becomes its text.
    values[name] =
      entry.kind === "string" && typeof converted.value === "number"
        ? String(converted.value)
        : converted.value;
  }
  return values;
}

/** The top-level pairs of `text`, after the bounds on untrusted input are checked. */
function composeMapping(
  text: string,
  fail: (detail: string) => ConfigError,
): {
  readonly doc: Document;
  readonly pairs: readonly Pair<unknown, unknown>[];
  readonly lines: LineCounter;
} {
  const size = new TextEncoder().encode(text).length;
  if (size > MAX_CONFIGURATION_BYTES) {
    throw fail(
      `the configuration is ${size} bytes, more than the ${MAX_CONFIGURATION_BYTES} allowed`,
    );
  }
  const nesting = findExcessNesting(text);
  if (nesting !== undefined) {
    const line = text.slice(0, nesting).split("\n").length;
    throw fail(`line ${line}: nested deeper than ${MAX_NESTING} levels`);
  }
  const lines = new LineCounter();
  // YAML 1.1, as the Go sidecar's parser (go-yaml v2): yes/no/on/off are booleans. Merge keys
  // off: a flat configuration has nothing to merge. Duplicates are found by the caller in
  // linear time; the library's check compares every pair of keys.
  const doc = parseDocument(text, {
    version: "1.1",
    merge: false,
    uniqueKeys: false,
    prettyErrors: false,
    lineCounter: lines,
  });
  const [problem] = [...doc.errors, ...doc.warnings];
  if (problem !== undefined) {
    const { line } = lines.linePos(problem.pos[0]);
    throw fail(`line ${line}: ${problem.message}`);
  }
  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) {
    return { doc, pairs: [], lines };
  }
  if (!isMap(root)) {
    const got = describeNode(root);
    throw fail(
      `the configuration must be a mapping of keys to values, got ${got}`,
    );
  }
  return { doc, pairs: root.items, lines };
}

/** A key's value converted to `kind`, null when the YAML value is null, or why it cannot be. */
function readValue(doc: Document, node: unknown, kind: YamlKind): Converted {
  if (!isNode(node)) return { value: null };
  let value: unknown;
  try {
    // The library counts alias expansions and refuses a "billion laughs" document.
    value = node.toJS(doc, { maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    return { error: errorText(error) };
  }
  if (value === null || value === undefined) return { value: null };
  return convertValue(value, {
    kind,
    node: isAlias(node) ? node.resolve(doc) : node,
  });
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Where the lexer's flow and compact nesting first exceeds {@linkcode MAX_NESTING}, as an
 * offset; undefined when it never does. The lexer runs in linear time without recursion,
 * while the parser and composer recurse: `[[[[…` 30 000 deep takes them seconds.
 * Block nesting by indentation needs one more column per level, so the size cap bounds it.
 */
function findExcessNesting(text: string): number | undefined {
  let flow = 0;
  let compact = 0;
  let offset = 0;
  for (const lexeme of new Lexer().lex(text)) {
    switch (CST.tokenType(lexeme)) {
      case "flow-map-start":
      case "flow-seq-start":
        flow++;
        break;
      case "flow-map-end":
      case "flow-seq-end":
        flow--;
        break;
      case "newline":
        compact = 0;
        break;
      case "seq-item-ind":
      case "explicit-key-ind":
        compact++;
        break;
    }
    if (flow + compact > MAX_NESTING) return offset;
    offset += lexeme.length;
  }
  return undefined;
}

function nodeStart(node: unknown): number {
  return isNode(node) ? node.range?.[0] ?? 0 : 0;
}

/** The key's name: a string as written; other scalars (`1`, `on`) by their source text. */
function keyName(node: unknown): string | undefined {
  if (!isScalar(node) || node.value === null) return undefined;
  if (typeof node.value === "string") return node.value;
  return node.source ?? undefined;
}

function unknownKeyMessage(name: string): string {
  const normalised = name.toLowerCase().replaceAll("_", "-");
  if (normalised !== name && lookupYamlKey(normalised) !== undefined) {
    return `unknown key "${name}"; did you mean "${normalised}"?`;
  }
  if (lookupFlag(name) !== undefined) {
    return `unknown key "${name}": "-${name}" is a command-line flag only`;
  }
  return `unknown key "${name}"`;
}

interface ConvertInput {
  readonly kind: YamlKind;
  /** The value's node, alias resolved, for the text of scalars under string keys. */
  readonly node: unknown;
}

type Converted =
  | { readonly value: FlagValue<FlagKind> | null; readonly error?: undefined }
  | { readonly value?: undefined; readonly error: string };

function convertValue(value: unknown, input: ConvertInput): Converted {
  switch (input.kind) {
    case "int":
      return typeof value === "number" && Number.isSafeInteger(value)
        ? { value }
        : { error: `expected an integer, got ${describeValue(value)}` };
    case "bool":
      return typeof value === "boolean"
        ? { value }
        : { error: `expected a boolean, got ${describeValue(value)}` };
    case "string": {
      const text = scalarText(value, input.node);
      return text !== undefined
        ? { value: text }
        : { error: `expected a string, got ${describeValue(value)}` };
    }
    case "list":
      return convertList(value, input.node);
  }
}

/**
 * A scalar as the string the operator wrote: `pool-group: 1.10` is "1.10", not "1.1"
 * (sigs.k8s.io/yaml also decodes scalars into string fields).
 */
function scalarText(value: unknown, node: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (
    (typeof value === "number" || typeof value === "boolean" ||
      value instanceof Date) && isScalar(node)
  ) {
    return node.source ?? String(value);
  }
  return undefined;
}

function convertList(value: unknown, node: unknown): Converted {
  if (!Array.isArray(value)) {
    return {
      error: `expected a list of strings such as [a, b], got ${
        describeValue(value)
      }`,
    };
  }
  if (value.length > MAX_LIST_ITEMS) {
    return {
      error: `expected at most ${MAX_LIST_ITEMS} items, got ${value.length}`,
    };
  }
  const items: string[] = [];
  const nodes = isSeq(node) ? node.items : [];
  for (const [index, item] of value.entries()) {
    const text = item === null ? undefined : scalarText(item, nodes[index]);
    if (text === undefined) {
      return {
        error: `item ${index + 1}: expected a string, got ${
          describeValue(item)
        }`,
      };
    }
    items.push(text);
  }
  return { value: items };
}

/** A YAML value as messages show it: its type, and short scalars themselves. */
function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (value instanceof Date) return `timestamp ${value.toISOString()}`;
  if (ArrayBuffer.isView(value)) return "binary data";
  if (typeof value === "object") return "a mapping";
  const text = JSON.stringify(value) ?? String(value);
  const shown = text.length > 40 ? `${text.slice(0, 40)}…` : text;
  return `${typeof value} ${shown}`;
}

function describeNode(node: unknown): string {
  if (isSeq(node)) return "a list";
  if (isScalar(node)) return describeValue(node.value);
  return "an alias";
}
