/**
 * @module
 * Chunked decode (`-decode-chunk-size=C`, base §3.8, delta §3.9): a chat
 * decode runs as a series of non-streaming requests of at most C tokens
 * each, every one after the first continuing the assistant message the
 * earlier ones wrote (`continue_final_message`), until the model stops or
 * the client's token budget is spent. The client sees one answer: one JSON
 * completion, or one `chat.completion.chunk` stream with an event per chunk.
 *
 * Unlike the Go sidecar, the continuation is one assistant message holding
 * all text so far (not one message per chunk), stream events are shaped as
 * vLLM's (`chat.completion.chunk`, role on the first event only,
 * `finish_reason` only on the last), usage is streamed only when asked for,
 * and the status is decided by the first chunk before anything is sent.
 */

import { buildErrorBody, ProxyError } from "../errors.ts";
import { fixedResponse } from "../fixed_response.ts";
import type { Logger } from "../log.ts";
import {
  FIELD_ADD_GENERATION_PROMPT,
  FIELD_CONTINUE_FINAL_MESSAGE,
  FIELD_KV_TRANSFER_PARAMS,
  FIELD_MAX_COMPLETION_TOKENS,
  FIELD_MAX_TOKENS,
  FIELD_MESSAGES,
  FIELD_MIN_TOKENS,
  FIELD_N,
  FIELD_STREAM,
  FIELD_STREAM_OPTIONS,
} from "../protocol/fields.ts";
import { editObject, type ScannedObject } from "../protocol/json_object.ts";
import { isJsonObject, type JsonObject } from "../protocol/request.ts";
import type { UpstreamClient, WholeResponse } from "../upstream/client.ts";
import { buildClientHeaders, type HeaderList } from "../upstream/headers.ts";
import { decoderFailure } from "../upstream/relay.ts";

/** What one chunked decode needs. */
export interface ChunkedDecodeContext {
  /** Tokens per chunk, > 0. */
  readonly chunkSize: number;
  /** The decode body: a validated JSON object, scanned. */
  readonly body: ScannedObject;
  /** The local decoder, `host:port`. */
  readonly decoder: string;
  readonly pathAndQuery: string;
  readonly headers: HeaderList;
  /** Fires when the client disconnects. */
  readonly signal: AbortSignal;
  readonly upstream: UpstreamClient;
  readonly log: Logger;
}

/** What the client's request asks of the decode, read once. */
interface DecodeAsk {
  /** Token budget; undefined means until the model stops. */
  readonly budget: number | undefined;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly minTokens: number;
  readonly messages: readonly unknown[];
  /** Text of a final assistant message the client asked to continue. */
  readonly prefix: string | undefined;
  /** Choices other than one would be dropped by the reassembly. */
  readonly singleChoice: boolean;
  /**
   * Whether every token bound the chunks replace is absent, null or an
   * integer in range (`max_tokens`, `max_completion_tokens` from 1,
   * `min_tokens` from 0). Any other value is vLLM's to judge: chunks would
   * overwrite it with valid limits, so `"max_tokens": "abc"` or `0` bought
   * an unbounded decode instead of vLLM's 400.
   */
  readonly limitsReadable: boolean;
}

/** One chunk's answer, read. */
interface ChunkAnswer {
  readonly json: JsonObject;
  readonly reply: WholeResponse;
  readonly text: string;
  readonly tokens: number;
  readonly finishReason: unknown;
}

/** The running result of the chunks so far. */
interface DecodeState {
  readonly first: ChunkAnswer;
  last: ChunkAnswer;
  text: string;
  tokens: number;
  chunks: number;
  done: boolean;
}

function positiveInteger(value: unknown): number | undefined {
  if (typeof value !== "number" || !Number.isFinite(value)) return undefined;
  const whole = Math.trunc(value);
  return whole > 0 ? whole : undefined;
}

/** Whether `value` is a token bound chunks may replace: absent, null or an integer of at least `least`. */
function isReadableLimit(value: unknown, least: number): boolean {
  return value === undefined || value === null ||
    (Number.isSafeInteger(value) && (value as number) >= least);
}

