/**
 * vLLM's MooncakeConnector (vllm-wire.md §3.5; delta spec §3.5).
 *
 * - The prefiller answers `GET /query` on its bootstrap port (the mock's
 *   side channel) with one entry per data-parallel rank:
 *   `{"0": {"engine_id": "<id>"}, …}`; with `dataParallelSize > 1` rank r's
 *   engine id is `<engineId>_dp<r>`, as vLLM's DP engines name themselves.
 * - The prefill leg carries `kv_transfer_params`
 *   `{do_remote_decode: true, do_remote_prefill: false, transfer_id}` and
 *   the `X-Data-Parallel-Rank` header picking the rank (absent: rank 0, the
 *   idle engine vLLM's balancer would pick). Once its prompt is computed the
 *   KV is registered under `transfer_id` for the engine id of that rank.
 * - The decode leg carries `{do_remote_prefill: true, do_remote_decode:
 *   false, transfer_id, remote_bootstrap_addr, remote_engine_id}` and, since
 *   both legs run at once, waits at `remote_bootstrap_addr` up to
 *   `kvWaitTimeoutMs` for that transfer. It fails (policy "fail": 500) when
 *   the transfer never appears, was registered by another engine id, holds
 *   another prompt, or was already read; a decode missing a field computes
 *   the prompt itself.
 *
 * Refused at once: a prefill without a string `transfer_id`, or reusing
 * one (400).
 *
 * @module
 */

import type { Job } from "./engine.ts";
import { VllmError } from "./errors.ts";
import {
  failedLoad,
  invalidParamsLoad,
  type KvConnector,
  type KvContext,
  type KvLoad,
  kvTransferParamsOf,
  NO_KV_HOOKS,
  NOTHING_LOADED,
  pulledLoad,
  rememberId,
  roleOfRemoteFlags,
  type SideChannelAnswer,
} from "./kv_connector.ts";
import {
  readPeerRequest,
  refusal,
  refusalOfWait,
  tokensAnswer,
} from "./side_channel_answers.ts";
import { hashPrompt } from "./kv_store.ts";
import { MOONCAKE_PULL_PATH, MOONCAKE_QUERY_PATH } from "./kv_wire.ts";
import { isRecord } from "./parse_request.ts";
import { countOf, pullFromPeer } from "./peer.ts";
import { createRendezvous, type Rendezvous } from "./rendezvous.ts";

/** KV a prefill registered under its `transfer_id`. */
interface Registered {
  readonly engineId: string;
  readonly promptHash: string;
  readonly numTokens: number;
}

const SOURCE = "mooncake_connector.py:702";

/** One prefiller's Mooncake state: registered transfers and taken ids. */
interface Transfers {
  readonly ctx: KvContext;
  readonly registered: Rendezvous<Registered>;
  readonly usedIds: Set<string>;
}

/** The `mooncake` connector. */
export function createMooncakeConnector(ctx: KvContext): KvConnector {
  const transfers: Transfers = {
    ctx,
    registered: createRendezvous(),
    usedIds: new Set(),
  };
  return {
    ...NO_KV_HOOKS,
    name: "mooncake",
    roleOf: (arrived) => roleOfRemoteFlags(kvTransferParamsOf(arrived.body)),
    admit(job) {
      if (job.role === "prefill") takeTransferId(transfers, job);
    },
    load(job) {
      if (job.role === "decode") return pullTransfer(job);
      if (job.role !== "prefill") return Promise.resolve(NOTHING_LOADED);
      const id = transferIdOf(job) as string;
      job.signal.addEventListener(
        "abort",
        () => transfers.registered.abandon(id, "the prefill was aborted"),
        { once: true },
      );
      return Promise.resolve(NOTHING_LOADED);
    },
    computed: (job) =>
      job.role === "prefill" ? register(transfers, job) : Promise.resolve(),
    serveSideChannel(request, path) {
      if (path === MOONCAKE_QUERY_PATH && request.method === "GET") {
        return Promise.resolve({
          status: 200,
          body: buildQueryAnswer(ctx),
          key: undefined,
        });
      }
      if (path !== MOONCAKE_PULL_PATH || request.method !== "POST") {
        return undefined;
      }
      return request.text().then((text) =>
        servePull(transfers, text, request.signal)
      );
    },
    close: () => transfers.registered.close(),
  };
}

/** Engine id of a data-parallel rank, as vLLM's DP engines name themselves. */
function engineIdOf(ctx: KvContext, rank: number): string {
  return ctx.dataParallelSize > 1
    ? `${ctx.knobs.engineId}_dp${rank}`
    : ctx.knobs.engineId;
}

/** `GET /query`: one `{engine_id}` per data-parallel rank. */
function buildQueryAnswer(ctx: KvContext): Record<string, unknown> {
  return Object.fromEntries(
    Array.from(
      { length: ctx.dataParallelSize },
      (_, rank) => [String(rank), { "engine_id": engineIdOf(ctx, rank) }],
    ),
  );
}

/** A prefill needs a fresh `transfer_id`; taken at admission so a streaming twin cannot slip in before it loads. */
function takeTransferId(transfers: Transfers, job: Job): void {
  const id = transferIdOf(job);
  if (id === undefined) {
    throw new VllmError(
      400,
      "kv_transfer_params.transfer_id must be a non-empty string for a Mooncake prefill (do_remote_decode)",
      { param: "kv_transfer_params" },
    );
  }
  if (transfers.usedIds.has(id)) {
    throw new VllmError(400, `transfer_id ${id} is already in use`, {
      param: "kv_transfer_params",
    });
  }
  rememberId(transfers.usedIds, id);
}

