/**
 * What LMCache and the ExampleConnector (shared storage) have in common: no
 * field of the request names a peer. The prefiller writes the prompt's KV to
 * a store both engines reach; any later request with the same prompt finds
 * it there. So the proof of a P/D exchange is in the store, not the body:
 * a decode that arrives before its prefill finished, or whose prefill went
 * elsewhere or carried another prompt, computes the whole prompt.
 *
 * `kv_role` decides who writes: producers and `kv_both` engines save what
 * they computed, consumers only read.
 *
 * @module
 */

import type { Job } from "./engine.ts";
import {
  type KvConnector,
  type KvContext,
  NO_KV_HOOKS,
  pulledLoad,
  recomputedLoad,
  roleOfKvRole,
} from "./kv_connector.ts";
import { hashPrompt, type KvStore } from "./kv_store.ts";
import type { KvConnectorName } from "./kv_wire.ts";

/** How one store-backed connector names itself in logs. */
export interface StoreConnectorSpec {
  readonly name: KvConnectorName;
  /** Product name in log lines ("LMCache", "ExampleConnector"). */
  readonly label: string;
  /** vLLM-style `file.py:line` of its log lines. */
  readonly source: string;
}

/** Builds a connector that reads and writes prompt KV through `store`. */
export function createStoreConnector(
  spec: StoreConnectorSpec,
  ctx: KvContext,
  store: KvStore,
): KvConnector {
  return {
    ...NO_KV_HOOKS,
    name: spec.name,
    roleOf: () => roleOfKvRole(ctx.kvRole),
    load: (job) => lookUp(spec, store, job),
    computed: (job) =>
      ctx.kvRole === "kv_consumer" ? Promise.resolve() : save(spec, store, job),
  };
}

async function lookUp(spec: StoreConnectorSpec, store: KvStore, job: Job) {
  const { logger } = job.engine;
  const key = await hashPrompt(job.req.promptKey);
  const found = await store.lookup(key, job.signal);
  if (!found.ok || found.value === undefined) {
    const reason = found.ok
      ? `prompt not in ${spec.label} store`
      : `${spec.label} store unreachable: ${found.reason}`;
    logger.write(
      found.ok ? "DEBUG" : "WARNING",
      spec.source,
      `${spec.label} miss for request ${job.meta.id}: ${reason}; computing ${job.req.promptTokens} prompt tokens`,
    );
    return recomputedLoad(job, { remoteRequestId: key, reason });
  }
  const numTokens = Math.min(found.value, job.req.promptTokens);
  logger.write(
    "INFO",
    spec.source,
    `${spec.label} hit for request ${job.meta.id}: ${numTokens} of ${job.req.promptTokens} prompt tokens cached in ${store.location}`,
  );
  return pulledLoad(job, { remoteRequestId: key }, numTokens);
}

async function save(
  spec: StoreConnectorSpec,
  store: KvStore,
  job: Job,
): Promise<void> {
  const { logger } = job.engine;
  const key = await hashPrompt(job.req.promptKey);
  const saved = await store.save(key, job.req.promptTokens, job.signal);
  if (!saved.ok) {
    logger.write(
      "WARNING",
      spec.source,
      `${spec.label} could not store the KV of request ${job.meta.id}: ${saved.reason}`,
    );
    return;
  }
  job.record.kvHandOff = {
    connector: spec.name,
    key,
    numTokens: job.req.promptTokens,
  };
  logger.write(
    "INFO",
    spec.source,
    `${spec.label} stored ${job.req.promptTokens} prompt tokens of request ${job.meta.id} in ${store.location}`,
  );
}
