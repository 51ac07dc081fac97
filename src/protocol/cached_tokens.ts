/**
 * @module
 * The prefiller's cached-token count and its rewrite into the decoder's
 * `usage.prompt_tokens_details.cached_tokens` (base spec §5, llm-d-router
 * #916), or wherever the API reports it (src/protocol/api.ts): with a KV
 * transfer the decoder counts the transferred prompt as cached, which
 * misreports cache hits and billing. Pure functions over text; members are
 * spliced, so nothing else of the answer changes.
 */

import type { CachedTokensPlace } from "./api.ts";
import {
  FIELD_CACHED_TOKENS,
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

/** The prefill answer's cached tokens at `place`; 0 when absent (vLLM sends null for 0). */
export function prefillCachedTokens(
  reply: ScannedObject,
  place: CachedTokensPlace,
): number {
  const usage = parseOrUndefined(rawMember(reply, FIELD_USAGE));
  if (!isJsonObject(usage)) return 0;
  const details = usage[place.details];
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
 * Whether a streamed answer to `request` carries usage: always where the API
 * says so (the Responses API's `response.completed`); else vLLM sends its
 * usage chunk when `stream_options` is an object whose `include_usage` is
 * not false (it defaults to true), and usage on every chunk with
 * `continuous_usage_stats` (vllm-wire.md §1.2).
 */
export function streamCarriesUsage(
  request: ScannedObject,
  place: CachedTokensPlace,
): boolean {
  if (place.alwaysStreamed) return true;
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

/** The count to write and where. */
export interface CachedTokensRewrite {
  /** The prefiller's count. */
  readonly cached: number;
  readonly place: CachedTokensPlace;
}

/** `usage` (raw object text) with its details' `cached_tokens` set, the details created when null or absent. */
function usageWithCachedTokens(
  usageText: string,
  rewrite: CachedTokensRewrite,
): string {
  const usage = scanObject(usageText);
  const details = rawMember(usage, rewrite.place.details);
  const value = String(rewrite.cached);
  const newDetails = details !== undefined && details.startsWith("{")
    ? editObject(scanObject(details), { set: { [FIELD_CACHED_TOKENS]: value } })
    : `{"${FIELD_CACHED_TOKENS}":${value}}`;
  return editObject(usage, { set: { [rewrite.place.details]: newDetails } });
}

/**
 * `json` (an answer or a stream chunk) with the cached tokens set in its
 * `usage` object, or in the one of its `place.streamedIn` member (a
 * Responses API event); undefined when there is no such usage object.
 */
export function rewriteCachedTokens(
  json: string,
  rewrite: CachedTokensRewrite,
): string | undefined {
  const parsed = parseOrUndefined(json);
  if (!isJsonObject(parsed)) return undefined;
  const answer = scanObject(json);
  if (isJsonObject(parsed[FIELD_USAGE])) {
    const usage = rawMember(answer, FIELD_USAGE) ?? "{}";
    return editObject(answer, {
      set: { [FIELD_USAGE]: usageWithCachedTokens(usage, rewrite) },
    });
  }
  const container = rewrite.place.streamedIn;
  if (container === undefined) return undefined;
  const inner = parsed[container];
  if (!isJsonObject(inner) || !isJsonObject(inner[FIELD_USAGE])) {
    return undefined;
  }
  const innerObject = scanObject(rawMember(answer, container) ?? "{}");
  const usage = rawMember(innerObject, FIELD_USAGE) ?? "{}";
  const newInner = editObject(innerObject, {
    set: { [FIELD_USAGE]: usageWithCachedTokens(usage, rewrite) },
  });
  return editObject(answer, { set: { [container]: newInner } });
}

const LINE = /[^\r\n]*(?:\r\n|\n|\r|$)/g;

/**
 * SSE text (whole events) with the cached tokens rewritten in every `data:`
 * line whose JSON carries a `usage` object; other lines, `[DONE]` and line
 * endings are kept byte for byte.
 */
export function rewriteSseCachedTokens(
  text: string,
  rewrite: CachedTokensRewrite,
): string {
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
    const rewritten = rewriteCachedTokens(body.slice(prefix.length), rewrite);
    out += rewritten === undefined
      ? line
      : `${prefix}${rewritten}${line.slice(body.length)}`;
  }
  return out;
}
