/**
 * vLLM's NixlConnector, in two generations.
 *
 * `nixlv2` (vllm-wire.md §2): the prefill leg carries
 * `kv_transfer_params.do_remote_decode: true` and its JSON answer hands off
 * `kv_transfer_params` in the newest pull-mode shape; the decode leg carries
 * that object with `do_remote_prefill: true`, and the decoder pulls the
 * named blocks from the prefiller's side channel. With `remote_kv_source`
 * in `kv_transfer_params` (MultiConnector with the OffloadingConnector) the
 * engine first reads the cached prefix from that peer.
 *
 * `nixl` (the legacy protocol of the original llm-d sidecar, reference
 * spec §3.3): the same exchange with top-level fields. The prefill leg has
 * top-level `do_remote_decode: true`; its answer has top-level
 * `remote_block_ids` (a flat list), `remote_engine_id`, `remote_host` and
 * `remote_port`; the decode leg has top-level `do_remote_prefill: true` and
 * those four fields. That generation had no `remote_request_id`: both legs
 * carried the same `X-Request-Id`, so the decoder names the blocks by its
 * own request id, and a decode with another id finds no blocks.
 *
 * @module
 */

import type { Job } from "./engine.ts";
import {
  failedLoad,
  type HandOff,
  invalidParamsLoad,
  type KvConnector,
  type KvContext,
  type KvLoad,
  kvTransferParamsOf,
  NO_KV_HOOKS,
  NOTHING_LOADED,
  pulledLoad,
  roleOfRemoteFlags,
  type SideChannelAnswer,
  type SourceFields,
} from "./kv_connector.ts";
import { pullFromSource } from "./kv_p2p.ts";
import type { BlockLayout, IssuedHandle, KvRegistry } from "./kv_registry.ts";
import { hashPrompt, type LocalKvStore } from "./kv_store.ts";
import { NIXL_PULL_PATH } from "./kv_wire.ts";
import { pyRepr } from "./log.ts";
import { isRecord, parseJsonBody } from "./parse_request.ts";
import { countOf, peerBaseUrl, pullFromPeer } from "./peer.ts";

/** What a NIXL connector is built from. */
export interface NixlDeps {
  readonly ctx: KvContext;
  readonly registry: KvRegistry;
  /** This engine's prefix cache, kept so it can serve as a P2P KV source. */
  readonly localStore: LocalKvStore;
  /** Serves P2P reads (nixlv2 only: a MultiConnector engine is also a P2P source). */
  readonly serveP2p?: (
    request: Request,
    path: string,
  ) => Promise<SideChannelAnswer> | undefined;
}

/** Fields where each generation keeps its P/D markers. */
interface Generation {
  readonly name: "nixlv2" | "nixl";
  readonly layout: BlockLayout;
  /** The object holding `do_remote_*` and `remote_*`: `kv_transfer_params` (v2) or the body (v1). */
  params(body: unknown): Readonly<Record<string, unknown>> | undefined;
  /** Keys a transfer needs besides non-empty `remote_block_ids`. */
  readonly required: readonly string[];
}

const V2: Generation = {
  name: "nixlv2",
  layout: "groups",
  params: kvTransferParamsOf,
  required: [
    "remote_engine_id",
    "remote_request_id",
    "remote_host",
    "remote_port",
  ],
};

const V1: Generation = {
  name: "nixl",
  layout: "flat",
  params: (body) => (isRecord(body) ? body : undefined),
  required: ["remote_engine_id", "remote_host", "remote_port"],
};

/** The `nixlv2` connector (vLLM's NixlConnector, newest field set). */
export function createNixlV2Connector(deps: NixlDeps): KvConnector {
  return createNixl(V2, deps);
}

/** The legacy `nixl` connector (top-level fields, flat block ids, ids shared through `X-Request-Id`). */
export function createNixlV1Connector(deps: NixlDeps): KvConnector {
  return createNixl(V1, deps);
}

