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
  NOTHING_LOADED,
  recordTransfer,
  type SideChannelAnswer,
} from "./kv_connector.ts";
import { hashPrompt, type LocalKvStore } from "./kv_store.ts";
import { P2P_PULL_PATH } from "./kv_wire.ts";
import { isRecord, parseJsonBody } from "./parse_request.ts";
import { callPeer, countOf, peerBaseUrl, refusalOf } from "./peer.ts";
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
    drop(id, reason) {
      if (kept.peek(id) === undefined) kept.fail(id, 410, reason);
    },
    serve(request, path) {
      if (path !== P2P_PULL_PATH || request.method !== "POST") return undefined;
      return request.text().then((text) => {
        const parsed = parseJsonBody(text);
        const pull = parsed.ok && isRecord(parsed.value) ? parsed.value : {};
        return answerPull(pull, { kept, localStore, signal: request.signal });
      });
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
  if (typeof hash !== "string") return refuse(400, "invalid pull request", id);
  if (pull.mode === "prefix") {
    const numTokens = ctx.localStore.get(hash);
    return numTokens === undefined
      ? refuse(404, "no cached prefix for this prompt", id)
      : { status: 200, body: { num_tokens: numTokens }, key: id };
  }
  if (typeof id !== "string" || id === "") {
    return refuse(400, "invalid pull request", id);
  }
  const waitMs = countOf(pull, "wait_ms");
  const outcome = await ctx.kept.wait(id, waitMs, ctx.signal);
  if (!outcome.ok) {
    return refuse(
      outcome.status === 504 ? 404 : outcome.status,
      outcome.status === 504
        ? `unknown kv_request_id (no prefill kept it within ${waitMs} ms)`
        : outcome.reason,
      id,
    );
  }
  if (outcome.value.promptHash !== hash) {
    return refuse(
      409,
      "prompt mismatch: the prefill computed another prompt",
      id,
    );
  }
  return {
    status: 200,
    body: { num_tokens: outcome.value.numTokens },
    key: id,
  };
}

/** What a P2P block in `kv_transfer_params` must carry (`remote_prefiller` or `remote_kv_source`). */
interface P2pTarget {
  readonly kvRequestId: string;
  readonly baseUrl: string;
  readonly host: unknown;
  readonly port: unknown;
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
  const fields = {
    remoteRequestId: target.kvRequestId,
    remoteHost: target.host,
    remotePort: target.port,
  };
  const answer = await callPeer(`${target.baseUrl}${P2P_PULL_PATH}`, {
    mode: "request",
    kv_request_id: target.kvRequestId,
    prompt_hash: await hashPrompt(job.req.promptKey),
    wait_ms: job.engine.knobs.kvWaitTimeoutMs,
  }, job.signal);
  if (!answer.ok || answer.status !== 200) {
    const reason = answer.ok ? refusalOf(answer) : answer.reason;
    return failedLoad(job, { ...fields, reason }, { source });
  }
  const numTokens = countOf(answer.body, "num_tokens");
  recordTransfer(job, { ...fields, outcome: "pulled", numTokens });
  job.engine.logger.write(
    "DEBUG",
    source,
    `Loaded ${numTokens} tokens of KV for request ${job.meta.id} from P2P peer ${
      new URL(target.baseUrl).host
    } (kv_request_id=${target.kvRequestId})`,
  );
  return { ok: true, cachedTokens: numTokens, transferred: true };
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
    recordTransfer(job, {
      outcome: "recomputed",
      numTokens: 0,
      reason: `invalid remote_kv_source: ${read.reason}`,
    });
    return NOTHING_LOADED;
  }
  const { target } = read;
  const fields = {
    remoteRequestId: target.kvRequestId,
    remoteHost: target.host,
    remotePort: target.port,
  };
  const answer = await callPeer(`${target.baseUrl}${P2P_PULL_PATH}`, {
    mode: "prefix",
    kv_request_id: target.kvRequestId,
    prompt_hash: await hashPrompt(job.req.promptKey),
  }, job.signal);
  if (!answer.ok || answer.status !== 200) {
    const reason = answer.ok ? refusalOf(answer) : answer.reason;
    logger.write(
      "INFO",
      source,
      `No prefix from KV source ${
        new URL(target.baseUrl).host
      } for request ${job.meta.id}: ${reason}; computing it`,
    );
    recordTransfer(job, {
      ...fields,
      outcome: "recomputed",
      numTokens: 0,
      reason,
    });
    return NOTHING_LOADED;
  }
  const numTokens = countOf(answer.body, "num_tokens");
  recordTransfer(job, { ...fields, outcome: "pulled", numTokens });
  logger.write(
    "DEBUG",
    source,
    `Loaded ${numTokens} cached prefix tokens for request ${job.meta.id} from KV source ${
      new URL(target.baseUrl).host
    }`,
  );
  return { ok: true, cachedTokens: numTokens, transferred: true };
}

function refuse(
  status: number,
  reason: string,
  key: unknown,
): SideChannelAnswer {
  return { status, body: { reason }, key, reason };
}
