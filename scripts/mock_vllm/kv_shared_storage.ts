/**
 * vLLM's ExampleConnector, formerly SharedStorageConnector (vllm-wire.md
 * §3.4; reference spec §3.5, delta §3.3). The prefiller writes the prompt's
 * KV to a shared store keyed by a hash of the prompt; the decoder finds it
 * by hashing its own prompt. No `kv_transfer_params` travel.
 *
 * With `cache_hit_threshold` (0..1, vLLM RFC #24256) in a request, the
 * engine compares the share of prompt tokens it found cached with the
 * threshold before computing anything, and below it finishes at once with
 * `finish_reason: "cache_threshold"`, no tokens and `completion_tokens: 0`
 * (JSON), or a role chunk then a chunk with that finish reason (SSE) — the
 * answer the llm-d sidecar's decode-first flow watches for. That check is
 * the engine's (engine.ts), so it applies under every connector.
 *
 * @module
 */

import type { KvConnector, KvContext } from "./kv_connector.ts";
import type { KvStore } from "./kv_store.ts";
import { createStoreConnector } from "./kv_store_connector.ts";

/** The `shared-storage` connector, reading and writing prompt KV through `store`. */
export function createSharedStorageConnector(
  ctx: KvContext,
  store: KvStore,
): KvConnector {
  return createStoreConnector(
    {
      name: "shared-storage",
      label: "ExampleConnector",
      source: "example_connector.py:254",
    },
    ctx,
    store,
  );
}
