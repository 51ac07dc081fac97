/**
 * Event producers for streaming responses, one per API, in vLLM's order
 * (vllm-wire.md §1.4): chat sends a role chunk, one content chunk per token
 * with `finish_reason` on the last, an optional usage chunk, then `[DONE]`;
 * completions skip the role chunk; the Responses API sends typed events; the
 * Messages API sends Anthropic's events; generate sends token-id chunks.
 *
 * @module
 */

import {
  type FinishReason,
  type FirstToken,
  type Job,
  usageOf,
  waitFirstToken,
  waitNextToken,
} from "./engine.ts";
import { buildGenerateChunk, buildGenerateUsageChunk } from "./generate_api.ts";
import {
  contentBlockDeltaEvent,
  contentBlockStartEvent,
  contentBlockStopEvent,
  messageDeltaEvent,
  messageErrorEvent,
  messageStartEvent,
  messageStopEvent,
} from "./messages_api.ts";
import {
  buildChatContentChunk,
  buildChatRoleChunk,
  buildOutputMessage,
  buildOutputText,
  buildResponse,
  buildTextCompletionChunk,
  buildUsageChunk,
  messageItemId,
  type Usage,
} from "./shapes.ts";
import { dataEvent, DONE_EVENT, namedEvent } from "./sse.ts";

/** What a producer reports back to its renderer. */
export interface StreamProgress {
  /** The first-token phase failed and an error frame was sent instead of tokens. */
  failed: boolean;
  /** How generation ended, once it did. */
  finished: { reason: FinishReason; tokens: number } | undefined;
}

/** A first-token phase that succeeded. */
type Started = Extract<FirstToken, { ok: true }>;

type ContentChunk = (
  token: string,
  finishReason: string | null,
  usage?: Usage,
) => Record<string, unknown>;

/** The producer for a job's API. */
export function streamEvents(
  job: Job,
  progress: StreamProgress,
): AsyncGenerator<string, void, void> {
  switch (job.req.api) {
    case "chat":
      return chatCompletionEvents(job, progress, true);
    case "completions":
      return chatCompletionEvents(job, progress, false);
    case "responses":
      return responsesEvents(job, progress);
    case "messages":
      return messagesEvents(job, progress);
    case "generate":
      return generateEvents(job, progress);
  }
}

/** The first-token phase, reported to `progress`. */
async function start(
  job: Job,
  progress: StreamProgress,
): Promise<FirstToken> {
  const first = await waitFirstToken(job);
  if (first.ok) {
    progress.finished = {
      reason: first.finishReason,
      tokens: first.tokens.length,
    };
  } else progress.failed = true;
  return first;
}

async function* chatCompletionEvents(
  job: Job,
  progress: StreamProgress,
  chat: boolean,
): AsyncGenerator<string, void, void> {
  const first = await start(job, progress);
  if (!first.ok) {
    // The 200 is already out, so the failure travels as one error frame, then [DONE].
    yield dataEvent({ error: first.error.toInfo() });
    yield DONE_EVENT;
    return;
  }
  if (chat) yield dataEvent(buildChatRoleChunk(job.meta));
  const build: ContentChunk = chat
    ? (token, finish, usage) =>
      buildChatContentChunk(job.meta, token, finish, usage)
    : (token, finish, usage) =>
      buildTextCompletionChunk(job.meta, token, finish, usage);
  yield* tokenEvents(job, first, build);
  if (job.req.includeUsage) {
    const object = chat ? "chat.completion.chunk" : "text_completion";
    yield dataEvent(
      buildUsageChunk(
        job.meta,
        object,
        usageOf(job, first.tokens.length, first),
      ),
    );
  }
  yield DONE_EVENT;
}

