/**
 * @module
 * Shared KV storage (llm-d `shared-storage`, vLLM's ExampleConnector and
 * LMCache-like backends): the prefiller writes the prompt's KV where the
 * decoder finds it by hashing the prompt (base spec §3.5, delta §3.3).
 *
 * Prefill first: the prefill with token limits of 1 and
 * `cache_hit_threshold: 0`, then the client's request with
 * `cache_hit_threshold: 0` to the decoder, so neither leg can decline.
 *
 * Decode first, when the client sent `cache_hit_threshold` (vLLM RFC #24256):
 * the client's request goes to the decoder as is; when it declines with
 * `finish_reason: "cache_threshold"` (its cache holds too little of the
 * prompt), the prefill-first flow runs and its decode answers the client.
 * Nothing of a declined answer reaches the client, and an accepted one is
 * relayed from its first byte, once.
 */

import type { Config } from "../config.ts";
import { ensureClientPresent } from "./_shared.ts";
import { errorMessage, ProxyError } from "../errors.ts";
import { fixedResponse } from "../fixed_response.ts";
import { buildDecodeBody, buildPrefillBody } from "../protocol/bodies.ts";
import { FIELD_CACHE_HIT_THRESHOLD, FIELD_STREAM } from "../protocol/fields.ts";
import { rawMember } from "../protocol/json_object.ts";
import { isJsonObject } from "../protocol/request.ts";
import {
  type AnswerVerdict,
  judgeAnswer,
  judgeSseEvent,
  splitSseEvents,
} from "../protocol/sse.ts";
import { runPrefill, sendDecode } from "./_shared.ts";
import { type ReadResult, resumeStream, withBody } from "./_stream.ts";
import type { Connector, PdContext } from "./types.ts";

/** The threshold that makes a leg proceed whatever its cache holds. */
const NO_THRESHOLD = { [FIELD_CACHE_HIT_THRESHOLD]: "0" };

/**
 * Bounds on the stream read before deciding: a decoder that declines says so
 * in its first events, so a stream still undecided after these is answering.
 */
const MAX_UNDECIDED_EVENTS = 16;
const MAX_UNDECIDED_BYTES = 64 * 1024;

async function prefillThenDecode(ctx: PdContext): Promise<Response> {
  await runPrefill(
    ctx,
    buildPrefillBody(ctx.request, {
      api: ctx.api,
      nonStreaming: true,
      extra: NO_THRESHOLD,
    }),
  );
  return await sendDecode(
    ctx,
    buildDecodeBody(ctx.request, { set: NO_THRESHOLD }),
  );
}

/** The decode-first answer, or undefined when the decoder declined. */
type FirstAnswer = Response | undefined;

function brokenDecode(ctx: PdContext, error: unknown): ProxyError {
  ensureClientPresent(ctx.signal);
  return new ProxyError(
    502,
    `Decode server "${ctx.decoder}" broke its answer before it could be judged: ${
      errorMessage(error)
    }`,
    { code: "decoder_broke", cause: error },
  );
}

/** Reads a whole (non-streaming) answer and judges it. */
async function judgeWhole(
  ctx: PdContext,
  decode: Response,
): Promise<FirstAnswer> {
  let text: string;
  try {
    text = await decode.text();
  } catch (error) {
    throw brokenDecode(ctx, error);
  }
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = undefined;
  }
  if (!isJsonObject(answer)) {
    throw new ProxyError(
      502,
      `Decode server "${ctx.decoder}" answered ${decode.status} without a JSON object body`,
      { code: "decoder_bad_answer" },
    );
  }
  return judgeAnswer(answer) === "threshold" ? undefined : fixedResponse(text, {
    status: decode.status,
    statusText: decode.statusText,
    headers: decode.headers,
  });
}

/**
 * Reads a stream's first events until one decides; the bytes read are kept
 * and relayed first when the decoder is answering.
 */
async function judgeStream(
  ctx: PdContext,
  decode: Response,
): Promise<FirstAnswer> {
  const reader = decode.body?.getReader();
  if (reader === undefined) return decode;
  const head: Promise<ReadResult>[] = [];
  const decoder = new TextDecoder();
  let text = "";
  let scanned = 0;
  let events = 0;
  let verdict: AnswerVerdict = "preamble";
  while (verdict === "preamble") {
    let result: ReadResult;
    try {
      result = await reader.read();
    } catch (error) {
      throw brokenDecode(ctx, error);
    }
    head.push(Promise.resolve(result));
    if (result.done) break;
    text += decoder.decode(result.value, { stream: true });
    const split = splitSseEvents(text, scanned);
    scanned = split.rest;
    for (const event of split.events) {
      verdict = judgeSseEvent(event);
      events++;
      if (verdict !== "preamble") break;
    }
    if (events >= MAX_UNDECIDED_EVENTS || text.length >= MAX_UNDECIDED_BYTES) {
      break;
    }
  }
  if (verdict === "threshold") {
    // The request is finished; what is left of the stream is its tail.
    await reader.cancel().catch(() => {});
    return undefined;
  }
  return withBody(decode, resumeStream(reader, head));
}

async function run(ctx: PdContext): Promise<Response> {
  ctx.log.debug("running Shared Storage protocol");
  if (rawMember(ctx.request.scanned, FIELD_CACHE_HIT_THRESHOLD) === undefined) {
    return await prefillThenDecode(ctx);
  }
  ctx.log.debug("cache_hit_threshold set: trying the decoder first");
  const decode = await sendDecode(ctx, ctx.request.text);
  if (decode.status < 200 || decode.status >= 300) return decode;
  const streaming = rawMember(ctx.request.scanned, FIELD_STREAM) === "true";
  const answer = streaming
    ? await judgeStream(ctx, decode)
    : await judgeWhole(ctx, decode);
  if (answer !== undefined) {
    ctx.log.debug("decoder answered from its cache: no prefill");
    return answer;
  }
  ctx.log.debug("decoder declined with cache_threshold: prefilling");
  ensureClientPresent(ctx.signal);
  return await prefillThenDecode(ctx);
}

/** Builds the `shared-storage` connector. */
export function createSharedStorage(_config: Config): Connector {
  return { name: "shared-storage", pullsKvSource: false, run };
}
