/**
 * Wire names of the mock's KV protocols in one place: connector names, the
 * `kv_role` values, the request header vLLM reads for data parallelism and
 * the HTTP paths of the mock's KV side channel (the stand-ins for NIXL's ZMQ
 * handshake, SGLang's bootstrap server, Mooncake's bootstrap `/query`, the
 * OffloadingConnector's P2P listener and a shared KV store).
 *
 * @module
 */

/** KV connectors the mock speaks, named as the llm-d sidecars name them. */
export const KV_CONNECTOR_NAMES = [
  "nixlv2",
  "nixl",
  "lmcache",
  "sglang",
  "shared-storage",
  "mooncake",
  "offloading",
] as const;

/** One of {@linkcode KV_CONNECTOR_NAMES}. */
export type KvConnectorName = typeof KV_CONNECTOR_NAMES[number];

/** vLLM's `kv_transfer_config.kv_role` values (SGLang's `--disaggregation-mode` prefill/decode/none). */
export const KV_ROLES = ["kv_producer", "kv_consumer", "kv_both"] as const;

/** One of {@linkcode KV_ROLES}. */
export type KvRole = typeof KV_ROLES[number];

/** True for a known connector name. */
export function isKvConnectorName(value: unknown): value is KvConnectorName {
  return (KV_CONNECTOR_NAMES as readonly unknown[]).includes(value);
}

/** True for a known `kv_role`. */
export function isKvRole(value: unknown): value is KvRole {
  return (KV_ROLES as readonly unknown[]).includes(value);
}

/** Request header that pins a data-parallel rank (vLLM reads it on every generation route). */
export const DATA_PARALLEL_RANK_HEADER = "x-data-parallel-rank";

/** Side-channel path of a NIXL block pull (nixl and nixlv2). */
export const NIXL_PULL_PATH = "/_mock/nixl/pull";

/** Side-channel path a SGLang decode joins a `bootstrap_room` on. */
export const SGLANG_BOOTSTRAP_PATH = "/_mock/sglang/bootstrap";

/** Mooncake's bootstrap query, served where vLLM serves it (the bootstrap port). */
export const MOONCAKE_QUERY_PATH = "/query";

/** Side-channel path a Mooncake decode reads a `transfer_id` from. */
export const MOONCAKE_PULL_PATH = "/_mock/mooncake/pull";

/** Side-channel path of an OffloadingConnector P2P read (by `kv_request_id` or by cached prefix). */
export const P2P_PULL_PATH = "/_mock/p2p/pull";

/** Prefix of the shared KV store (`GET`/`POST <prefix><prompt hash>`), for lmcache and shared-storage. */
export const KV_STORE_PATH_PREFIX = "/_mock/kv_store/";
