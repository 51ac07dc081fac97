/**
 * @module
 * Builds the bodies of the two P/D legs from the client's request. Pure: new
 * texts from the original one, which is never mutated and needs no restoring.
 */

import { type ApiKind, prefillCappedFields } from "./api.ts";
import { FIELD_STREAM, FIELD_STREAM_OPTIONS } from "./fields.ts";
import { editObject, type ObjectEdits } from "./json_object.ts";
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

/** Body of a prefill request: the client's body with token limits set to 1. */
export function buildPrefillBody(
  request: GenerationRequest,
  options: PrefillBodyOptions,
): string {
  const set: Record<string, string> = {};
  for (const field of prefillCappedFields(options.api)) set[field] = "1";
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
