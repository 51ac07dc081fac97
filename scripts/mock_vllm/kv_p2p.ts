/**
 * The OffloadingConnector's P2P tier, as the mock models it: an engine keeps
 * prompt KV it computed (by prompt hash, its prefix cache) and, for a
 * prefill that named a `remote_decoder`, under that `kv_request_id`; a peer
 * reads either over `POST /_mock/p2p/pull`.
 *
 * Two reads exist (llm-d delta spec §3.6, §3.7):
 * - by `kv_request_id`: a decode told `remote_prefiller` waits for the
 *   prefill that runs concurrently with it, up to `kvWaitTimeoutMs`;
 * - by prefix: `remote_kv_source` names a peer that may hold the prompt's
 *   prefix. Its `kv_request_id` is fresh, so the source can only answer from
 *   what it has cached; a miss means "compute it yourself", not an error.
 *
 * @module
 */

import type { Job } from "./engine.ts";
import {
  failedLoad,
  type KvLoad,
  pulledLoad,
  recomputedLoad,
  type SideChannelAnswer,
  type SourceFields,
} from "./kv_connector.ts";
import {
  readPeerRequest,
  refusal,
  refusalOfWait,
  tokensAnswer,
} from "./side_channel_answers.ts";
import { hashPrompt, type LocalKvStore } from "./kv_store.ts";
import { P2P_PULL_PATH } from "./kv_wire.ts";
import { isRecord } from "./parse_request.ts";
import { countOf, peerBaseUrl, pullFromPeer } from "./peer.ts";
import { createRendezvous, type Rendezvous } from "./rendezvous.ts";

/** KV a prefill kept for the decoder it was told about. */
interface KeptKv {
  readonly promptHash: string;
  readonly numTokens: number;
}

/** One engine's P2P listener: what it kept and how it answers reads. */
export interface P2pEndpoint {
  /** A prefill with `remote_decoder` finished its prompt: keep it under `kvRequestId`. */
  keep(kvRequestId: string, kept: KeptKv): void;
  /** A prefill with `remote_decoder` failed before computing: its decoder should stop waiting. */
  drop(kvRequestId: string, reason: string): void;
  /** Serves `POST /_mock/p2p/pull`, or undefined for other paths. */
  serve(request: Request, path: string): Promise<SideChannelAnswer> | undefined;
  close(): void;
}

/** Creates the P2P listener of an engine whose prefix cache is `localStore`. */
export function createP2pEndpoint(localStore: LocalKvStore): P2pEndpoint {
  const kept: Rendezvous<KeptKv> = createRendezvous();
  return {
    keep: (id, value) => kept.publish(id, value),
    drop: (id, reason) => kept.abandon(id, reason),
    serve(request, path) {
      if (path !== P2P_PULL_PATH || request.method !== "POST") return undefined;
      return request.text().then((text) =>
        answerPull(readPeerRequest(text), {
          kept,
          localStore,
          signal: request.signal,
        })
      );
    },
    close: () => kept.close(),
  };
}

interface PullContext {
  readonly kept: Rendezvous<KeptKv>;
  readonly localStore: LocalKvStore;
  readonly signal: AbortSignal;
}

async function answerPull(
  pull: Readonly<Record<string, unknown>>,
  ctx: PullContext,
): Promise<SideChannelAnswer> {
  const id = pull.kv_request_id;
  const hash = pull.prompt_hash;
  if (typeof hash !== "string") return refusal(400, "invalid pull request", id);
  if (pull.mode === "prefix") {
    const numTokens = ctx.localStore.get(hash);
    return numTokens === undefined
      ? refusal(404, "no cached prefix for this prompt", id)
      : tokensAnswer(numTokens, id);
  }
  if (typeof id !== "string" || id === "") {
    return refusal(400, "invalid pull request", id);
  }
  const waitMs = countOf(pull, "wait_ms");
  const outcome = await ctx.kept.wait(id, waitMs, ctx.signal);
  if (!outcome.ok) {
    return refusalOfWait(
      outcome,
      id,
      `unknown kv_request_id (no prefill kept it within ${waitMs} ms)`,
    );
  }
  if (outcome.value.promptHash !== hash) {
    return refusal(
      409,
      "prompt mismatch: the prefill computed another prompt",
      id,
    );
  }
  return tokensAnswer(outcome.value.numTokens, id);
}