function createNixl(gen: Generation, deps: NixlDeps): KvConnector {
  return {
    ...NO_KV_HOOKS,
    name: gen.name,
    roleOf: (arrived) => roleOfRemoteFlags(gen.params(arrived.body)),
    load: (job) => load(gen, job),
    async computed(job) {
      deps.localStore.set(
        await hashPrompt(job.req.promptKey),
        job.req.promptTokens,
      );
    },
    handOff: (job) => handOff(gen, deps, job),
    serveSideChannel(request, path) {
      if (path === NIXL_PULL_PATH && request.method === "POST") {
        return servePull(request, deps);
      }
      return deps.serveP2p?.(request, path);
    },
  };
}

function load(gen: Generation, job: Job): Promise<KvLoad> {
  const params = gen.params(job.req.body);
  if (job.role === "decode" && params !== undefined) {
    return pullBlocks(gen, job, params);
  }
  const kvParams = job.req.kvParams;
  if (
    gen === V2 && isRecord(kvParams) && kvParams.remote_kv_source !== undefined
  ) {
    return pullFromSource(job, kvParams.remote_kv_source);
  }
  return Promise.resolve(NOTHING_LOADED);
}

/**
 * vLLM needs non-empty `remote_block_ids` and the other required keys;
 * otherwise it logs "Got invalid KVTransferParams" and computes the prompt
 * itself. Then it reads the blocks from the prefiller.
 */
async function pullBlocks(
  gen: Generation,
  job: Job,
  params: Readonly<Record<string, unknown>>,
): Promise<KvLoad> {
  const fields: PullFields = {
    remoteEngineId: params.remote_engine_id,
    remoteRequestId: gen === V2 ? params.remote_request_id : job.meta.id,
    remoteHost: params.remote_host,
    remotePort: params.remote_port,
    numBlocks: countBlockIds(params.remote_block_ids),
  };
  const absent = missingKeys(gen, params);
  if (absent.length > 0) {
    return invalidParamsLoad(job, {
      source: "nixl_connector.py:541",
      shown: gen === V2 ? params : pick(params),
      missing: absent,
      fields,
    });
  }
  return await readBlocks(job, params, fields);
}

/** What a NIXL load records about its source. */
type PullFields = SourceFields & {
  readonly numBlocks: number;
};

/** The pull itself, once the params are complete: one call to the prefiller's side channel. */
async function readBlocks(
  job: Job,
  params: Readonly<Record<string, unknown>>,
  fields: PullFields,
): Promise<KvLoad> {
  const source = "nixl_connector.py:1840";
  const baseUrl = peerBaseUrl(params.remote_host, params.remote_port);
  if (baseUrl === undefined) {
    const address = `${JSON.stringify(params.remote_host)}:${
      JSON.stringify(params.remote_port)
    }`;
    return failedLoad(job, {
      ...fields,
      reason: `invalid remote address ${address}`,
    }, { source });
  }
  const answer = await pullFromPeer(`${baseUrl}${NIXL_PULL_PATH}`, {
    remote_engine_id: params.remote_engine_id,
    remote_request_id: fields.remoteRequestId,
    remote_block_ids: params.remote_block_ids,
  }, job.signal);
  if (!answer.ok) {
    const reason = answer.reached ? answer.reason : answer.reason.replace(
      /^cannot reach /,
      "cannot reach remote engine at ",
    );
    return failedLoad(job, { ...fields, reason }, { source });
  }
  job.engine.logger.write(
    "DEBUG",
    "nixl_connector.py:646",
    `start_load_kv for request ${job.meta.id} from remote engine ${
      String(params.remote_engine_id)
    }. Num local_block_ids: ${
      countOf(answer.body, "num_blocks")
    }. Num remote_block_ids: ${fields.numBlocks}`,
  );
  return pulledLoad(job, fields, answer.numTokens);
}

function missingKeys(
  gen: Generation,
  params: Readonly<Record<string, unknown>>,
): string[] {
  const absent: string[] = [];
  const blocks = params.remote_block_ids;
  if (!Array.isArray(blocks) || blocks.length === 0) {
    absent.push("remote_block_ids");
  }
  for (const key of gen.required) {
    if (params[key] === undefined || params[key] === null) absent.push(key);
  }
  return absent;
}

