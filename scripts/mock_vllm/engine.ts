/**
 * The simulated engine: what happens between a validated request and its
 * tokens. Time to first token (or the KV pull that replaces it on a decoder),
 * inter-token gaps, and the prefiller's KV hand-off. Shared by the JSON and
 * the streaming renderers so both time and account a request the same way.
 *
 * @module
 */

import { delay } from "./delay.ts";
import type { Knobs } from "./knobs.ts";
import { checkKvParams, pullKv, type PullTarget } from "./kv_pull.ts";
import type { KvRegistry } from "./kv_registry.ts";
import type { MockLogger } from "./log.ts";
import { pyRepr } from "./log.ts";
import type { FinishedReason, Metrics } from "./metrics.ts";
import { type GenerationRequest, isRecord } from "./parse_request.ts";
import type { Recording } from "./recorder.ts";
import { buildUsage, type StreamMeta, type Usage } from "./shapes.ts";
import type { KvTransferRecord, RequestRole } from "./types.ts";

/** Shared state of one mock the engine reads and updates. */
export interface EngineContext {
  readonly knobs: Knobs;
  readonly logger: MockLogger;
  readonly metrics: Metrics;
  readonly registry: KvRegistry;
  /** Host and port a prefiller advertises in `kv_transfer_params`. */
  readonly sideChannel: () => { readonly host: string; readonly port: number };
}

/** Latencies for one request (knobs, possibly overridden by `X-Mock-*` headers). */
export interface Timing {
  readonly ttftMs: number;
  readonly interTokenMs: number;
  readonly kvTransferMs: number;
}

/** One admitted generation request. */
export interface Job {
  readonly req: GenerationRequest;
  readonly role: RequestRole;
  readonly record: Recording;
  readonly meta: StreamMeta;
  readonly tokens: readonly string[];
  readonly finishReason: "stop" | "length";
  readonly timing: Timing;
  /** Streaming only: break the body after this many events (`X-Mock-Break-After`). */
  readonly breakAfter: number | undefined;
  /** Aborts on client disconnect or `close()`. */
  readonly signal: AbortSignal;
  readonly engine: EngineContext;
}

/** Outcome of the first-token phase. */
export interface FirstToken {
  /** False when a KV load failed under policy "fail": the request must error. */
  readonly ok: boolean;
  /** `prompt_tokens_details.cached_tokens`, or undefined when details are off. */
  readonly cachedTokens: number | undefined;
}

/**
 * Waits until the first token exists. A decoder with `do_remote_prefill`
 * first pulls the KV; a successful pull costs `kvTransferMs` instead of TTFT.
 */
export async function waitFirstToken(job: Job): Promise<FirstToken> {
  const details = job.engine.knobs.promptTokensDetails;
  const params = job.req.kvParams;
  if (job.role !== "decode" || !isRecord(params)) {
    await delay(job.timing.ttftMs, job.signal);
    return { ok: true, cachedTokens: details ? 0 : undefined };
  }
  const transfer = await transferKv(job, params);
  job.record.kvTransfer = transfer;
  job.engine.metrics.kvPulls[transfer.outcome]++;
  if (transfer.outcome === "failed" && transfer.failurePolicy === "fail") {
    return { ok: false, cachedTokens: undefined };
  }
  const pulled = transfer.outcome === "pulled";
  await delay(pulled ? job.timing.kvTransferMs : job.timing.ttftMs, job.signal);
  // vLLM's decoder reports the transferred prompt tokens as cached.
  return {
    ok: true,
    cachedTokens: details ? (pulled ? transfer.numTokens : 0) : undefined,
  };
}