function readAsk(request: JsonObject): DecodeAsk {
  const budget = positiveInteger(request[FIELD_MAX_COMPLETION_TOKENS]) ??
    positiveInteger(request[FIELD_MAX_TOKENS]);
  const minTokens = positiveInteger(request[FIELD_MIN_TOKENS]) ?? 0;
  const options = request[FIELD_STREAM_OPTIONS];
  const messages = Array.isArray(request[FIELD_MESSAGES])
    ? request[FIELD_MESSAGES] as unknown[]
    : [];
  const last = messages.at(-1);
  const continues = request[FIELD_CONTINUE_FINAL_MESSAGE] === true &&
    isJsonObject(last) && last.role === "assistant" &&
    typeof last.content === "string";
  return {
    budget,
    stream: request[FIELD_STREAM] === true,
    // vLLM: include_usage defaults to true once stream_options is given.
    includeUsage: isJsonObject(options) && options.include_usage !== false,
    minTokens,
    messages: continues ? messages.slice(0, -1) : messages,
    prefix: continues ? last.content as string : undefined,
    singleChoice: (positiveInteger(request[FIELD_N]) ?? 1) === 1,
    limitsReadable: isReadableLimit(request[FIELD_MAX_TOKENS], 1) &&
      isReadableLimit(request[FIELD_MAX_COMPLETION_TOKENS], 1) &&
      isReadableLimit(request[FIELD_MIN_TOKENS], 0) &&
      // vLLM refuses min_tokens above max_tokens; chunks would hide it.
      (budget === undefined || minTokens <= budget),
  };
}

/**
 * Whether the decode needs chunks at all: a budget within one chunk, several
 * choices, or token bounds vLLM must judge first, do not.
 */
export function needsChunking(request: JsonObject, chunkSize: number): boolean {
  const ask = readAsk(request);
  return ask.singleChoice && ask.limitsReadable &&
    (ask.budget === undefined || ask.budget > chunkSize);
}

/** Body of chunk `index`: the client's, limited to `limit` tokens, continuing the text so far. */
function buildChunkBody(
  ctx: ChunkedDecodeContext,
  ask: DecodeAsk,
  chunk: { readonly index: number; readonly limit: number; text: string },
  produced: number,
): string {
  const limit = String(chunk.limit);
  const set: Record<string, string> = {
    [FIELD_MAX_TOKENS]: limit,
    [FIELD_MAX_COMPLETION_TOKENS]: limit,
    [FIELD_STREAM]: "false",
  };
  const remove = [FIELD_STREAM_OPTIONS];
  if (ask.minTokens > 0) {
    // vLLM refuses min_tokens above max_tokens; each chunk owes what is left.
    set[FIELD_MIN_TOKENS] = String(
      Math.min(Math.max(ask.minTokens - produced, 0), chunk.limit),
    );
  }
  const content = (ask.prefix ?? "") + chunk.text;
  if (chunk.index > 0 || ask.prefix !== undefined) {
    // The KV handed over by a prefill served the first chunk only.
    if (chunk.index > 0) remove.push(FIELD_KV_TRANSFER_PARAMS);
    set[FIELD_MESSAGES] = JSON.stringify([
      ...ask.messages,
      { role: "assistant", content },
    ]);
    set[FIELD_CONTINUE_FINAL_MESSAGE] = "true";
    set[FIELD_ADD_GENERATION_PROMPT] = "false";
  }
  return editObject(ctx.body, { set, remove });
}

