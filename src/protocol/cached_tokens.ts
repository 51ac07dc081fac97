/**
 * @module
 * The prefiller's cached-token count and its rewrite into the decoder's
 * `usage.prompt_tokens_details.cached_tokens` (base spec §5, llm-d-router
 * #916): with a KV transfer the decoder counts the transferred prompt as
 * cached, which misreports cache hits and billing. Pure functions over text;
 * members are spliced, so nothing else of the answer changes.
 */

import {
  FIELD_CACHED_TOKENS,
  FIELD_PROMPT_TOKENS_DETAILS,
  FIELD_STREAM_OPTIONS,
  FIELD_USAGE,
  REMOTE_CACHED_TOKENS_KEYS,
} from "./fields.ts";
import {
  editObject,
  rawMember,
  type ScannedObject,
  scanObject,
} from "./json_object.ts";
import { isJsonObject } from "./request.ts";

function parseOrUndefined(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The prefill answer's `usage.prompt_tokens_details.cached_tokens`; 0 when absent (vLLM sends null for 0). */
export function prefillCachedTokens(reply: ScannedObject): number {
  const usage = parseOrUndefined(rawMember(reply, FIELD_USAGE));
  if (!isJsonObject(usage)) return 0;
  const details = usage[FIELD_PROMPT_TOKENS_DETAILS];
  if (!isJsonObject(details)) return 0;
  const cached = details[FIELD_CACHED_TOKENS];
  return typeof cached === "number" && Number.isFinite(cached) ? cached : 0;
}

/**
 * Whether the prefill's `kv_transfer_params` hands its cached-token count to
 * the decoder, whose vLLM then reports it itself (vLLM PR #54222): the
 * sidecar must not rewrite it again.
 */
export function handsOverCachedTokens(kvTransferParams: string): boolean {
  const params = parseOrUndefined(kvTransferParams);
  return isJsonObject(params) &&
    REMOTE_CACHED_TOKENS_KEYS.some((key) => typeof params[key] === "number");
}

/**
 * Whether a streamed answer to `request` carries usage: vLLM sends its usage
 * chunk when `stream_options` is an object whose `include_usage` is not
 * false (it defaults to true), and usage on every chunk with
 * `continuous_usage_stats` (vllm-wire.md §1.2).
 */
export function streamCarriesUsage(request: ScannedObject): boolean {
  const options = parseOrUndefined(rawMember(request, FIELD_STREAM_OPTIONS));
  if (!isJsonObject(options)) return false;
  return options.include_usage !== false ||
    options.continuous_usage_stats === true;
}

/** A `usage` object member, spaces allowed around the colon. */
const USAGE_OBJECT = /"usage"\s*:\s*\{/;

/** Whether `text` may hold a `usage` object: a cheap test before parsing. */
export function mayCarryUsage(text: string): boolean {
  return USAGE_OBJECT.test(text);
}

/**
 * `json` (an answer or a stream chunk) with `usage.prompt_tokens_details.cached_tokens`
 * set to `cached`, the details object created when null or absent; undefined
 * when `json` is not an object with a `usage` object.
 */
export function rewriteCachedTokens(
  json: string,
  cached: number,
): string | undefined {
  const parsed = parseOrUndefined(json);
  if (!isJsonObject(parsed) || !isJsonObject(parsed[FIELD_USAGE])) {
    return undefined;
  }
  const answer = scanObject(json);
  const usage = scanObject(rawMember(answer, FIELD_USAGE) ?? "{}");
  const details = rawMember(usage, FIELD_PROMPT_TOKENS_DETAILS);
  const value = String(cached);
  const newDetails = details !== undefined && details.startsWith("{")
    ? editObject(scanObject(details), { set: { [FIELD_CACHED_TOKENS]: value } })
    : `{"${FIELD_CACHED_TOKENS}":${value}}`;
  const newUsage = editObject(usage, {
    set: { [FIELD_PROMPT_TOKENS_DETAILS]: newDetails },
  });
  return editObject(answer, { set: { [FIELD_USAGE]: newUsage } });
}

const LINE = /[^\r\n]*(?:\r\n|\n|\r|$)/g;

/**
 * SSE text (whole events) with the cached tokens rewritten in every `data:`
 * line whose JSON carries a `usage` object; other lines, `[DONE]` and line
 * endings are kept byte for byte.
 */
export function rewriteSseCachedTokens(text: string, cached: number): string {
  let out = "";
  for (const match of text.matchAll(LINE)) {
    const line = match[0];
    if (line === "") break;
    if (!line.startsWith("data:") || !mayCarryUsage(line)) {
      out += line;
      continue;
    }
    const body = line.replace(/[\r\n]+$/, "");
    const prefix = body.startsWith("data: ") ? "data: " : "data:";
    const rewritten = rewriteCachedTokens(body.slice(prefix.length), cached);
    out += rewritten === undefined
      ? line
      : `${prefix}${rewritten}${line.slice(body.length)}`;
  }
  return out;
}