async function transferKv(
  job: Job,
  params: Readonly<Record<string, unknown>>,
): Promise<KvTransferRecord> {
  const { logger, knobs } = job.engine;
  const check = checkKvParams(params);
  if (!check.ok) {
    logger.write(
      "WARNING",
      "nixl_connector.py:541",
      `Got invalid KVTransferParams: ${
        pyRepr(params)
      }. This request will not utilize KVTransfer`,
    );
    return transferRecord("recomputed", check.target, 0, check.reason);
  }
  const result = await pullKv(check.target, job.signal);
  if (result.ok) {
    logger.write(
      "DEBUG",
      "nixl_connector.py:646",
      `start_load_kv for request ${job.meta.id} from remote engine ${
        String(check.target.remoteEngineId)
      }. ` +
        `Num local_block_ids: ${result.numBlocks}. Num remote_block_ids: ${check.target.numBlocks}`,
    );
    return transferRecord("pulled", check.target, result.numTokens);
  }
  logger.write(
    "ERROR",
    "nixl_connector.py:1840",
    `KV load failed for request ${job.meta.id}: ${result.reason}`,
  );
  const policy = knobs.kvLoadFailurePolicy;
  if (policy === "recompute") {
    logger.write(
      "WARNING",
      "scheduler.py:1412",
      `Recomputing prompt for request ${job.meta.id} after KV load failure (kv_load_failure_policy=recompute)`,
    );
  }
  return {
    ...transferRecord("failed", check.target, 0, result.reason),
    failurePolicy: policy,
  };
}

function transferRecord(
  outcome: KvTransferRecord["outcome"],
  target: PullTarget,
  numTokens: number,
  reason?: string,
): KvTransferRecord {
  const record: KvTransferRecord = {
    outcome,
    remoteEngineId: target.remoteEngineId,
    remoteRequestId: target.remoteRequestId,
    remoteHost: target.remoteHost,
    remotePort: target.remotePort,
    numBlocks: target.numBlocks,
    numTokens,
  };
  if (reason !== undefined) record.reason = reason;
  return record;
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
  first: FirstToken,
): Usage {
  return buildUsage(job.req.promptTokens, completionTokens, first.cachedTokens);
}

/**
 * A non-streaming prefill finished: pin its blocks under a lease and return
 * the `kv_transfer_params` a decoder needs (vLLM's newest pull-mode shape).
 */
export function handOffKv(job: Job): Record<string, unknown> {
  const { registry, knobs, logger } = job.engine;
  // vLLM's engine id is "<external id>-<8 random chars>"; completions add the prompt index first.
  const suffix = crypto.randomUUID().replaceAll("-", "").slice(0, 8);
  const remoteRequestId = job.req.api === "completions"
    ? `${job.meta.id}-0-${suffix}`
    : `${job.meta.id}-${suffix}`;
  const handle = registry.issue(remoteRequestId, job.req.promptTokens);
  const { host, port } = job.engine.sideChannel();
  const params = {
    "do_remote_prefill": true,
    "do_remote_decode": false,
    "remote_block_ids": handle.blockIds,
    "remote_engine_id": knobs.engineId,
    "remote_request_id": remoteRequestId,
    "remote_host": host,
    "remote_port": port,
    "tp_size": 1,
    "dcp_size": 1,
    "pp_size": 1,
    "remote_num_tokens": job.req.promptTokens,
    "remote_blocks_expiry_time": null,
    "transfer_mode": "pull",
  };
  const status = job.finishReason === "length"
    ? "FINISHED_LENGTH_CAPPED"
    : "FINISHED_STOPPED";
  logger.write(
    "DEBUG",
    "nixl_connector.py:1003",
    `NIXLConnector request_finished, request_status=${status}, kv_transfer_params=${
      pyRepr(job.req.kvParams)
    }`,
  );
  logger.write(
    "INFO",
    "mock_vllm.py:1",
    `Issued KV handle ${remoteRequestId} for request ${job.meta.id}: ` +
      `${handle.blockIds.flat().length} blocks, ${handle.numTokens} tokens, lease ${knobs.kvLeaseMs} ms`,
  );
  return params;
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
