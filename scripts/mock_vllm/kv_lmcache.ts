/**
 * LMCacheConnectorV1 (vllm-wire.md §3.2; reference spec §3.4). The prefill
 * leg is the client's body with its token limits at 1 and no
 * `kv_transfer_params`; the decode leg is the client's body unchanged. KV
 * travels through LMCache's shared backend, which the mock models with a
 * {@linkcode KvStore}: the decode of the same prompt finds it cached and
 * reports the hit (`usage.prompt_tokens_details.cached_tokens` when prompt
 * token details are on, and a log line); without a prior prefill it
 * computes every prompt token.
 *
 * @module
 */

import type { KvConnector, KvContext } from "./kv_connector.ts";
import type { KvStore } from "./kv_store.ts";
import { createStoreConnector } from "./kv_store_connector.ts";

/** The `lmcache` connector, reading and writing prompt KV through `store`. */
export function createLmcacheConnector(
  ctx: KvContext,
  store: KvStore,
): KvConnector {
  return createStoreConnector(
    { name: "lmcache", label: "LMCache", source: "lmcache_connector.py:133" },
    ctx,
    store,
  );
}
