/**
 * The generation routes (`/v1/chat/completions`, `/v1/completions`,
 * `/v1/responses`, `/v1/messages`, `/inference/v1/generate`): admission in
 * vLLM's order, then a JSON or SSE answer.
 *
 * @module
 */

import {
  countFinished,
  type EngineContext,
  handOffOf,
  type Job,
  usageOf,
  waitFirstToken,
  waitNextToken,
} from "./engine.ts";
import {
  errorResponse,
  injectedError,
  jsonResponse,
  simulatedError,
  VllmError,
} from "./errors.ts";
import { continuationOffset } from "./continuation.ts";
import { missingEncoderOutput } from "./ec_connector.ts";
import {
  buildQueuedResponse,
  checkBackground,
  checkPreviousResponse,
  isBackground,
  isStored,
} from "./responses_store.ts";
import { buildGenerateResponse } from "./generate_api.ts";
import { DATA_PARALLEL_RANK_HEADER } from "./kv_wire.ts";
import { pyRepr } from "./log.ts";
import { buildMessagesError, buildMessagesResponse } from "./messages_api.ts";
import {
  type ApiKind,
  checkContentType,
  checkModel,
  type GenerationRequest,
  type ParsedBody,
  parseGenerationRequest,
  requestIdBase,
} from "./parse_request.ts";
import type { Recording } from "./recorder.ts";
import {
  buildChatCompletion,
  buildResponse,
  buildTextCompletion,
  type Completion,
} from "./shapes.ts";
import { createEventStream, SSE_CONTENT_TYPE } from "./sse.ts";
import { streamEvents, type StreamProgress } from "./stream_events.ts";
import { cannedTokens, MAX_MODEL_LEN } from "./tokens.ts";

/** Everything one generation request needs. */
export interface GenerationInput {
  readonly api: ApiKind;
  readonly request: Request;
  readonly record: Recording;
  readonly parsed: ParsedBody;
  readonly engine: EngineContext;
  /** Aborts on client disconnect or `close()`. */
  readonly signal: AbortSignal;
  /** Aborts `signal` (the body stream calls it when the client goes away). */
  readonly abort: () => void;
}

const ID_PREFIX: Readonly<Record<ApiKind, string>> = {
  chat: "chatcmpl-",
  completions: "cmpl-",
  responses: "resp_",
  // vLLM's Messages API answers with the id of the chat completion it ran.
  messages: "chatcmpl-",
  generate: "generate-tokens-",
};

/** Serves one generation request; throws {@linkcode VllmError} for answers decided before any work. */
export async function handleGeneration(
  input: GenerationInput,
): Promise<Response> {
  try {
    return await generate(input);
  } catch (error) {
    // vLLM's Messages router translates serving errors to Anthropic's shape; request validation keeps vLLM's.
    if (
      input.api === "messages" && error instanceof VllmError &&
      error.type !== "Bad Request"
    ) {
      return jsonResponse(buildMessagesError(error.toInfo()), error.status);
    }
    throw error;
  }
}

