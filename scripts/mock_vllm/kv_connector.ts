/**
 * The seam between the simulated engine and one KV-transfer protocol. A
 * mock speaks exactly one connector, chosen when it starts (vLLM's
 * `--kv-transfer-config`, SGLang's `--disaggregation-mode`): the engine asks
 * it what role a request plays, lets it load KV before the first token,
 * tells it when the prompt's KV exists, and asks what the answer hands off.
 *
 * @module
 */

import type { Job } from "./engine.ts";
import { internalServerError, VllmError } from "./errors.ts";
import type { Knobs } from "./knobs.ts";
import type { KvConnectorName, KvRole } from "./kv_wire.ts";
import { type MockLogger, pyRepr } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import { isRecord } from "./parse_request.ts";
import type { KvTransferRecord, RequestRole } from "./types.ts";

/** What a connector reads from its mock. */
export interface KvContext {
  readonly knobs: Knobs;
  readonly logger: MockLogger;
  readonly metrics: Metrics;
  readonly kvRole: KvRole;
  readonly dataParallelSize: number;
  /** Host and port this mock advertises for its KV side channel. */
  readonly sideChannel: () => { readonly host: string; readonly port: number };
}

/** A generation request as it arrived, before validation. */
export interface ArrivedGeneration {
  readonly body: unknown;
  readonly bodyText: string;
  readonly headers: Headers;
}

/** Outcome of the load phase. */
export type KvLoad =
  | {
    readonly ok: true;
    /** Prompt tokens that did not need computing here. */
    readonly cachedTokens: number;
    /** KV came from another engine, so the first token costs `kvTransferMs` instead of TTFT. */
    readonly transferred: boolean;
  }
  | { readonly ok: false; readonly error: VllmError };

/** KV hand-off fields of a non-streaming answer. */
export interface HandOff {
  /** The answer's top-level `kv_transfer_params` (null: nothing to hand off). */
  readonly kvTransferParams: Record<string, unknown> | null;
  /** Extra top-level answer fields (the legacy NIXL protocol puts its fields there). */
  readonly topLevel?: Readonly<Record<string, unknown>>;
}

/** A side-channel answer, before it is rendered and recorded. */
export interface SideChannelAnswer {
  readonly status: number;
  readonly body: Record<string, unknown>;
  /** The key the peer asked for (handle, room, transfer id, kv_request_id, prompt hash). */
  readonly key: unknown;
  /** Refusal reason; absent on success. */
  readonly reason?: string;
}

/** One KV-transfer protocol, as one engine speaks it. */
export interface KvConnector {
  readonly name: KvConnectorName;
  /** The role a generation request plays on this engine, read at arrival. */
  roleOf(arrived: ArrivedGeneration): RequestRole;
  /** Refuses a request this engine cannot serve before any work; throws {@linkcode VllmError}. */
  admit(job: Job): void;
  /** Before the first token: brings in KV computed elsewhere, or waits for a peer. */
  load(job: Job): Promise<KvLoad>;
  /** The prompt's KV exists here now (the first token was computed). */
  computed(job: Job): Promise<void>;
  /** A non-streaming answer is being built: what it hands off. */
  handOff(job: Job): HandOff;
  /** Serves a side-channel request, or returns undefined when `path` is not this connector's. */
  serveSideChannel(
    request: Request,
    path: string,
  ): Promise<SideChannelAnswer> | undefined;
  /** Ends pending side-channel waits (shutdown). */
  close(): void;
}

/** Hooks of a connector that moves no KV; real connectors override what they need. */
export const NO_KV_HOOKS: Omit<KvConnector, "name" | "roleOf"> = {
  admit() {},
  load: () => Promise.resolve(NOTHING_LOADED),
  computed: () => Promise.resolve(),
  handOff: () => ({ kvTransferParams: null }),
  serveSideChannel: () => undefined,
  close() {},
};

/** A load that brought nothing in: the engine computes the whole prompt. */
export const NOTHING_LOADED: KvLoad = {
  ok: true,
  cachedTokens: 0,
  transferred: false,
};

/** Ids remembered to refuse their reuse. */
const ID_MEMORY = 10_000;

/** Adds `id` to `ids`, forgetting the oldest once more than {@linkcode ID_MEMORY} are kept. */
export function rememberId(ids: Set<string>, id: string): void {
  ids.add(id);
  if (ids.size > ID_MEMORY) ids.delete(ids.values().next().value as string);
}

