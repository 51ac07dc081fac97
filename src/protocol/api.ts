/**
 * @module
 * The generation APIs the sidecar disaggregates, and what differs between
 * them on the wire (which fields limit the number of generated tokens).
 */

import {
  FIELD_MAX_COMPLETION_TOKENS,
  FIELD_MAX_OUTPUT_TOKENS,
  FIELD_MAX_TOKENS,
  FIELD_MIN_TOKENS,
  PATH_CHAT_COMPLETIONS,
  PATH_COMPLETIONS,
  PATH_RESPONSES,
} from "./fields.ts";

/** An OpenAI-compatible generation API served by vLLM. */
export type ApiKind = "chat" | "completions" | "responses";

/** Paths of the generation APIs, the routes the P/D handler takes. */
export const API_PATHS: Readonly<Record<ApiKind, string>> = {
  chat: PATH_CHAT_COMPLETIONS,
  completions: PATH_COMPLETIONS,
  responses: PATH_RESPONSES,
};

/**
 * Fields capped to 1 on the prefill leg, per API. Chat and completions both
 * get `max_completion_tokens` as well as `max_tokens` (llm-d-routing-sidecar
 * #58: vLLM lets `max_completion_tokens` win, so capping only `max_tokens`
 * made prefill generate the whole answer); `min_tokens` is capped too, since a
 * client's `min_tokens` above 1 would make vLLM reject the prefill.
 */
const PREFILL_CAPPED_FIELDS: Readonly<Record<ApiKind, readonly string[]>> = {
  chat: [FIELD_MAX_TOKENS, FIELD_MAX_COMPLETION_TOKENS, FIELD_MIN_TOKENS],
  completions: [
    FIELD_MAX_TOKENS,
    FIELD_MAX_COMPLETION_TOKENS,
    FIELD_MIN_TOKENS,
  ],
  responses: [FIELD_MAX_OUTPUT_TOKENS],
};

/** Token-limit fields a prefill request sets to 1 for this API. */
export function prefillCappedFields(api: ApiKind): readonly string[] {
  return PREFILL_CAPPED_FIELDS[api];
}
