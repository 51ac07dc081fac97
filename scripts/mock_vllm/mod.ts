/**
 * Mock vLLM server: speaks vLLM's OpenAI-compatible wire format and a
 * stand-in for NIXL's KV transfer, so tests and demos can run P/D
 * disaggregation without GPUs. Imports nothing from the sidecar's `src/`,
 * so a misreading of the protocol there cannot agree with itself here.
 *
 * @example
 * ```ts
 * await using prefill = await createMockVllm({ name: "prefiller" });
 * await using decode = await createMockVllm({ name: "decoder" });
 * ```
 *
 * @module
 */

export { createMockVllm } from "./server.ts";
export { createKvStore, type KvStore, type LocalKvStore } from "./kv_store.ts";
export { KV_CONNECTOR_NAMES, KV_ROLES } from "./kv_wire.ts";
export type {
  FinishedState,
  KvConnectorName,
  KvHandOffRecord,
  KvLoadFailurePolicy,
  KvPullServed,
  KvRole,
  KvTransferRecord,
  MockVllm,
  MockVllmOptions,
  RecordedRequest,
  RequestRole,
} from "./types.ts";
