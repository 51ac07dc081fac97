/**
 * vLLM's response bodies: non-streaming JSON (full `model_dump()` with nulls,
 * vllm-wire.md §1.3) and streaming chunks (`exclude_unset`, §1.4). Pure builders.
 *
 * @module
 */

import type { FinishReason } from "./engine.ts";

/** OpenAI `usage` as vLLM serializes it. */
export interface Usage {
  "prompt_tokens": number;
  "total_tokens": number;
  "completion_tokens": number;
  "prompt_tokens_details": { cached_tokens: number } | null;
}

/** Fields shared by every chunk of one stream. */
export interface StreamMeta {
  readonly id: string;
  readonly created: number;
  readonly model: string;
}

/** A finished generation, ready to render. */
export interface Completion extends StreamMeta {
  readonly tokens: readonly string[];
  readonly finishReason: FinishReason;
  readonly usage: Usage;
  readonly kvTransferParams: Record<string, unknown> | null;
}

/** Builds `usage`; `cachedTokens` undefined means prompt-tokens details are off (null). */
export function buildUsage(
  promptTokens: number,
  completionTokens: number,
  cachedTokens: number | undefined,
): Usage {
  return {
    prompt_tokens: promptTokens,
    total_tokens: promptTokens + completionTokens,
    completion_tokens: completionTokens,
    prompt_tokens_details: cachedTokens === undefined
      ? null
      : { cached_tokens: cachedTokens },
  };
}

/** Usage as sent in stream chunks (`exclude_none`: null details are dropped). */
export function streamUsage(usage: Usage): Record<string, unknown> {
  const { prompt_tokens_details: details, ...rest } = usage;
  return details === null ? rest : { ...rest, prompt_tokens_details: details };
}

/** Non-streaming `/v1/chat/completions` body. */
export function buildChatCompletion(c: Completion): Record<string, unknown> {
  return {
    id: c.id,
    object: "chat.completion",
    created: c.created,
    model: c.model,
    choices: [{
      index: 0,
      message: {
        role: "assistant",
        content: c.tokens.join(""),
        refusal: null,
        annotations: null,
        audio: null,
        function_call: null,
        reasoning: null,
      },
      logprobs: null,
      finish_reason: c.finishReason,
      stop_reason: null,
      token_ids: null,
    }],
    service_tier: null,
    system_fingerprint: null,
    usage: c.usage,
    prompt_logprobs: null,
    prompt_token_ids: null,
    kv_transfer_params: c.kvTransferParams,
  };
}

/** Non-streaming `/v1/completions` body. */
export function buildTextCompletion(c: Completion): Record<string, unknown> {
  return {
    id: c.id,
    object: "text_completion",
    created: c.created,
    model: c.model,
    choices: [{
      index: 0,
      text: c.tokens.join(""),
      logprobs: null,
      finish_reason: c.finishReason,
      stop_reason: null,
      token_ids: null,
      prompt_logprobs: null,
      prompt_token_ids: null,
    }],
    service_tier: null,
    system_fingerprint: null,
    usage: c.usage,
    kv_transfer_params: c.kvTransferParams,
  };
}

/** First chat chunk: the assistant role with empty content. */
export function buildChatRoleChunk(meta: StreamMeta): Record<string, unknown> {
  return {
    ...chunkHead(meta, "chat.completion.chunk"),
    choices: [{
      index: 0,
      delta: { role: "assistant", content: "" },
      logprobs: null,
      finish_reason: null,
    }],
    prompt_token_ids: null,
  };
}

/** A chat content chunk; the last one carries `finish_reason` (vLLM sends no separate finish chunk). */
export function buildChatContentChunk(
  meta: StreamMeta,
  token: string,
  finishReason: string | null,
  usage?: Usage,
): Record<string, unknown> {
  const choice: Record<string, unknown> = {
    index: 0,
    delta: { content: token },
    logprobs: null,
    "finish_reason": finishReason,
  };
  if (finishReason !== null) choice.stop_reason = null;
  choice.token_ids = null;
  return withUsage({
    ...chunkHead(meta, "chat.completion.chunk"),
    choices: [choice],
  }, usage);
}

/** A completions chunk; the last one carries `finish_reason`. */
export function buildTextCompletionChunk(
  meta: StreamMeta,
  token: string,
  finishReason: string | null,
  usage?: Usage,
): Record<string, unknown> {
  const choice = {
    index: 0,
    text: token,
    logprobs: null,
    "finish_reason": finishReason,
    "stop_reason": null,
  };
  return withUsage(
    { ...chunkHead(meta, "text_completion"), choices: [choice] },
    usage,
  );
}

/** The final usage chunk (`choices: []`). */
export function buildUsageChunk(
  meta: StreamMeta,
  object: "chat.completion.chunk" | "text_completion",
  usage: Usage,
): Record<string, unknown> {
  return { ...chunkHead(meta, object), choices: [], usage: streamUsage(usage) };
}

function chunkHead(meta: StreamMeta, object: string): Record<string, unknown> {
  return { id: meta.id, object, created: meta.created, model: meta.model };
}

function withUsage(
  chunk: Record<string, unknown>,
  usage: Usage | undefined,
): Record<string, unknown> {
  return usage === undefined ? chunk : { ...chunk, usage: streamUsage(usage) };
}

/**
 * A Responses API `response` object; `c` undefined renders the in-progress
 * shell. vLLM reports "completed" even when max_output_tokens cut the text
 * (only its gpt-oss/Harmony path reports "incomplete").
 */
export function buildResponse(
  meta: StreamMeta,
  c: Completion | undefined,
): Record<string, unknown> {
  return {
    id: meta.id,
    object: "response",
    created_at: meta.created,
    model: meta.model,
    status: c === undefined ? "in_progress" : "completed",
    incomplete_details: null,
    output: c === undefined
      ? []
      : [buildOutputMessage(meta, c.tokens.join(""), "completed")],
    usage: c === undefined ? null : {
      input_tokens: c.usage.prompt_tokens,
      input_tokens_details: {
        cached_tokens: c.usage.prompt_tokens_details?.cached_tokens ?? 0,
      },
      output_tokens: c.usage.completion_tokens,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: c.usage.total_tokens,
    },
    kv_transfer_params: c === undefined ? null : c.kvTransferParams,
  };
}

/** The assistant message item of a Responses API output. */
export function buildOutputMessage(
  meta: StreamMeta,
  text: string,
  status: "in_progress" | "completed",
): Record<string, unknown> {
  return {
    type: "message",
    id: messageItemId(meta),
    role: "assistant",
    status,
    content: status === "in_progress" ? [] : [buildOutputText(text)],
  };
}

/** An `output_text` content part. */
export function buildOutputText(text: string): Record<string, unknown> {
  return { type: "output_text", text, annotations: [] };
}

/** Id of the single output message item (`msg_<base>`). */
export function messageItemId(meta: StreamMeta): string {
  return `msg_${meta.id.replace(/^resp_/, "")}`;
}
