/**
 * vLLM's Anthropic Messages API (`POST /v1/messages`) shapes, as its
 * `AnthropicServingMessages` converts chat results (vLLM
 * `vllm/entrypoints/anthropic/`): pure builders.
 *
 * - JSON: `model_dump(exclude_none=True)`, so `stop_sequence` and a null
 *   `kv_transfer_params` are absent; `id` is the chat completion id.
 * - SSE (`event: <type>` + `data:`): `message_start` (its `message` built
 *   with `exclude_unset`, so without `type`/`role`), `content_block_start`
 *   on the first text, one `content_block_delta` per token,
 *   `content_block_stop`, `message_delta` with `stop_reason` and usage,
 *   `message_stop`. vLLM sends no `ping`.
 * - Errors after validation: `{"type": "error", "error": {"type", "message"}}`
 *   with the status; in a stream, one `error` event and the stream ends.
 *
 * @module
 */

import type { FinishReason } from "./engine.ts";
import type { ErrorInfo } from "./errors.ts";
import type { Completion, StreamMeta } from "./shapes.ts";
import { namedEvent } from "./sse.ts";

/** vLLM's `stop_reason_map`; other finish reasons map to none. */
export function stopReasonOf(finishReason: FinishReason): string | null {
  if (finishReason === "stop") return "end_turn";
  if (finishReason === "length") return "max_tokens";
  return null;
}

/** Non-streaming `/v1/messages` body. */
export function buildMessagesResponse(c: Completion): Record<string, unknown> {
  const text = c.tokens.join("");
  const stopReason = stopReasonOf(c.finishReason);
  return {
    id: c.id,
    type: "message",
    role: "assistant",
    content: text === "" ? [] : [{ type: "text", text }],
    model: c.model,
    ...(stopReason === null ? {} : { "stop_reason": stopReason }),
    usage: {
      "input_tokens": c.usage.prompt_tokens,
      "output_tokens": c.usage.completion_tokens,
    },
    ...(c.kvTransferParams === null
      ? {}
      : { "kv_transfer_params": c.kvTransferParams }),
  };
}

/** `message_start`, sent when the first engine output (the chat role chunk) arrives. */
export function messageStartEvent(
  meta: StreamMeta,
  promptTokens: number,
): string {
  return event("message_start", {
    message: {
      id: meta.id,
      content: [],
      model: meta.model,
      "stop_reason": null,
      "stop_sequence": null,
      usage: { "input_tokens": promptTokens, "output_tokens": 0 },
    },
  });
}

/** `content_block_start` of the text block. */
export function contentBlockStartEvent(): string {
  return event("content_block_start", {
    "content_block": { type: "text", text: "" },
    index: 0,
  });
}

/** One `text_delta`. */
export function contentBlockDeltaEvent(text: string): string {
  return event("content_block_delta", {
    delta: { type: "text_delta", text },
    index: 0,
  });
}

/** `content_block_stop` of the text block. */
export function contentBlockStopEvent(): string {
  return event("content_block_stop", { index: 0 });
}

/** `message_delta` with the stop reason and final usage. */
export function messageDeltaEvent(
  finishReason: FinishReason,
  usage: { readonly promptTokens: number; readonly completionTokens: number },
): string {
  return event("message_delta", {
    delta: { "stop_reason": stopReasonOf(finishReason) },
    usage: {
      "input_tokens": usage.promptTokens,
      "output_tokens": usage.completionTokens,
    },
  });
}

/** `message_stop`, sent for the chat stream's `[DONE]`. */
export function messageStopEvent(): string {
  return event("message_stop", {});
}

/** The `error` event vLLM's converter sends when the chat stream fails. */
export function messageErrorEvent(message: string): string {
  return event("error", { error: { type: "internal_error", message } });
}

/** vLLM's Anthropic error body for a semantic error. */
export function buildMessagesError(info: ErrorInfo): Record<string, unknown> {
  return { type: "error", error: { type: info.type, message: info.message } };
}

function event(type: string, fields: Record<string, unknown>): string {
  return namedEvent(type, { type, ...fields });
}
