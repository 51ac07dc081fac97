/**
 * @module
 * A fixed-answer vLLM stand-in for the benchmark, run as its own process so
 * its work never shares an event loop with the sidecar or the load generator.
 * `--role prefill` answers every request with a precomputed completion that
 * carries `kv_transfer_params`; `--role decode` answers with a precomputed
 * completion, or, when the body asks for `"stream":true`, with SSE chunks
 * that each embed the wall-clock time they were handed to the socket
 * (`bench_sent_ms`), so a client can compute the delay every hop added.
 * The chunks of each stream come `--interval-ms` apart from its own start
 * (evenly spread over time when streams start spread out), or, with
 * `--step-ms`, all open streams get theirs in the same instant, as vLLM's
 * engine steps emit them (`step_scheduler.ts`). Prints `{"port":N}` on
 * stdout once listening.
 */

import { parseArgs } from "node:util";
import { createStepScheduler, type StepScheduler } from "./step_scheduler.ts";

/** Field of each streamed chunk holding its send time, in epoch milliseconds. */
export const SENT_AT_FIELD = "bench_sent_ms";

const JSON_HEADERS = { "content-type": "application/json" };
const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8" };
const STREAM_PATTERN = /"stream"\s*:\s*true/;

/** A vLLM-shaped prefill answer: one token, and the NIXL handle the decoder needs. */
export const PREFILL_ANSWER: string = JSON.stringify({
  id: "cmpl-bench-prefill",
  object: "chat.completion",
  created: 1750000000,
  model: "Qwen/Qwen3-0.6B",
  choices: [{
    index: 0,
    message: {
      role: "assistant",
      content: "The",
      reasoning_content: null,
      tool_calls: [],
    },
    logprobs: null,
    finish_reason: "length",
    stop_reason: null,
  }],
  usage: {
    prompt_tokens: 42,
    total_tokens: 43,
    completion_tokens: 1,
    prompt_tokens_details: null,
  },
  prompt_logprobs: null,
  kv_transfer_params: {
    do_remote_prefill: true,
    do_remote_decode: false,
    remote_block_ids: [1, 2, 3, 4, 5, 6],
    remote_engine_id: "5b1f6f7e-2c1d-4e0b-9d7a-0c3c6c1d2e3f",
    remote_request_id: "cmpl-bench-prefill-0",
    remote_host: "127.0.0.1",
    remote_port: 5557,
    tp_size: 1,
  },
});

/** A vLLM-shaped decode answer of a few tokens. */
export const DECODE_ANSWER: string = JSON.stringify({
  id: "cmpl-bench-decode",
  object: "chat.completion",
  created: 1750000000,
  model: "Qwen/Qwen3-0.6B",
  choices: [{
    index: 0,
    message: {
      role: "assistant",
      content: "The capital of France is Paris, a city on the Seine.",
      reasoning_content: null,
      tool_calls: [],
    },
    logprobs: null,
    finish_reason: "stop",
    stop_reason: null,
  }],
  usage: {
    prompt_tokens: 42,
    total_tokens: 55,
    completion_tokens: 13,
    prompt_tokens_details: null,
  },
  prompt_logprobs: null,
  kv_transfer_params: null,
});

/** Options of a timestamped stream. */
export interface StreamShape {
  /** Number of content chunks before `[DONE]`. */
  readonly chunks: number;
  /** Gap between chunks in milliseconds (the first comes at once). */
  readonly intervalMs: number;
  /** When above 0: every open stream gets its next chunk on one shared tick this many ms apart. */
  readonly stepMs?: number;
}

const encoder = new TextEncoder();
const DONE = encoder.encode("data: [DONE]\n\n");

function chunkText(index: number): string {
  const sent = performance.timeOrigin + performance.now();
  return `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1750000000,` +
    `"model":"Qwen/Qwen3-0.6B","choices":[{"index":0,"delta":{"content":" tok${index}"},` +
    `"logprobs":null,"finish_reason":null}],"${SENT_AT_FIELD}":${
      sent.toFixed(3)
    }}\n\n`;
}

/** An SSE body whose chunks are scheduled against the stream's start, so timer lateness never accumulates. */
export function createTimedStream(
  shape: StreamShape,
): ReadableStream<Uint8Array> {
  const start = performance.now();
  let index = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      const tick = (): void => {
        try {
          if (index === shape.chunks) {
            controller.enqueue(DONE);
            controller.close();
            return;
          }
          controller.enqueue(encoder.encode(chunkText(index)));
        } catch {
          return; // The reader went away.
        }
        index++;
        const due = start + index * shape.intervalMs;
        timer = setTimeout(tick, Math.max(0, due - performance.now()));
      };
      tick();
    },
    cancel() {
      clearTimeout(timer);
    },
  });
}

/**
 * An SSE body of `chunks` chunks written on `scheduler`'s ticks, the last
 * one followed by `[DONE]` in the same tick, as vLLM ends a stream.
 */
export function createStepStream(
  scheduler: StepScheduler,
  chunks: number,
): ReadableStream<Uint8Array> {
  let index = 0;
  let leave = (): void => {};
  return new ReadableStream<Uint8Array>({
    start(controller) {
      leave = scheduler.join({
        step() {
          controller.enqueue(encoder.encode(chunkText(index++)));
          if (index < chunks) return false;
          controller.enqueue(DONE);
          controller.close();
          return true;
        },
      });
    },
    cancel() {
      leave();
    },
  });
}

/** Creates the request handler of one role. */
export function createFastHandler(
  role: "prefill" | "decode",
  shape: StreamShape,
): (request: Request) => Promise<Response> {
  const answer = role === "prefill" ? PREFILL_ANSWER : DECODE_ANSWER;
  const scheduler = (shape.stepMs ?? 0) > 0
    ? createStepScheduler(shape.stepMs as number)
    : undefined;
  const stream = (): ReadableStream<Uint8Array> =>
    scheduler === undefined
      ? createTimedStream(shape)
      : createStepStream(scheduler, shape.chunks);
  return async function fastHandler(request) {
    // Read the body as a real server would; the decoder looks for "stream":true.
    const text = request.body === null ? "" : await request.text();
    if (role === "decode" && STREAM_PATTERN.test(text)) {
      return new Response(stream(), { headers: SSE_HEADERS });
    }
    return new Response(answer, { headers: JSON_HEADERS });
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      role: { type: "string", default: "decode" },
      port: { type: "string", default: "0" },
      chunks: { type: "string", default: "20" },
      "interval-ms": { type: "string", default: "50" },
      "step-ms": { type: "string", default: "0" },
    },
  });
  const role = values.role === "prefill" ? "prefill" : "decode";
  const shape = {
    chunks: Number(values.chunks),
    intervalMs: Number(values["interval-ms"]),
    stepMs: Number(values["step-ms"]),
  };
  Deno.serve({
    hostname: "127.0.0.1",
    port: Number(values.port),
    // vLLM's uvicorn listens with a queue of 2048; Deno's default of 511
    // dropped SYNs of the sidecar's upstream pools in the 2,000-connection burst.
    tcpBacklog: 2048,
    onListen({ port }) {
      Deno.stdout.writeSync(
        new TextEncoder().encode(`${JSON.stringify({ port })}\n`),
      );
    },
  }, createFastHandler(role, shape));
}