/** The legacy fields only, so a v1 log line does not print the whole request. */
function pick(
  params: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const keys = [
    "do_remote_prefill",
    "remote_block_ids",
    "remote_engine_id",
    "remote_host",
    "remote_port",
  ];
  return Object.fromEntries(keys.map((k) => [k, params[k]]));
}

/** Number of block ids in a flat (`[1, 2]`) or per-group (`[[1, 2]]`) list. */
export function countBlockIds(blockIds: unknown): number {
  if (!Array.isArray(blockIds)) return 0;
  return blockIds.reduce<number>(
    (n, item) => n + (Array.isArray(item) ? item.length : 1),
    0,
  );
}

/**
 * A non-streaming prefill finished: pin its blocks under a lease and return
 * what a decoder needs. vLLM's engine id is "<external id>-<8 random chars>"
 * (completions add the prompt index first); the legacy generation shared
 * the external id itself.
 */
function handOff(gen: Generation, deps: NixlDeps, job: Job): HandOff {
  if (job.role !== "prefill") return { kvTransferParams: null };
  const handle = issueHandle(gen, deps, job);
  const { knobs } = deps.ctx;
  const { host, port } = deps.ctx.sideChannel();
  if (gen === V1) {
    return {
      kvTransferParams: null,
      topLevel: {
        "remote_block_ids": handle.blockIds,
        "remote_engine_id": knobs.engineId,
        "remote_host": host,
        "remote_port": port,
      },
    };
  }
  return {
    kvTransferParams: {
      "do_remote_prefill": true,
      "do_remote_decode": false,
      "remote_block_ids": handle.blockIds,
      "remote_engine_id": knobs.engineId,
      "remote_request_id": handle.remoteRequestId,
      "remote_host": host,
      "remote_port": port,
      "tp_size": 1,
      "dcp_size": 1,
      "pp_size": 1,
      "remote_num_tokens": job.req.promptTokens,
      "remote_blocks_expiry_time": null,
      "transfer_mode": "pull",
    },
  };
}

/** Pins the prompt's blocks under the prefill's engine request id, records and logs it. */
function issueHandle(gen: Generation, deps: NixlDeps, job: Job): IssuedHandle {
  const { knobs, logger } = deps.ctx;
  const suffix = crypto.randomUUID().replaceAll("-", "").slice(0, 8);
  const remoteRequestId = gen === V1
    ? job.meta.id
    : job.req.api === "completions"
    ? `${job.meta.id}-0-${suffix}`
    : `${job.meta.id}-${suffix}`;
  const handle = deps.registry.issue(
    remoteRequestId,
    job.req.promptTokens,
    gen.layout,
  );
  job.record.kvHandOff = {
    connector: gen.name,
    key: remoteRequestId,
    numTokens: handle.numTokens,
  };
  const status = job.finishReason === "length"
    ? "FINISHED_LENGTH_CAPPED"
    : "FINISHED_STOPPED";
  logger.write(
    "DEBUG",
    "nixl_connector.py:1003",
    `NIXLConnector request_finished, request_status=${status}, kv_transfer_params=${
      pyRepr(gen === V2 ? job.req.kvParams : { do_remote_decode: true })
    }`,
  );
  logger.write(
    "INFO",
    "mock_vllm.py:1",
    `Issued KV handle ${remoteRequestId} for request ${job.meta.id}: ` +
      `${handle.numBlocks} blocks, ${handle.numTokens} tokens, lease ${knobs.kvLeaseMs} ms`,
  );
  return handle;
}

async function servePull(
  request: Request,
  deps: NixlDeps,
): Promise<SideChannelAnswer> {
  const { knobs, logger } = deps.ctx;
  const parsed = parseJsonBody(await request.text().catch(() => ""));
  const answer = deps.registry.serve(parsed.ok ? parsed.value : undefined, {
    engineId: knobs.engineId,
    leaseMs: knobs.kvLeaseMs,
  });
  const id = String(answer.key);
  if (answer.reason === undefined) {
    logger.write(
      "DEBUG",
      "nixl_connector.py:1177",
      `Remote engine read the KV blocks of request ${id}`,
    );
  } else {
    logger.write(
      "WARNING",
      "nixl_connector.py:1190",
      `Refused KV pull for request ${id}: ${answer.reason}`,
    );
  }
  return answer;
}