/** What a P2P block in `kv_transfer_params` must carry (`remote_prefiller` or `remote_kv_source`). */
interface P2pTarget {
  readonly kvRequestId: string;
  readonly baseUrl: string;
  readonly host: unknown;
  readonly port: unknown;
}

/** What a load from `target` records about its source. */
function transferFieldsOf(target: P2pTarget): SourceFields {
  return {
    remoteRequestId: target.kvRequestId,
    remoteHost: target.host,
    remotePort: target.port,
  };
}

/** Reads a `{kv_request_id, remote_host, remote_port}` block, or says what is wrong with it. */
export function readP2pTarget(
  block: unknown,
): { ok: true; target: P2pTarget } | { ok: false; reason: string } {
  if (!isRecord(block)) return { ok: false, reason: "not an object" };
  const id = block.kv_request_id;
  const baseUrl = peerBaseUrl(block.remote_host, block.remote_port);
  const missing = [
    ...(typeof id === "string" && id !== "" ? [] : ["kv_request_id"]),
    ...(baseUrl === undefined ? ["remote_host/remote_port"] : []),
  ];
  if (missing.length > 0 || baseUrl === undefined || typeof id !== "string") {
    return { ok: false, reason: `missing or invalid ${missing.join(", ")}` };
  }
  return {
    ok: true,
    target: {
      kvRequestId: id,
      baseUrl,
      host: block.remote_host,
      port: block.remote_port,
    },
  };
}

/** Reads the prompt's KV that a decode's `remote_prefiller` kept for it, waiting for the concurrent prefill. */
export async function pullFromPrefiller(
  job: Job,
  block: unknown,
): Promise<KvLoad> {
  const source = "offloading_connector.py:412";
  const read = readP2pTarget(block);
  if (!read.ok) {
    return failedLoad(job, {
      reason: `invalid remote_prefiller: ${read.reason}`,
    }, { source });
  }
  const { target } = read;
  const fields = transferFieldsOf(target);
  const answer = await pullFromPeer(`${target.baseUrl}${P2P_PULL_PATH}`, {
    mode: "request",
    kv_request_id: target.kvRequestId,
    prompt_hash: await hashPrompt(job.req.promptKey),
    wait_ms: job.engine.knobs.kvWaitTimeoutMs,
  }, job.signal);
  if (!answer.ok) {
    return failedLoad(job, { ...fields, reason: answer.reason }, { source });
  }
  const { numTokens } = answer;
  job.engine.logger.write(
    "DEBUG",
    source,
    `Loaded ${numTokens} tokens of KV for request ${job.meta.id} from P2P peer ${
      new URL(target.baseUrl).host
    } (kv_request_id=${target.kvRequestId})`,
  );
  return pulledLoad(job, fields, numTokens);
}

/**
 * Reads the prompt's cached prefix from a `remote_kv_source` peer. A peer
 * without it, or out of reach, only means the prefix is computed here.
 */
export async function pullFromSource(
  job: Job,
  block: unknown,
): Promise<KvLoad> {
  const { logger } = job.engine;
  const source = "offloading_connector.py:455";
  const read = readP2pTarget(block);
  if (!read.ok) {
    logger.write(
      "WARNING",
      source,
      `Ignoring invalid remote_kv_source for request ${job.meta.id}: ${read.reason}`,
    );
    return recomputedLoad(job, {
      reason: `invalid remote_kv_source: ${read.reason}`,
    });
  }
  const { target } = read;
  const fields = transferFieldsOf(target);
  const answer = await pullFromPeer(`${target.baseUrl}${P2P_PULL_PATH}`, {
    mode: "prefix",
    kv_request_id: target.kvRequestId,
    prompt_hash: await hashPrompt(job.req.promptKey),
  }, job.signal);
  if (!answer.ok) {
    const { reason } = answer;
    logger.write(
      "INFO",
      source,
      `No prefix from KV source ${
        new URL(target.baseUrl).host
      } for request ${job.meta.id}: ${reason}; computing it`,
    );
    return recomputedLoad(job, { ...fields, reason });
  }
  const { numTokens } = answer;
  logger.write(
    "DEBUG",
    source,
    `Loaded ${numTokens} cached prefix tokens for request ${job.meta.id} from KV source ${
      new URL(target.baseUrl).host
    }`,
  );
  return pulledLoad(job, fields, numTokens);
}
