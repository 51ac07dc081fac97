/**
 * Event producers for streaming responses, one per API, in vLLM's order
 * (vllm-wire.md §1.4): chat sends a role chunk, one content chunk per token
 * with `finish_reason` on the last, an optional usage chunk, then `[DONE]`;
 * completions skip the role chunk; the Responses API sends typed events.
 *
 * @module
 */

import {
  type FirstToken,
  type Job,
  usageOf,
  waitFirstToken,
  waitNextToken,
} from "./engine.ts";
import { internalServerError } from "./errors.ts";
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
  /** The KV load failed under policy "fail" and an error frame was sent instead of tokens. */
  failed: boolean;
}

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
  }
}

async function* chatCompletionEvents(
  job: Job,
  progress: StreamProgress,
  chat: boolean,
): AsyncGenerator<string, void, void> {
  const first = await waitFirstToken(job);
  if (!first.ok) {
    progress.failed = true;
    // The 200 is already out, so the failure travels as one error frame, then [DONE].
    yield dataEvent({ error: internalServerError().toInfo() });
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
      buildUsageChunk(job.meta, object, usageOf(job, job.tokens.length, first)),
    );
  }
  yield DONE_EVENT;
}

async function* tokenEvents(
  job: Job,
  first: FirstToken,
  build: ContentChunk,
): AsyncGenerator<string, void, void> {
  const last = job.tokens.length - 1;
  for (const [i, token] of job.tokens.entries()) {
    await waitNextToken(job, i);
    const usage = job.req.continuousUsage
      ? usageOf(job, i + 1, first)
      : undefined;
    yield dataEvent(build(token, i === last ? job.finishReason : null, usage));
  }
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
  const first = await waitFirstToken(job);
  if (!first.ok) {
    progress.failed = true;
    const { message, type, param, code } = internalServerError().toInfo();
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
  for (const [i, token] of job.tokens.entries()) {
    await waitNextToken(job, i);
    yield event("response.output_text.delta", {
      ...item,
      delta: token,
      logprobs: [],
    });
  }
  const text = job.tokens.join("");
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
    tokens: job.tokens,
    finishReason: job.finishReason,
    usage: usageOf(job, job.tokens.length, first),
    kvTransferParams: null,
  };
  yield event("response.completed", {
    response: buildResponse(meta, completion),
  });
}
