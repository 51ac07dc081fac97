/**
 * The generation routes (`/v1/chat/completions`, `/v1/completions`,
 * `/v1/responses`): admission in vLLM's order, then a JSON or SSE answer.
 *
 * @module
 */

import {
  countFinished,
  type EngineContext,
  handOffKv,
  type Job,
  usageOf,
  waitFirstToken,
  waitNextToken,
} from "./engine.ts";
import {
  injectedError,
  internalServerError,
  jsonResponse,
  simulatedError,
  VllmError,
} from "./errors.ts";
import { pyRepr } from "./log.ts";
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
};

/** Serves one generation request; throws {@linkcode VllmError} for answers decided before any work. */
export async function handleGeneration(
  input: GenerationInput,
): Promise<Response> {
  const job = admit(input);
  const { record, engine, signal } = input;
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

/** Validation, failure injection and model check, in the order vLLM and llm-d-inference-sim apply them. */
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
  const natural = knobs.outputTokens;
  const count = Math.min(req.limit ?? natural, natural);
  return {
    req,
    role: input.record.role,
    record: input.record,
    meta: {
      id: ID_PREFIX[input.api] + requestIdBase(request.headers, req.body),
      created: Math.floor(Date.now() / 1000),
      model: knobs.model,
    },
    tokens: cannedTokens(count),
    finishReason: count < natural ? "length" : "stop",
    timing: {
      ttftMs: msHeader(request.headers, "x-mock-ttft-ms") ?? knobs.ttftMs,
      interTokenMs: msHeader(request.headers, "x-mock-inter-token-ms") ??
        knobs.interTokenMs,
      kvTransferMs: knobs.kvTransferMs,
    },
    breakAfter: breakAfterHeader(request.headers),
    signal: input.signal,
    engine,
  };
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
  const minTokens = Number.isInteger(req.body.min_tokens)
    ? req.body.min_tokens
    : 0;
  const extra = req.kvParams === undefined
    ? ""
    : `, extra_args={'kv_transfer_params': ${pyRepr(req.kvParams)}}`;
  engine.logger.write(
    "INFO",
    "logger.py:43",
    `Received request ${job.meta.id}: prompt: ${
      pyRepr(req.promptText.slice(0, 60))
    }, ` +
      `params: SamplingParams(n=1, max_tokens=${
        req.limit ?? MAX_MODEL_LEN - req.promptTokens
      }, min_tokens=${minTokens}${extra}), ` +
      `prompt_token_ids: None, lora_request: None.`,
  );
  if (job.role === "prefill" && req.stream) {
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
      throw internalServerError();
    }
    for (let i = 0; i < job.tokens.length; i++) await waitNextToken(job, i);
    const completion: Completion = {
      ...job.meta,
      tokens: job.tokens,
      finishReason: job.finishReason,
      usage: usageOf(job, job.tokens.length, first),
      kvTransferParams: job.role === "prefill" ? handOffKv(job) : null,
    };
    countFinished(job, job.finishReason, job.tokens.length);
    job.record.settle("completed");
    return jsonResponse(renderCompletion(job.req, completion));
  } catch (error) {
    // vLLM answers a vanished client with "Client disconnected"; nobody reads it.
    if (job.signal.aborted) {
      return jsonResponse({
        error: new VllmError(400, "Client disconnected").toInfo(),
      }, 400);
    }
    throw error;
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
  }
}

function streamResponse(job: Job, input: GenerationInput): Response {
  const progress: StreamProgress = { failed: false };
  const body = createEventStream(streamEvents(job, progress), {
    breakAfter: job.breakAfter,
    signal: input.signal,
    onCancel: input.abort,
    onEnd(state) {
      if (state === "completed") {
        if (progress.failed) countFinished(job, "error", 0);
        else countFinished(job, job.finishReason, job.tokens.length);
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