/** The prefill computed its prompt: register the KV under its transfer id for its rank's engine. */
async function register(transfers: Transfers, job: Job): Promise<void> {
  const id = transferIdOf(job) as string;
  const engineId = engineIdOf(transfers.ctx, job.dpRank ?? 0);
  transfers.registered.publish(id, {
    engineId,
    promptHash: await hashPrompt(job.req.promptKey),
    numTokens: job.req.promptTokens,
  });
  job.record.kvHandOff = {
    connector: "mooncake",
    key: id,
    numTokens: job.req.promptTokens,
  };
  transfers.ctx.logger.write(
    "INFO",
    SOURCE,
    `Registered KV of request ${job.meta.id} for transfer ${id} on engine ${engineId} (${job.req.promptTokens} tokens)`,
  );
}

/** The side channel: a decode reads a transfer, waiting for its concurrent prefill. */
async function servePull(
  transfers: Transfers,
  text: string,
  signal: AbortSignal,
): Promise<SideChannelAnswer> {
  const pull = readPeerRequest(text);
  const id = pull.transfer_id;
  if (typeof id !== "string" || typeof pull.prompt_hash !== "string") {
    return refusal(400, "invalid pull request", id);
  }
  const waitMs = countOf(pull, "wait_ms");
  transfers.ctx.logger.write(
    "DEBUG",
    SOURCE,
    `Remote engine ${
      String(pull.remote_engine_id)
    } reads transfer ${id} (waiting up to ${waitMs} ms)`,
  );
  const outcome = await transfers.registered.wait(id, waitMs, signal);
  if (!outcome.ok) {
    return refusalOfWait(
      outcome,
      id,
      `unknown transfer_id (no prefill registered it within ${waitMs} ms)`,
    );
  }
  return judgeRead(transfers, id, pull, outcome.value);
}

/** A registered transfer goes once, to a reader naming its engine and prompt. */
function judgeRead(
  transfers: Transfers,
  id: string,
  pull: Readonly<Record<string, unknown>>,
  registered: Registered,
): SideChannelAnswer {
  // Two reads woken by one registration: only the first may take it.
  if (transfers.registered.peek(id)?.ok !== true) {
    return refusal(409, `transfer ${id} was already read`, id);
  }
  if (pull.remote_engine_id !== registered.engineId) {
    return refusal(
      409,
      `engine id mismatch: transfer ${id} is on engine ${registered.engineId}, not ${
        String(pull.remote_engine_id)
      }`,
      id,
    );
  }
  if (pull.prompt_hash !== registered.promptHash) {
    return refusal(
      409,
      "prompt mismatch: the prefill computed another prompt",
      id,
    );
  }
  // vLLM frees the prefiller's blocks once the decoder read them.
  transfers.registered.delete(id);
  return tokensAnswer(registered.numTokens, id);
}

function transferIdOf(job: Job): string | undefined {
  const params = job.req.kvParams;
  const id = isRecord(params) ? params.transfer_id : undefined;
  return typeof id === "string" && id !== "" ? id : undefined;
}

/** The decode side: read the transfer from the prefiller's bootstrap address. */
async function pullTransfer(job: Job): Promise<KvLoad> {
  const params = job.req.kvParams as Readonly<Record<string, unknown>>;
  const addr = params.remote_bootstrap_addr;
  const fields = {
    remoteEngineId: params.remote_engine_id,
    remoteRequestId: params.transfer_id,
    remoteHost: addr,
  };
  const base = bootstrapBase(addr);
  const missing = [
    ...(typeof params.transfer_id === "string" ? [] : ["transfer_id"]),
    ...(base === undefined ? ["remote_bootstrap_addr"] : []),
    ...(typeof params.remote_engine_id === "string"
      ? []
      : ["remote_engine_id"]),
  ];
  if (missing.length > 0 || base === undefined) {
    return invalidParamsLoad(job, {
      source: SOURCE,
      shown: params,
      missing,
      fields,
    });
  }
  const answer = await pullFromPeer(`${base}${MOONCAKE_PULL_PATH}`, {
    transfer_id: params.transfer_id,
    remote_engine_id: params.remote_engine_id,
    prompt_hash: await hashPrompt(job.req.promptKey),
    wait_ms: job.engine.knobs.kvWaitTimeoutMs,
  }, job.signal);
  if (!answer.ok) {
    return failedLoad(job, { ...fields, reason: answer.reason }, {
      source: SOURCE,
    });
  }
  const { numTokens } = answer;
  job.engine.logger.write(
    "DEBUG",
    SOURCE,
    `Read transfer ${
      String(params.transfer_id)
    } (${numTokens} tokens) for request ${job.meta.id} from engine ${
      String(params.remote_engine_id)
    }`,
  );
  return pulledLoad(job, fields, numTokens);
}

/** `http://host:port` of a `remote_bootstrap_addr`, or undefined when it is not one. */
function bootstrapBase(addr: unknown): string | undefined {
  if (typeof addr !== "string") return undefined;
  try {
    const url = new URL(addr);
    if (url.protocol !== "http:" || url.pathname !== "/") {
      return undefined;
    }
    return url.origin;
  } catch {
    return undefined;
  }
}
