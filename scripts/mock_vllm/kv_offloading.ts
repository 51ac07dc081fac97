/**
 * vLLM's OffloadingConnector with its P2P tier (llm-d `offloading`; delta
 * spec §3.6, §3.7). Both legs run at once, keyed by a `kv_request_id`:
 *
 * - prefill leg: `kv_transfer_params: {"remote_decoder": {"kv_request_id"}}`
 *   (a missing or empty id is refused with 400). Once the prompt is
 *   computed the engine keeps its KV under that id on its P2P listener
 *   (the mock's side channel, whose port is the `--p2p-connector-port`).
 * - decode leg: `kv_transfer_params: {"remote_prefiller": {"kv_request_id",
 *   "remote_host", "remote_port"}}`; the engine reads the KV from that
 *   listener, waiting up to `kvWaitTimeoutMs` for the concurrent prefill.
 *   It fails (policy "fail": 500) when nothing is kept under the id there,
 *   or the kept KV is of another prompt.
 * - `remote_kv_source: {"kv_request_id", "remote_host", "remote_port"}` on
 *   either leg, or alone on a decode-only request: the engine first reads
 *   the prompt's cached prefix from that peer (which serves what it
 *   computed before); a miss only means computing it.
 *
 * The keys before llm-d-router `b25dd663` (`decode`, `prefill`, `p2p`)
 * are not read: an engine of the other naming silently recomputes, which
 * the mock logs as a warning and records as a plain request.
 *
 * @module
 */

import type { Job } from "./engine.ts";
import { VllmError } from "./errors.ts";
import {
  type KvConnector,
  type KvContext,
  kvTransferParamsOf,
  NO_KV_HOOKS,
  NOTHING_LOADED,
} from "./kv_connector.ts";
import {
  type P2pEndpoint,
  pullFromPrefiller,
  pullFromSource,
} from "./kv_p2p.ts";
import { hashPrompt, type LocalKvStore } from "./kv_store.ts";
import { isRecord } from "./parse_request.ts";
import type { RequestRole } from "./types.ts";

const OLD_KEYS = ["prefill", "decode", "p2p"];

/** The `offloading` connector; `localStore` is its prefix cache, `p2p` its listener. */
export function createOffloadingConnector(
  ctx: KvContext,
  deps: { readonly localStore: LocalKvStore; readonly p2p: P2pEndpoint },
): KvConnector {
  const { localStore, p2p } = deps;
  return {
    ...NO_KV_HOOKS,
    name: "offloading",
    roleOf: (arrived) => roleOf(arrived.body),
    admit(job) {
      warnOldKeys(ctx, job);
      if (job.role === "prefill" && kvRequestIdOf(job) === undefined) {
        throw new VllmError(
          400,
          "kv_transfer_params.remote_decoder.kv_request_id must be a non-empty string",
          { param: "kv_transfer_params" },
        );
      }
    },
    load(job) {
      const params = paramsOf(job);
      if (job.role === "decode") {
        return pullFromPrefiller(job, params.remote_prefiller);
      }
      if (job.role === "prefill") {
        const id = kvRequestIdOf(job) as string;
        job.signal.addEventListener(
          "abort",
          () => p2p.drop(id, "the prefill was aborted"),
          { once: true },
        );
      }
      return params.remote_kv_source === undefined
        ? Promise.resolve(NOTHING_LOADED)
        : pullFromSource(job, params.remote_kv_source);
    },
    async computed(job) {
      const promptHash = await hashPrompt(job.req.promptKey);
      localStore.set(promptHash, job.req.promptTokens);
      if (job.role !== "prefill") return;
      const id = kvRequestIdOf(job) as string;
      p2p.keep(id, { promptHash, numTokens: job.req.promptTokens });
      job.record.kvHandOff = {
        connector: "offloading",
        key: id,
        numTokens: job.req.promptTokens,
      };
      ctx.logger.write(
        "INFO",
        "offloading_connector.py:388",
        `Kept KV of request ${job.meta.id} for P2P read (kv_request_id=${id}, ${job.req.promptTokens} tokens)`,
      );
    },
    serveSideChannel: (request, path) => p2p.serve(request, path),
    close: () => p2p.close(),
  };
}

function paramsOf(job: Job): Readonly<Record<string, unknown>> {
  return isRecord(job.req.kvParams) ? job.req.kvParams : {};
}

function roleOf(body: unknown): RequestRole {
  const params = kvTransferParamsOf(body);
  if (isRecord(params?.remote_prefiller)) return "decode";
  if (isRecord(params?.remote_decoder)) return "prefill";
  return "plain";
}

function kvRequestIdOf(job: Job): string | undefined {
  const decoder = paramsOf(job).remote_decoder;
  const id = isRecord(decoder) ? decoder.kv_request_id : undefined;
  return typeof id === "string" && id !== "" ? id : undefined;
}

function warnOldKeys(ctx: KvContext, job: Job): void {
  const old = OLD_KEYS.filter((key) => paramsOf(job)[key] !== undefined);
  if (old.length === 0) return;
  ctx.logger.write(
    "WARNING",
    "offloading_connector.py:301",
    `Ignoring kv_transfer_params keys ${
      old.map((k) => `"${k}"`).join(", ")
    } of request ${job.meta.id} (this engine reads remote_prefiller, remote_decoder, remote_kv_source)`,
  );
}