/** Sends one chunk; a decoder error answer is returned as a `Response` to relay. */
async function sendChunk(
  ctx: ChunkedDecodeContext,
  body: string,
  signal: AbortSignal,
): Promise<ChunkAnswer | Response> {
  let reply: WholeResponse;
  try {
    reply = await ctx.upstream.sendAndRead(
      ctx.upstream.url(ctx.decoder, ctx.pathAndQuery),
      { method: "POST", headers: ctx.headers, body, signal },
    );
  } catch (error) {
    throw decoderFailure(ctx.decoder, error);
  }
  if (reply.status < 200 || reply.status >= 300) {
    return fixedResponse(reply.text, {
      status: reply.status,
      headers: buildClientHeaders(reply.headers),
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(reply.text);
  } catch {
    json = undefined;
  }
  if (!isJsonObject(json)) {
    throw new ProxyError(
      502,
      `Decode server "${ctx.decoder}" answered a chunk without a JSON object body`,
      { code: "decoder_bad_answer" },
    );
  }
  const choices = Array.isArray(json.choices) ? json.choices : [];
  const choice: unknown = choices[0];
  const message = isJsonObject(choice) ? choice.message : undefined;
  const content = isJsonObject(message) ? message.content : undefined;
  const usage = json.usage;
  const tokens = isJsonObject(usage) ? usage.completion_tokens : undefined;
  return {
    json,
    reply,
    text: typeof content === "string" ? content : "",
    tokens: typeof tokens === "number" ? tokens : 0,
    finishReason: isJsonObject(choice) ? choice.finish_reason ?? null : null,
  };
}

/** Whether the decode ends after `answer`; `remaining` is the budget left after it. */
function isLastChunk(
  log: Logger,
  answer: ChunkAnswer,
  remaining: number | undefined,
): boolean {
  const reason = answer.finishReason;
  if (typeof reason === "string" && reason !== "" && reason !== "length") {
    return true;
  }
  if (remaining !== undefined && remaining <= 0) return true;
  // A chunk that counts no tokens (or fewer) moves no budget: asking again
  // could go on for ever, the text growing with each answer.
  if (answer.tokens <= 0) {
    log.info(
      answer.text === ""
        ? "chunked decode stopped: a chunk produced nothing"
        : "chunked decode stopped: a chunk reported no completion tokens",
    );
    return true;
  }
  return false;
}

/** The client's usage: the first chunk's prompt, every chunk's completion. */
function buildUsage(state: DecodeState): JsonObject {
  const usage = state.first.json.usage;
  const prompt = isJsonObject(usage) && typeof usage.prompt_tokens === "number"
    ? usage.prompt_tokens
    : 0;
  const details = isJsonObject(usage) ? usage.prompt_tokens_details : undefined;
  return {
    prompt_tokens: prompt,
    total_tokens: prompt + state.tokens,
    completion_tokens: state.tokens,
    ...(isJsonObject(details) ? { prompt_tokens_details: details } : {}),
  };
}

/** A runner of the chunks after the first, for one request. */
interface ChunkLoop {
  readonly ask: DecodeAsk;
  readonly state: DecodeState;
  /** Runs the next chunk; a `Response` is the decoder's error answer. */
  next(signal: AbortSignal): Promise<ChunkAnswer | Response>;
}

/**
 * Runs the chunks of a chat decode and returns the client's answer. The
 * first chunk runs before anything is returned, so its failure is the
 * client's status; a later failure ends a stream with vLLM's error event.
 */
export async function runChunkedDecode(
  ctx: ChunkedDecodeContext,
  request: JsonObject,
): Promise<Response> {
  const ask = readAsk(request);
  ctx.log.debug("running chunked decode", {
    chunk_size: ctx.chunkSize,
    budget: ask.budget ?? null,
    stream: ask.stream,
  });
  const chunk = (index: number, text: string, produced: number) => {
    const left = ask.budget === undefined ? undefined : ask.budget - produced;
    const limit = Math.min(ctx.chunkSize, left ?? ctx.chunkSize);
    return buildChunkBody(ctx, ask, { index, limit, text }, produced);
  };
  const first = await sendChunk(ctx, chunk(0, "", 0), ctx.signal);
  if (first instanceof Response) return first;
  const state: DecodeState = {
    first,
    last: first,
    text: first.text,
    tokens: first.tokens,
    chunks: 1,
    done: false,
  };
  const remainingAfter = () =>
    ask.budget === undefined ? undefined : ask.budget - state.tokens;
  state.done = isLastChunk(ctx.log, first, remainingAfter());
  const loop: ChunkLoop = {
    ask,
    state,
    async next(signal) {
      const answer = await sendChunk(
        ctx,
        chunk(state.chunks, state.text, state.tokens),
        signal,
      );
      if (answer instanceof Response) return answer;
      state.last = answer;
      state.text += answer.text;
      state.tokens += answer.tokens;
      state.chunks++;
      state.done = isLastChunk(ctx.log, answer, remainingAfter());
      ctx.log.debug("decode chunk done", {
        chunk: state.chunks - 1,
        tokens: state.tokens,
      });
      return answer;
    },
  };
  return ask.stream ? streamChunks(ctx, loop) : await collectChunks(ctx, loop);
}

/** Non-streaming: runs every chunk and answers one completion with all the text. */
async function collectChunks(
  ctx: ChunkedDecodeContext,
  loop: ChunkLoop,
): Promise<Response> {
  const { state } = loop;
  while (!state.done) {
    if (ctx.signal.aborted) {
      throw new ProxyError(499, "Client disconnected during chunked decode");
    }
    const answer = await loop.next(ctx.signal);
    if (answer instanceof Response) return answer;
  }
  const { json } = state.last;
  const choices = Array.isArray(json.choices) ? json.choices : [];
  const choice = isJsonObject(choices[0]) ? choices[0] : {};
  const message = isJsonObject(choice.message) ? choice.message : {};
  const body = {
    ...json,
    id: state.first.json.id,
    created: state.first.json.created,
    choices: [{ ...choice, message: { ...message, content: state.text } }],
    usage: buildUsage(state),
  };
  const headers = buildClientHeaders(state.first.reply.headers);
  return fixedResponse(JSON.stringify(body), {
    status: 200,
    headers: withJsonType(headers, "application/json"),
  });
}

function withJsonType(headers: HeaderList, type: string): HeaderList {
  const kept = headers.filter(([name]) =>
    name !== "content-type" && name !== "content-length" &&
    name !== "content-encoding"
  );
  kept.push(["content-type", type]);
  return kept;
}

const encoder = new TextEncoder();

function sseEvent(data: unknown): Uint8Array {
  return encoder.encode(`data: ${JSON.stringify(data)}\n\n`);
}

/** One `chat.completion.chunk` event for a chunk's text. */
function chunkEvent(state: DecodeState, answer: ChunkAnswer): JsonObject {
  const { id, created, model } = state.first.json;
  const delta = answer === state.first
    ? { role: "assistant", content: answer.text }
    : { content: answer.text };
  return {
    id,
    object: "chat.completion.chunk",
    created,
    model,
    choices: [{
      index: 0,
      delta,
      logprobs: null,
      finish_reason: state.done ? answer.finishReason : null,
    }],
  };
}

/** The error event of a chunk that failed mid-stream, vLLM's shape. */
function errorEvent(failure: Response, text: string): JsonObject {
  try {
    const body: unknown = JSON.parse(text);
    if (isJsonObject(body) && isJsonObject(body.error)) {
      return { error: body.error };
    }
  } catch {
    // Not JSON: described below.
  }
  return buildErrorBody(
    new ProxyError(
      502,
      `Decode chunk failed with status ${failure.status}: ${
        text.trim().slice(0, 200)
      }`,
    ),
  );
}

/** Streaming: an event per chunk as it completes, then usage if asked for, then `[DONE]`. */
function streamChunks(ctx: ChunkedDecodeContext, loop: ChunkLoop): Response {
  const { state, ask } = loop;
  const cancel = new AbortController();
  const signal = AbortSignal.any([ctx.signal, cancel.signal]);
  let pending: ChunkAnswer | undefined = state.first;
  function end(
    controller: ReadableStreamDefaultController<Uint8Array>,
    error?: JsonObject,
  ): void {
    if (error !== undefined) controller.enqueue(sseEvent(error));
    else if (ask.includeUsage) {
      const { id, created, model } = state.first.json;
      controller.enqueue(sseEvent({
        id,
        object: "chat.completion.chunk",
        created,
        model,
        choices: [],
        usage: buildUsage(state),
      }));
    }
    controller.enqueue(encoder.encode("data: [DONE]\n\n"));
    controller.close();
  }
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let answer = pending;
      pending = undefined;
      if (answer === undefined) {
        try {
          const next = await loop.next(signal);
          if (next instanceof Response) {
            return end(controller, errorEvent(next, await next.text()));
          }
          answer = next;
        } catch (error) {
          if (signal.aborted) return controller.error(error);
          return end(controller, thrownEvent(error));
        }
      }
      controller.enqueue(sseEvent(chunkEvent(state, answer)));
      if (state.done) end(controller);
    },
    cancel() {
      cancel.abort();
    },
  });
  const headers = withJsonType(
    buildClientHeaders(state.first.reply.headers),
    "text/event-stream; charset=utf-8",
  );
  headers.push(["cache-control", "no-cache"]);
  return new Response(body, { status: 200, headers });
}

/** The error event of a chunk whose request failed mid-stream. */
function thrownEvent(error: unknown): JsonObject {
  return buildErrorBody(
    error instanceof ProxyError ? error : new ProxyError(500, String(error)),
  );
}