async function* tokenEvents(
  job: Job,
  first: Started,
  build: ContentChunk,
): AsyncGenerator<string, void, void> {
  const { tokens, finishReason } = first;
  if (tokens.length === 0) {
    // No tokens (cache_threshold): one empty chunk still carries the finish reason.
    yield dataEvent(build("", finishReason));
    return;
  }
  const last = tokens.length - 1;
  for (const [i, token] of tokens.entries()) {
    await waitNextToken(job, i);
    const usage = job.req.continuousUsage
      ? usageOf(job, i + 1, first)
      : undefined;
    yield dataEvent(build(token, i === last ? finishReason : null, usage));
  }
}

async function* messagesEvents(
  job: Job,
  progress: StreamProgress,
): AsyncGenerator<string, void, void> {
  const first = await start(job, progress);
  if (!first.ok) {
    yield messageErrorEvent(first.error.message);
    return;
  }
  yield messageStartEvent(job.meta, job.req.promptTokens);
  for (const [i, token] of first.tokens.entries()) {
    await waitNextToken(job, i);
    if (i === 0) yield contentBlockStartEvent();
    yield contentBlockDeltaEvent(token);
  }
  if (first.tokens.length > 0) yield contentBlockStopEvent();
  yield messageDeltaEvent(first.finishReason, {
    promptTokens: job.req.promptTokens,
    completionTokens: first.tokens.length,
  });
  yield messageStopEvent();
}

async function* generateEvents(
  job: Job,
  progress: StreamProgress,
): AsyncGenerator<string, void, void> {
  const first = await start(job, progress);
  if (!first.ok) {
    yield dataEvent({ error: first.error.toInfo() });
    yield DONE_EVENT;
    return;
  }
  const { tokens, finishReason } = first;
  if (tokens.length === 0) {
    yield dataEvent(buildGenerateChunk(job.meta, [], finishReason));
  }
  for (const [i, token] of tokens.entries()) {
    await waitNextToken(job, i);
    const finish = i === tokens.length - 1 ? finishReason : null;
    yield dataEvent(buildGenerateChunk(job.meta, [token], finish));
  }
  if (job.req.includeUsage) {
    yield dataEvent(
      buildGenerateUsageChunk(job.meta, usageOf(job, tokens.length, first)),
    );
  }
  yield DONE_EVENT;
}

async function* responsesEvents(
  job: Job,
  progress: StreamProgress,
): AsyncGenerator<string, void, void> {
  const { meta } = job;
  let sequence = 0;
  const event = (type: string, fields: Record<string, unknown>) =>
    namedEvent(type, { type, sequence_number: sequence++, ...fields });
  yield event("response.created", { response: buildResponse(meta, undefined) });
  yield event("response.in_progress", {
    response: buildResponse(meta, undefined),
  });
  const first = await start(job, progress);
  if (!first.ok) {
    const { message, type, param, code } = first.error.toInfo();
    yield event("error", { code, message, param, error_type: type });
    return;
  }
  const item = {
    "item_id": messageItemId(meta),
    "output_index": 0,
    "content_index": 0,
  };
  yield event("response.output_item.added", {
    "output_index": 0,
    item: buildOutputMessage(meta, "", "in_progress"),
  });
  yield event("response.content_part.added", {
    ...item,
    part: buildOutputText(""),
  });
  for (const [i, token] of first.tokens.entries()) {
    await waitNextToken(job, i);
    yield event("response.output_text.delta", {
      ...item,
      delta: token,
      logprobs: [],
    });
  }
  const text = first.tokens.join("");
  yield event("response.output_text.done", { ...item, text, logprobs: [] });
  yield event("response.content_part.done", {
    ...item,
    part: buildOutputText(text),
  });
  yield event("response.output_item.done", {
    output_index: 0,
    item: buildOutputMessage(meta, text, "completed"),
  });
  const completion = {
    ...meta,
    tokens: first.tokens,
    finishReason: first.finishReason,
    usage: usageOf(job, first.tokens.length, first),
    kvTransferParams: null,
  };
  yield event("response.completed", {
    response: buildResponse(meta, completion),
  });
}
