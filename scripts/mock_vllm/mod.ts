/**
 * Mock vLLM server: speaks vLLM's OpenAI-compatible wire format (plus the
 * Anthropic Messages API and the token-in `/inference/v1/generate`) and a
 * stand-in for the KV transfer of every connector an llm-d sidecar drives,
 * so tests and demos can run P/D disaggregation without GPUs. Imports
 * nothing from the sidecar's `src/`, so a misreading of a protocol there
 * cannot agree with itself here.
 *
 * Each mock speaks one KV connector, chosen at start with `kvConnector`
 * (CLI `--kv-connector`), as vLLM's `--kv-transfer-config` does; nothing
 * is guessed from requests. Engine-to-engine traffic goes over the mock's
 * KV side channel (the API port, or `sideChannelPort`), which is also the
 * port a sidecar must be told for SGLang's and Mooncake's bootstrap and the
 * offloading P2P port. What each connector expects (P = prefill leg, D =
 * decode leg; "refused" = what a broken sidecar gets):
 *
 * - `nixlv2` (default). P: `kv_transfer_params.do_remote_decode: true`; its
 *   JSON answer carries `kv_transfer_params` (newest vLLM shape,
 *   `remote_block_ids: [[…]]`, `remote_request_id: "<id>-<8 chars>"`, …).
 *   D: that object verbatim with `do_remote_prefill: true`; D pulls the
 *   blocks from `remote_host:remote_port`. Refused (500, or an SSE error
 *   frame): unknown, expired (`kvLeaseMs`), already-pulled or edited
 *   handles, another engine id. Missing fields: D computes the prompt. A
 *   literal `true` is needed: `do_remote_prefill: false` is a plain request.
 *   `remote_kv_source` in `kv_transfer_params` (P, or a decode-only request)
 *   reads the cached prefix from that peer first.
 * - `nixl` (legacy). P: top-level `do_remote_decode: true`; answer has
 *   top-level `remote_block_ids` (flat), `remote_engine_id`, `remote_host`,
 *   `remote_port`. D: top-level `do_remote_prefill: true` plus those four,
 *   and the same `X-Request-Id` as P (the blocks are named by it).
 * - `lmcache`. P: the client body with limits at 1; D: the client body.
 *   The prompt's KV goes through a store (`kvStore`, shared in-process, or
 *   `kvStoreUrl`, another mock's side channel); D reports the hit in
 *   `usage.prompt_tokens_details.cached_tokens` and a log line; without a
 *   prior prefill of the same prompt it computes everything.
 * - `shared-storage`. As lmcache; plus `cache_hit_threshold` (any
 *   connector): below it the answer is `finish_reason: "cache_threshold"`
 *   with no tokens (JSON), or a role chunk then that finish chunk (SSE).
 * - `sglang`. P and D (`kvRole` kv_producer / kv_consumer) get the same
 *   body with `bootstrap_host`, `bootstrap_port` (P's side-channel port)
 *   and `bootstrap_room`, concurrently. Refused: missing bootstrap fields
 *   (400), a reused room (400), differing bodies, or a room that gets no
 *   prefill (D fails after `kvWaitTimeoutMs`).
 * - `mooncake`. `GET /query` on P's side channel: `{"0": {"engine_id"}}`
 *   (one per `dataParallelSize` rank, `<id>_dp<r>` when > 1). P:
 *   `{do_remote_decode: true, do_remote_prefill: false, transfer_id}` and
 *   `X-Data-Parallel-Rank`; D: `{do_remote_prefill: true,
 *   do_remote_decode: false, transfer_id, remote_bootstrap_addr:
 *   "http://host:port", remote_engine_id}`, concurrently. Refused: P
 *   without `transfer_id` (400), D naming another transfer or engine id.
 * - `offloading`. P: `{remote_decoder: {kv_request_id}}`; D:
 *   `{remote_prefiller: {kv_request_id, remote_host, remote_port}}` naming
 *   P's side-channel port, concurrently. Refused: D naming a peer that kept
 *   nothing under that id; the pre-rename keys are ignored (logged).
 *
 * Encoder stage (`ecConnector`, `ecRole`, `ecStore`; see `ec_connector.ts`):
 * an `ec_producer` encodes the multimodal items of a chat request and, with
 * `ec-nixl`, answers `ec_transfer_params` naming each item's hash; an
 * `ec_consumer` answers 500 unless it can load every item's output.
 * `continue_final_message` continues the canned reply where the final
 * assistant message stops (see `continuation.ts`).
 *
 * What happened is recorded per request (`role`, `kvTransfer`,
 * `kvHandOff`, `ecTransfer`) and per side-channel call (`kvPulls`), for
 * tests to assert.
 *
 * @example
 * ```ts
 * await using prefill = await createMockVllm({ name: "prefiller" });
 * await using decode = await createMockVllm({ name: "decoder" });
 * const kvStore = createKvStore();
 * await using p = await createMockVllm({ kvConnector: "lmcache", kvRole: "kv_producer", kvStore });
 * await using d = await createMockVllm({ kvConnector: "lmcache", kvRole: "kv_consumer", kvStore });
 * ```
 *
 * @module
 */

export { createMockVllm } from "./server.ts";
export { createKvStore, type KvStore, type LocalKvStore } from "./kv_store.ts";
export { createEcStore, EC_CONNECTOR_NAMES } from "./ec_connector.ts";
export { KV_CONNECTOR_NAMES, KV_ROLES } from "./kv_wire.ts";
export type {
  EcConnectorName,
  EcRole,
  EcStore,
  EcTransferRecord,
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