/** A body's `kv_transfer_params` object, or undefined when it has none. */
export function kvTransferParamsOf(
  body: unknown,
): Readonly<Record<string, unknown>> | undefined {
  return isRecord(body) && isRecord(body.kv_transfer_params)
    ? body.kv_transfer_params
    : undefined;
}

/**
 * The role of a request whose params carry vLLM's markers (NIXL, Mooncake):
 * only a literal true counts, so a decode told `do_remote_prefill: false`
 * computes the prompt itself.
 */
export function roleOfRemoteFlags(
  params: Readonly<Record<string, unknown>> | undefined,
): RequestRole {
  if (params?.do_remote_prefill === true) return "decode";
  if (params?.do_remote_decode === true) return "prefill";
  return "plain";
}

/** Role from `kv_role` for connectors whose requests carry no role marker. */
export function roleOfKvRole(kvRole: KvRole): RequestRole {
  if (kvRole === "kv_producer") return "prefill";
  if (kvRole === "kv_consumer") return "decode";
  return "plain";
}

/** The fields of a {@linkcode KvTransferRecord} a connector fills in. */
export type TransferFields = Omit<
  KvTransferRecord,
  "connector" | "failurePolicy"
>;

/** What a load records about where its KV came from (and why not, on failure). */
export type SourceFields = Omit<TransferFields, "outcome" | "numTokens">;

/** Records a successful or skipped load on the request and in the metrics. */
export function recordTransfer(
  job: Job,
  fields: TransferFields,
): KvTransferRecord {
  const record: KvTransferRecord = {
    connector: job.engine.connector.name,
    ...fields,
  };
  job.record.kvTransfer = record;
  job.engine.metrics.kvPulls[record.outcome]++;
  return record;
}

/** A load that brought `numTokens` in from a peer or store: recorded, and reported as cached. */
export function pulledLoad(
  job: Job,
  fields: SourceFields,
  numTokens: number,
): KvLoad {
  recordTransfer(job, { ...fields, outcome: "pulled", numTokens });
  return { ok: true, cachedTokens: numTokens, transferred: true };
}

/** A load that brought nothing in, for `fields.reason`: recorded, and the prompt computed here. */
export function recomputedLoad(
  job: Job,
  fields: SourceFields,
): KvLoad {
  recordTransfer(job, { ...fields, outcome: "recomputed", numTokens: 0 });
  return NOTHING_LOADED;
}

/**
 * vLLM's answer to `kv_transfer_params` that miss the `missing` keys: it
 * logs "Got invalid KVTransferParams" with the params it read (`shown`) and
 * computes the prompt itself.
 */
export function invalidParamsLoad(
  job: Job,
  options: {
    readonly source: string;
    readonly shown: unknown;
    readonly missing: readonly string[];
    readonly fields: Omit<SourceFields, "reason">;
  },
): KvLoad {
  job.engine.logger.write(
    "WARNING",
    options.source,
    `Got invalid KVTransferParams: ${
      pyRepr(options.shown)
    }. This request will not utilize KVTransfer`,
  );
  return recomputedLoad(job, {
    ...options.fields,
    reason: `invalid kv_transfer_params: missing ${options.missing.join(", ")}`,
  });
}

/**
 * A load that failed: records it, logs it, and applies vLLM's
 * `kv_load_failure_policy` ("fail" answers 500, "recompute" computes the
 * prompt here). `alwaysFail` is for engines without that policy (SGLang).
 */
export function failedLoad(
  job: Job,
  fields: SourceFields,
  options: {
    readonly source: string;
    readonly alwaysFail?: boolean;
    /** Error text for the client instead of vLLM's generic "Internal server error". */
    readonly message?: string;
  },
): KvLoad {
  const { logger, knobs } = job.engine;
  const policy = options.alwaysFail ? "fail" : knobs.kvLoadFailurePolicy;
  const record: KvTransferRecord = {
    connector: job.engine.connector.name,
    ...fields,
    outcome: "failed",
    numTokens: 0,
    failurePolicy: policy,
  };
  job.record.kvTransfer = record;
  job.engine.metrics.kvPulls.failed++;
  logger.write(
    "ERROR",
    options.source,
    `KV load failed for request ${job.meta.id}: ${fields.reason ?? "unknown"}`,
  );
  if (policy === "fail") {
    const error = options.message === undefined
      ? internalServerError()
      : new VllmError(500, options.message, { type: "InternalServerError" });
    return { ok: false, error };
  }
  logger.write(
    "WARNING",
    "scheduler.py:1412",
    `Recomputing prompt for request ${job.meta.id} after KV load failure (kv_load_failure_policy=recompute)`,
  );
  return NOTHING_LOADED;
}
