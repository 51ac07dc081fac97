/**
 * vLLM's token-in, token-out API (`POST /inference/v1/generate`,
 * `vllm/entrypoints/serve/disagg/`): request `{token_ids, sampling_params,
 * stream?, stream_options?, kv_transfer_params?, request_id?}`, with the
 * token limits inside `sampling_params`. Pure builders for its answers.
 *
 * The answer shape differs between vLLM versions; the mock follows the
 * newest serving code read: JSON `{id: "generate-tokens-<base>", created,
 * model, choices: [{index, logprobs, finish_reason, token_ids}], usage,
 * prompt_logprobs, kv_transfer_params}`; stream chunks
 * `{request_id, choices: [{index, logprobs, finish_reason, token_ids}]}`,
 * a final `{request_id, choices: [], usage}` when usage is asked for, then
 * `[DONE]`.
 *
 * @module
 */

import type { Completion, StreamMeta, Usage } from "./shapes.ts";
import { streamUsage } from "./shapes.ts";
import { tokenIdsOf } from "./tokens.ts";

/** Non-streaming generate body. */
export function buildGenerateResponse(c: Completion): Record<string, unknown> {
  return {
    id: c.id,
    created: c.created,
    model: c.model,
    choices: [{
      index: 0,
      logprobs: null,
      "finish_reason": c.finishReason,
      "token_ids": tokenIdsOf(c.tokens),
    }],
    usage: c.usage,
    "prompt_logprobs": null,
    "kv_transfer_params": c.kvTransferParams,
  };
}

/** One stream chunk carrying `tokens` (empty with a finish reason that produced none). */
export function buildGenerateChunk(
  meta: StreamMeta,
  tokens: readonly string[],
  finishReason: string | null,
): Record<string, unknown> {
  return {
    "request_id": meta.id,
    choices: [{
      index: 0,
      logprobs: null,
      "finish_reason": finishReason,
      "token_ids": tokenIdsOf(tokens),
    }],
  };
}

/** The final usage chunk. */
export function buildGenerateUsageChunk(
  meta: StreamMeta,
  usage: Usage,
): Record<string, unknown> {
  return { "request_id": meta.id, choices: [], usage: streamUsage(usage) };
}
