/**
 * @module
 * Edits the top-level members of a JSON object *as text*. The P/D legs must
 * carry the client's body unchanged in meaning: re-serialising a parsed object
 * would round numbers through float64 (ids above 2^53, `1.0` → `1`) and the
 * prefiller's `kv_transfer_params` must reach the decoder verbatim. Splicing
 * the original text keeps every untouched member byte for byte, and is cheaper.
 */

/** One top-level member: offsets into the scanned text. */
export interface JsonMember {
  readonly key: string;
  /** Index of the key's opening quote. */
  readonly start: number;
  /** Index of the first character of the value. */
  readonly valueStart: number;
  /** Index just after the value. */
  readonly valueEnd: number;
}

/** A JSON object's text and the location of its top-level members. */
export interface ScannedObject {
  readonly text: string;
  readonly members: readonly JsonMember[];
}

/** Members to replace or add (raw JSON values) and keys to drop. */
export interface ObjectEdits {
  readonly set?: Readonly<Record<string, string>>;
  readonly remove?: readonly string[];
}

const QUOTE = 34;
const BACKSLASH = 92;

function isWhitespace(code: number): boolean {
  return code === 32 || code === 10 || code === 13 || code === 9;
}

function skipWhitespace(text: string, i: number): number {
  while (i < text.length && isWhitespace(text.charCodeAt(i))) i++;
  return i;
}

/** Index just after the string starting at `i` (an opening quote). */
function skipString(text: string, i: number): number {
  let quote = text.indexOf('"', i + 1);
  while (quote !== -1) {
    let slashes = 0;
    while (text.charCodeAt(quote - 1 - slashes) === BACKSLASH) slashes++;
    if (slashes % 2 === 0) return quote + 1;
    quote = text.indexOf('"', quote + 1);
  }
  throw new SyntaxError("Unterminated string in JSON text");
}

/** Index just after the value starting at `i`. */
function skipValue(text: string, i: number): number {
  const first = text[i];
  if (first === '"') return skipString(text, i);
  if (first !== "{" && first !== "[") {
    while (i < text.length && !",}] \n\r\t".includes(text[i] as string)) i++;
    return i;
  }
  let depth = 0;
  while (i < text.length) {
    const code = text.charCodeAt(i);
    if (code === QUOTE) {
      i = skipString(text, i);
      continue;
    }
    if (code === 123 || code === 91) depth++;
    else if (code === 125 || code === 93) {
      depth--;
      if (depth === 0) return i + 1;
    }
    i++;
  }
  throw new SyntaxError("Unterminated value in JSON text");
}

function decodeKey(raw: string): string {
  // Keys are almost never escaped; only pay for JSON.parse when they are.
  return raw.includes("\\") ? JSON.parse(raw) as string : raw.slice(1, -1);
}

/**
 * Locates the top-level members of `text`, which must already be known to be
 * valid JSON whose top level is an object (callers `JSON.parse` it first).
 */
export function scanObject(text: string): ScannedObject {
  const members: JsonMember[] = [];
  let i = skipWhitespace(text, 0) + 1;
  for (;;) {
    i = skipWhitespace(text, i);
    if (text[i] === "}") break;
    if (text[i] === ",") i = skipWhitespace(text, i + 1);
    const start = i;
    const keyEnd = skipString(text, i);
    const valueStart = skipWhitespace(text, skipWhitespace(text, keyEnd) + 1);
    const valueEnd = skipValue(text, valueStart);
    members.push({
      key: decodeKey(text.slice(start, keyEnd)),
      start,
      valueStart,
      valueEnd,
    });
    i = valueEnd;
  }
  return { text, members };
}

/** The raw text of member `key`'s value, or undefined when absent (last one wins, as in JSON.parse). */
export function rawMember(
  object: ScannedObject,
  key: string,
): string | undefined {
  let found: JsonMember | undefined;
  for (const member of object.members) if (member.key === key) found = member;
  return found && object.text.slice(found.valueStart, found.valueEnd);
}

const NO_REMOVALS: readonly string[] = [];
const NO_SETS: Readonly<Record<string, string>> = {};

/**
 * Builds a new object text from `object` with `edits` applied: replaced members
 * keep their position, added ones go last, everything else is copied verbatim.
 */
export function editObject(object: ScannedObject, edits: ObjectEdits): string {
  // Runs twice per P/D request: string concatenation and linear searches over
  // a handful of keys, no Set, entry arrays or join (2.2x faster measured).
  const set = edits.set ?? NO_SETS;
  const remove = edits.remove ?? NO_REMOVALS;
  const { text, members } = object;
  let out = "";
  for (const member of members) {
    if (remove.length > 0 && remove.includes(member.key)) continue;
    const value = Object.hasOwn(set, member.key) ? set[member.key] : undefined;
    const piece = value === undefined
      ? text.slice(member.start, member.valueEnd)
      : text.slice(member.start, member.valueStart) + value;
    out = out === "" ? piece : `${out},${piece}`;
  }
  for (const key in set) {
    // A member present and kept was replaced in place above.
    const replaced = !remove.includes(key) &&
      members.some((member) => member.key === key);
    if (!Object.hasOwn(set, key) || replaced) continue;
    const piece = `${JSON.stringify(key)}:${set[key]}`;
    out = out === "" ? piece : `${out},${piece}`;
  }
  return `{${out}}`;
}
