/**
 * @module
 * Builds the bodies of the two P/D legs from the client's request. Pure: new
 * texts from the original one, which is never mutated and needs no restoring.
 */

import { type ApiKind, tokenLimitsOf } from "./api.ts";
import { FIELD_STREAM, FIELD_STREAM_OPTIONS } from "./fields.ts";
import {
  editObject,
  type ObjectEdits,
  rawMember,
  scanObject,
} from "./json_object.ts";
import type { GenerationRequest } from "./request.ts";

/** Options of `buildPrefillBody`. */
export interface PrefillBodyOptions {
  /** API of the request, which decides the token-limit fields. */
  readonly api: ApiKind;
  /**
   * Send `stream: false` without `stream_options`: vLLM returns
   * `kv_transfer_params` only in non-streaming answers, and rejects
   * `stream_options` without `stream` (vllm-wire.md §1.4).
   */
  readonly nonStreaming: boolean;
  /** Extra members, as raw JSON values. */
  readonly extra?: Readonly<Record<string, string>>;
}

/**
 * The raw JSON of `container` with every `capped` field set to 1: the
 * client's object edited, or a new object when the client sent none or a
 * value that is not an object (the decode leg keeps the client's own value).
 */
function cappedContainer(
  request: GenerationRequest,
  container: string,
  caps: Readonly<Record<string, string>>,
): string {
  const raw = rawMember(request.scanned, container);
  if (raw !== undefined && raw.startsWith("{")) {
    return editObject(scanObject(raw), { set: caps });
  }
  return editObject(scanObject("{}"), { set: caps });
}

/**
 * Body of a prefill request: the client's body with the API's token limits
 * set to 1 where the API keeps them (delta §2.4).
 */
export function buildPrefillBody(
  request: GenerationRequest,
  options: PrefillBodyOptions,
): string {
  const limits = tokenLimitsOf(options.api);
  const caps: Record<string, string> = {};
  for (const field of limits.capped) caps[field] = "1";
  const set: Record<string, string> = limits.container === undefined
    ? caps
    : { [limits.container]: cappedContainer(request, limits.container, caps) };
  if (options.nonStreaming) set[FIELD_STREAM] = "false";
  Object.assign(set, options.extra);
  const remove = options.nonStreaming ? [FIELD_STREAM_OPTIONS] : [];
  return editObject(request.scanned, { set, remove });
}

/** Body of a decode request: the client's body with `edits` (raw JSON members) applied. */
export function buildDecodeBody(
  request: GenerationRequest,
  edits: ObjectEdits,
): string {
  return editObject(request.scanned, edits);
}