async function generate(input: GenerationInput): Promise<Response> {
  const job = admit(input);
  const { record, engine, signal } = input;
  if (job.req.api === "responses" && isBackground(job.req.body)) {
    // vLLM answers at once and runs the request where it was sent; the mock
    // only keeps the id, which is all a later `previous_response_id` needs.
    engine.responses.ids.add(job.meta.id);
    record.settle("completed");
    return jsonResponse(buildQueuedResponse(job.meta));
  }
  engine.metrics.running++;
  void record.finished.then(() => engine.metrics.running--);
  const onAbort = () => {
    if (!record.settle("aborted")) return;
    engine.metrics.aborted++;
    engine.metrics.success.abort++;
    engine.logger.write(
      "INFO",
      "async_llm.py:577",
      `Aborted request ${job.meta.id}.`,
    );
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  logReceived(job);
  return job.req.stream ? streamResponse(job, input) : await jsonAnswer(job);
}

/** Validation, failure injection, model and rank checks, then the connector's own, in the order vLLM and llm-d-inference-sim apply them. */
function admit(input: GenerationInput): Job {
  const { request, engine } = input;
  const returnError = request.headers.get("x-return-error");
  if (returnError !== null) throw simulatedError(returnError);
  checkContentType(request.headers.get("content-type"));
  const req = parseGenerationRequest(input.api, input.parsed);
  const { knobs } = engine;
  if (knobs.failureRate > 0 && Math.random() < knobs.failureRate) {
    throw injectedError(knobs.failureStatus);
  }
  checkModel(req.body, knobs.model);
  if (req.api === "responses") {
    checkBackground(req.body);
    checkPreviousResponse(engine.responses, req.body);
  }
  const ec = engine.ec?.handle(req.body);
  if (ec?.record !== undefined) {
    input.record.ecTransfer = ec.record;
    if (ec.record.missing.length > 0) throw missingEncoderOutput(ec.record);
  }
  // A continued reply has only what is left of the canned one to say.
  const offset = req.api === "chat"
    ? continuationOffset(req.body, knobs.outputTokens)
    : 0;
  const natural = knobs.outputTokens - offset;
  const count = Math.min(req.limit ?? natural, natural);
  const job: Job = {
    req,
    role: input.record.role,
    record: input.record,
    meta: {
      id: ID_PREFIX[input.api] + requestIdBase(request.headers, req.body),
      created: Math.floor(Date.now() / 1000),
      model: knobs.model,
    },
    tokens: cannedTokens(offset + count).slice(offset),
    finishReason: count < natural ? "length" : "stop",
    timing: {
      ttftMs: msHeader(request.headers, "x-mock-ttft-ms") ?? knobs.ttftMs,
      interTokenMs: msHeader(request.headers, "x-mock-inter-token-ms") ??
        knobs.interTokenMs,
      kvTransferMs: knobs.kvTransferMs,
    },
    dpRank: dataParallelRank(request.headers, engine.dataParallelSize),
    forceCacheThreshold:
      request.headers.get("x-cache-threshold-finish-reason")?.trim()
        .toLowerCase() === "true",
    breakAfter: breakAfterHeader(request.headers),
    ecTransferParams: ec?.params,
    signal: input.signal,
    engine,
  };
  engine.connector.admit(job);
  return job;
}

/** vLLM's `X-data-parallel-rank`: an integer rank of this engine, or absent. */
function dataParallelRank(headers: Headers, size: number): number | undefined {
  const value = headers.get(DATA_PARALLEL_RANK_HEADER);
  if (value === null) return undefined;
  if (!/^\s*\d+\s*$/.test(value)) {
    throw new VllmError(
      400,
      `Invalid X-data-parallel-rank header value ${
        JSON.stringify(value)
      }: expected an integer`,
    );
  }
  const rank = Number(value);
  if (rank >= size) {
    throw new VllmError(
      400,
      `data_parallel_rank ${rank} is out of range [0, ${size}).`,
    );
  }
  return rank;
}

/** A test-only latency override header; invalid values are a 400 so typos do not pass silently. */
function msHeader(headers: Headers, name: string): number | undefined {
  const value = headers.get(name);
  if (value === null) return undefined;
  const ms = Number(value);
  if (value.trim() === "" || !Number.isFinite(ms) || ms < 0) {
    throw new VllmError(
      400,
      `Invalid ${name} header ${
        JSON.stringify(value)
      }: expected milliseconds >= 0`,
    );
  }
  return ms;
}

function breakAfterHeader(headers: Headers): number | undefined {
  const value = headers.get("x-mock-break-after");
  if (value === null) return undefined;
  if (!/^\s*\d+\s*$/.test(value)) {
    throw new VllmError(
      400,
      `Invalid x-mock-break-after header ${
        JSON.stringify(value)
      }: expected an event count`,
    );
  }
  return Number(value);
}

function logReceived(job: Job): void {
  const { req, engine } = job;
  const extra = req.kvParams === undefined
    ? ""
    : `, extra_args={'kv_transfer_params': ${pyRepr(req.kvParams)}}`;
  const prompt = req.api === "generate"
    ? `prompt_token_ids: ${pyRepr(req.body.token_ids)}`
    : `prompt: ${pyRepr(req.promptText.slice(0, 60))}`;
  engine.logger.write(
    "INFO",
    "logger.py:43",
    `Received request ${job.meta.id}: ${prompt}, ` +
      `params: SamplingParams(n=1, max_tokens=${
        req.limit ?? MAX_MODEL_LEN - req.promptTokens
      }, min_tokens=${req.minTokens}${extra}), ` +
      `prompt_token_ids: None, lora_request: None.`,
  );
  const nixl = engine.connector.name === "nixlv2" ||
    engine.connector.name === "nixl";
  if (nixl && job.role === "prefill" && req.stream) {
    engine.logger.write(
      "WARNING",
      "serving_chat.py:312",
      `Request ${job.meta.id} asks for remote decode (do_remote_decode) with stream=true; ` +
        `streaming it normally, without kv_transfer_params.`,
    );
  }
}

async function jsonAnswer(job: Job): Promise<Response> {
  try {
    const first = await waitFirstToken(job);
    if (!first.ok) {
      countFinished(job, "error", 0);
      throw first.error;
    }
    for (let i = 0; i < first.tokens.length; i++) await waitNextToken(job, i);
    const handOff = handOffOf(job, first.finishReason);
    const completion: Completion = {
      ...job.meta,
      tokens: first.tokens,
      finishReason: first.finishReason,
      usage: usageOf(job, first.tokens.length, first),
      kvTransferParams: handOff.kvTransferParams,
    };
    countFinished(job, first.finishReason, first.tokens.length);
    storeResponse(job);
    job.record.settle("completed");
    return jsonResponse({
      ...renderCompletion(job.req, completion),
      ...handOff.topLevel,
      ...(job.ecTransferParams === undefined
        ? {}
        : { ec_transfer_params: job.ecTransferParams }),
    });
  } catch (error) {
    // vLLM answers a vanished client with "Client disconnected"; nobody reads it.
    if (job.signal.aborted) {
      return errorResponse(new VllmError(400, "Client disconnected"));
    }
    throw error;
  }
}

/** Keeps a finished response's id, as vLLM's response store does with `store` on. */
function storeResponse(job: Job): void {
  if (job.req.api === "responses" && isStored(job.req.body)) {
    job.engine.responses.ids.add(job.meta.id);
  }
}

function renderCompletion(
  req: GenerationRequest,
  completion: Completion,
): Record<string, unknown> {
  switch (req.api) {
    case "chat":
      return buildChatCompletion(completion);
    case "completions":
      return buildTextCompletion(completion);
    case "responses":
      return buildResponse(completion, completion);
    case "messages":
      return buildMessagesResponse(completion);
    case "generate":
      return buildGenerateResponse(completion);
  }
}

function streamResponse(job: Job, input: GenerationInput): Response {
  const progress: StreamProgress = { failed: false, finished: undefined };
  const body = createEventStream(streamEvents(job, progress), {
    breakAfter: job.breakAfter,
    signal: input.signal,
    onCancel: input.abort,
    onEnd(state) {
      if (state === "completed") {
        const { finished } = progress;
        if (progress.failed || finished === undefined) {
          countFinished(job, "error", 0);
        } else {
          countFinished(job, finished.reason, finished.tokens);
          storeResponse(job);
        }
        job.record.settle("completed");
      } else if (state === "failed") {
        job.record.settle("failed");
      }
    },
  });
  return new Response(body, {
    status: 200,
    headers: { "content-type": SSE_CONTENT_TYPE },
  });
}
