/**
 * The simulated engine: what happens between a validated request and its
 * tokens. Time to first token (or the KV transfer that replaces it), the
 * `cache_hit_threshold` check, inter-token gaps, and the points where the
 * KV connector loads, publishes and hands off KV. Shared by the JSON and the
 * streaming renderers so both time and account a request the same way.
 *
 * @module
 */

import { delay } from "./delay.ts";
import type { VllmError } from "./errors.ts";
import type { Knobs } from "./knobs.ts";
import type { EcEngine } from "./ec_connector.ts";
import type { HandOff, KvConnector } from "./kv_connector.ts";
import type { MockLogger } from "./log.ts";
import type { FinishedReason, Metrics } from "./metrics.ts";
import type { GenerationRequest } from "./parse_request.ts";
import type { Recording } from "./recorder.ts";
import type { ResponsesStore } from "./responses_store.ts";
import { buildUsage, type StreamMeta, type Usage } from "./shapes.ts";
import type { RequestRole } from "./types.ts";

/** Shared state of one mock the engine reads and updates. */
export interface EngineContext {
  readonly knobs: Knobs;
  readonly logger: MockLogger;
  readonly metrics: Metrics;
  readonly connector: KvConnector;
  /** The encoder-cache connector, when the engine runs one (E/P/D). */
  readonly ec: EcEngine | undefined;
  /** Ranks `X-Data-Parallel-Rank` may name. */
  readonly dataParallelSize: number;
  /** The Responses API's stored response ids. */
  readonly responses: ResponsesStore;
}

/** Latencies for one request (knobs, possibly overridden by `X-Mock-*` headers). */
export interface Timing {
  readonly ttftMs: number;
  readonly interTokenMs: number;
  readonly kvTransferMs: number;
}

/** Why generation stopped; "cache_threshold" is vLLM RFC #24256's early finish. */
export type FinishReason = "stop" | "length" | "cache_threshold";

/** One admitted generation request. */
export interface Job {
  readonly req: GenerationRequest;
  readonly role: RequestRole;
  readonly record: Recording;
  readonly meta: StreamMeta;
  /** The reply the engine will produce unless the cache threshold stops it. */
  readonly tokens: readonly string[];
  readonly finishReason: "stop" | "length";
  readonly timing: Timing;
  /** Data-parallel rank pinned by `X-Data-Parallel-Rank` (validated against `dataParallelSize`). */
  readonly dpRank: number | undefined;
  /** `X-Cache-Threshold-Finish-Reason: true` (llm-d-inference-sim's switch) forces the early finish. */
  readonly forceCacheThreshold: boolean;
  /** Streaming only: break the body after this many events (`X-Mock-Break-After`). */
  readonly breakAfter: number | undefined;
  /** `ec_transfer_params` an ec-nixl encoder answers with. */
  readonly ecTransferParams: Record<string, unknown> | undefined;
  /** Aborts on client disconnect or `close()`. */
  readonly signal: AbortSignal;
  readonly engine: EngineContext;
}

/** Outcome of the first-token phase. */
export type FirstToken =
  | {
    readonly ok: true;
    /** `prompt_tokens_details.cached_tokens`, or undefined when details are off. */
    readonly cachedTokens: number | undefined;
    /** What to emit: the job's reply, or nothing with `cache_threshold`. */
    readonly tokens: readonly string[];
    readonly finishReason: FinishReason;
  }
  | {
    /** The KV load failed under policy "fail" (or SGLang's bootstrap failed): the request errors. */
    readonly ok: false;
    readonly error: VllmError;
  };

/**
 * Waits until the first token exists: the connector loads KV (or waits for
 * a peer), the cache threshold may end the request at once, then TTFT (or
 * the KV-transfer time) passes and the connector learns the prompt's KV
 * exists here.
 */
export async function waitFirstToken(job: Job): Promise<FirstToken> {
  const { connector, knobs, logger } = job.engine;
  const loaded = await connector.load(job);
  if (!loaded.ok) return { ok: false, error: loaded.error };
  const load = loaded.transferred ? loaded : {
    ...loaded,
    cachedTokens: Math.min(
      job.req.promptTokens,
      Math.max(loaded.cachedTokens, knobs.prefixCachedTokens),
    ),
  };
  const details = knobs.promptTokensDetails;
  if (belowCacheThreshold(job, load.cachedTokens)) {
    logger.write(
      "INFO",
      "scheduler.py:587",
      `Request ${job.meta.id} finished with cache_threshold: ${load.cachedTokens} of ${job.req.promptTokens} prompt tokens cached, threshold ${
        String(job.req.cacheHitThreshold ?? "forced by header")
      }`,
    );
    return {
      ok: true,
      cachedTokens: details ? load.cachedTokens : undefined,
      tokens: [],
      finishReason: "cache_threshold",
    };
  }
  await delay(
    load.transferred ? job.timing.kvTransferMs : job.timing.ttftMs,
    job.signal,
  );
  await connector.computed(job);
  return {
    ok: true,
    cachedTokens: details ? load.cachedTokens : undefined,
    tokens: job.tokens,
    finishReason: job.finishReason,
  };
}

/** llm-d-inference-sim's rule: hit rate = cached / prompt tokens, below the request's threshold stops. */
function belowCacheThreshold(job: Job, cachedTokens: number): boolean {
  if (job.forceCacheThreshold) return true;
  const threshold = job.req.cacheHitThreshold;
  if (threshold === undefined) return false;
  return cachedTokens / job.req.promptTokens < threshold;
}

/** The gap before token `index` (none before the first: it comes with the first-token phase). */
export function waitNextToken(job: Job, index: number): Promise<void> {
  return index === 0
    ? Promise.resolve()
    : delay(job.timing.interTokenMs, job.signal);
}

/** Usage after `completionTokens` tokens. */
export function usageOf(
  job: Job,
  completionTokens: number,
  first: { readonly cachedTokens: number | undefined },
): Usage {
  return buildUsage(job.req.promptTokens, completionTokens, first.cachedTokens);
}

/** What a finished non-streaming answer hands off (nothing after a cache-threshold stop). */
export function handOffOf(job: Job, finishReason: FinishReason): HandOff {
  return finishReason === "cache_threshold"
    ? { kvTransferParams: null }
    : job.engine.connector.handOff(job);
}

/** Counts a finished request in the metrics. */
export function countFinished(
  job: Job,
  reason: FinishedReason,
  completionTokens: number,
): void {
  const { metrics } = job.engine;
  metrics.success[reason]++;
  metrics.promptTokens += job.req.promptTokens;
  metrics.generationTokens += completionTokens;
}
