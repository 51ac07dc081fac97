/**
 * Public types of the mock vLLM server.
 *
 * @module
 */

import type {
  EcConnectorName,
  EcRole,
  EcStore,
  EcTransferRecord,
} from "./ec_connector.ts";
import type { LocalKvStore } from "./kv_store.ts";
import type { KvConnectorName, KvRole } from "./kv_wire.ts";

export type { KvConnectorName, KvRole } from "./kv_wire.ts";
export type {
  EcConnectorName,
  EcRole,
  EcStore,
  EcTransferRecord,
} from "./ec_connector.ts";

/** What a decoder does when pulling KV from the prefiller fails (vLLM's `kv_load_failure_policy`). */
export type KvLoadFailurePolicy = "fail" | "recompute";

/**
 * Role a generation request played, as its connector reads it at arrival:
 * from `kv_transfer_params` (nixlv2, mooncake, offloading), from top-level
 * fields (legacy nixl), or from the engine's `kvRole` when requests carry no
 * marker (lmcache, shared-storage, sglang). "other" is a non-generation route.
 */
export type RequestRole = "prefill" | "decode" | "plain" | "other";

/** How a request ended from the mock's point of view. */
export type FinishedState = "completed" | "aborted" | "failed";

/** Options of {@linkcode createMockVllm}; every knob has a vLLM-like default. */
export interface MockVllmOptions {
  /** Label for log lines, e.g. "prefiller" or "decoder"; default "vllm". */
  name?: string;
  /** KV connector this engine speaks (vLLM's `--kv-transfer-config`); default "nixlv2". Fixed at start. */
  kvConnector?: KvConnectorName;
  /**
   * vLLM's `kv_role`: "kv_producer" (prefill engine), "kv_consumer" (decode
   * engine) or "kv_both" (default). Read by connectors whose requests carry
   * no role marker: sglang (prefill/decode server; "kv_both" ignores
   * bootstrap fields), lmcache and shared-storage (consumers do not store).
   * Fixed at start.
   */
  kvRole?: KvRole;
  /**
   * Store behind lmcache and shared-storage, and this engine's prefix cache;
   * give two mocks in one process the same {@linkcode createKvStore} object
   * to share it. Default: a store of its own. Fixed at start.
   */
  kvStore?: LocalKvStore;
  /**
   * Side-channel base URL of another mock whose store lmcache and
   * shared-storage use, for mocks in different processes; wins over
   * `kvStore` for them. Fixed at start.
   */
  kvStoreUrl?: string;
  /**
   * How long one side of a concurrent exchange waits for the other (SGLang
   * bootstrap and KV waits, Mooncake and offloading reads), in ms; default
   * 10000 (SGLang's and vLLM's are minutes; shorter here so a broken
   * exchange fails a test quickly).
   */
  kvWaitTimeoutMs?: number;
  /**
   * Data-parallel ranks of this engine; default 1. `X-Data-Parallel-Rank`
   * outside `[0, size)` is a 400, and Mooncake's `/query` lists one engine
   * id per rank. Fixed at start.
   */
  dataParallelSize?: number;
  /**
   * Encoder-cache connector (vLLM's `--ec-transfer-config`), for E/P/D; default none.
   * Fixed at start.
   */
  ecConnector?: EcConnectorName;
  /**
   * `ec_producer` (an encoder instance) or `ec_consumer` (prefill or decode
   * instance); default `ec_consumer`. Fixed at start.
   */
  ecRole?: EcRole;
  /** Where encoder outputs live; share one between producer and consumers. Fixed at start. */
  ecStore?: EcStore;
  /** Address to bind; default "127.0.0.1". */
  hostname?: string;
  /** Port to bind; default 0 (ephemeral). */
  port?: number;
  /** Served model name; default "Qwen/Qwen3-0.6B". */
  model?: string;
  /** NIXL engine id advertised as `remote_engine_id`; default a random uuid. */
  engineId?: string;
  /** Time to first token (prefill time) in ms; default 0. */
  ttftMs?: number;
  /** Inter-token latency in ms; default 0. */
  interTokenMs?: number;
  /** Replaces TTFT on a decode that pulled KV, in ms; default 0. */
  kvTransferMs?: number;
  /** How long a prefiller keeps issued blocks, in ms; default 30000 (vLLM's `kv_lease_duration`). */
  kvLeaseMs?: number;
  /** Decoder behaviour when a KV pull fails; default "fail" (vLLM's newest default). */
  kvLoadFailurePolicy?: KvLoadFailurePolicy;
  /** Probability (0..1) of an injected error per generation request; default 0. */
  failureRate?: number;
  /** Status of injected errors; default 503. */
  failureStatus?: number;
  /** Echo an `X-Request-Id` response header (vLLM's `--enable-request-id-headers`); default false. */
  enableRequestIdHeaders?: boolean;
  /** Like `--enable-prompt-tokens-details`; when false `usage.prompt_tokens_details` is null; default false. */
  promptTokensDetails?: boolean;
  /** Prompt tokens the local prefix cache holds for a request computed here (not loaded over KV); default 0. */
  prefixCachedTokens?: number;
  /** Natural length of the canned reply in tokens (it repeats as needed); default 12. */
  outputTokens?: number;
  /** Host advertised as `remote_host` (vLLM's `VLLM_NIXL_SIDE_CHANNEL_HOST`); default the bound hostname. */
  sideChannelHost?: string;
  /**
   * Serve the KV side channel on its own plain-HTTP port (0 = ephemeral) and advertise it as
   * `remote_port`; default: share the API port, or an ephemeral own port when `tls` is set.
   */
  sideChannelPort?: number;
  /** Serve HTTPS with these PEM strings. */
  tls?: { cert: string; key: string };
  /** Receives each vLLM-style log line; default: discard. */
  log?: (line: string) => void;
}

/**
 * What an engine did about KV computed elsewhere before its first token.
 * The `remote*` fields are as received, per connector:
 * - nixlv2: `remote_engine_id`, `remote_request_id`, `remote_host`, `remote_port`;
 * - nixl: the same top-level fields; `remoteRequestId` is the request's own id (the handle's name);
 * - sglang: `bootstrap_room` (as its digits), `bootstrap_host`, `bootstrap_port`;
 * - mooncake: `remote_engine_id`, `transfer_id`, `remote_bootstrap_addr` (as `remoteHost`);
 * - offloading and `remote_kv_source`: `kv_request_id`, `remote_host`, `remote_port`;
 * - lmcache, shared-storage: `remoteRequestId` is the prompt hash looked up.
 */
export interface KvTransferRecord {
  /** Connector that did the load. */
  connector: KvConnectorName;
  /** "pulled" on success, "recomputed" when nothing usable was there (params unusable, cache miss), "failed" when the load failed. */
  outcome: "pulled" | "recomputed" | "failed";
  /** Engine id the request named. */
  remoteEngineId?: unknown;
  /** Id naming the KV at its source. */
  remoteRequestId?: unknown;
  /** Host of the KV's source. */
  remoteHost?: unknown;
  /** Port of the KV's source. */
  remotePort?: unknown;
  /** NIXL: number of block ids in `remote_block_ids` (flattened). */
  numBlocks?: number;
  /** Tokens transferred (0 unless pulled). */
  numTokens: number;
  /** Why the pull failed or was skipped. */
  reason?: string;
  /** For outcome "failed": the policy applied ("recompute" means the request still succeeded). */
  failurePolicy?: KvLoadFailurePolicy;
}

/** What a prefill (or any engine that stores KV) left for a peer to read. */
export interface KvHandOffRecord {
  /** Connector that handed off. */
  readonly connector: KvConnectorName;
  /**
   * What a peer must name to get it: `remote_request_id` (nixlv2), the
   * request id (nixl), `bootstrap_room` (sglang), `transfer_id` (mooncake),
   * `kv_request_id` (offloading), the prompt hash (lmcache, shared-storage).
   */
  readonly key: string;
  /** Prompt tokens handed off. */
  readonly numTokens: number;
}

/** Fields known when a request arrives at the mock. */
export interface ArrivedRequest {
  /** HTTP method. */
  readonly method: string;
  /** URL pathname. */
  readonly path: string;
  /** URL search ("?a=b" or ""). */
  readonly search: string;
  /** Copy of the request headers. */
  readonly headers: Headers;
  /** Raw body text ("" when there was none). */
  readonly bodyText: string;
  /** Parsed JSON body, or undefined when the body is not JSON. */
  readonly body: unknown;
  /** Role as the mock's connector reads it (see {@linkcode RequestRole}). */
  readonly role: RequestRole;
}

/** One request as it arrived at the mock, plus what the mock did with it. */
export interface RecordedRequest extends ArrivedRequest {
  /** Arrival order, starting at 1. */
  readonly seq: number;
  /** Status the mock answered. */
  status?: number;
  /** What the engine did about KV computed elsewhere (absent when the request named none). */
  kvTransfer?: KvTransferRecord;
  /** What the engine left for a peer once the prompt was computed. */
  kvHandOff?: KvHandOffRecord;
  /** What the encoder-cache connector did (absent without one, or without multimodal items). */
  ecTransfer?: EcTransferRecord;
  /** Resolves when the body was fully sent, the client went away, or the mock broke the stream on purpose. */
  readonly finished: Promise<FinishedState>;
  /** The WebSocket session of an upgraded request (`/v1/realtime`). */
  webSocket?: WebSocketRecord;
}

/** A message the mock received on a WebSocket session. */
export type WebSocketMessage =
  | { readonly kind: "text"; readonly text: string }
  | { readonly kind: "binary"; readonly bytes: number };

/** What crossed one WebSocket session, as the mock saw it. */
export interface WebSocketRecord {
  /** Subprotocol the mock accepted ("" when none was offered). */
  readonly protocol: string;
  /** Messages received, in order. */
  readonly received: WebSocketMessage[];
  /** Close code the session ended with (1005 when the peer sent none, 1006 when it vanished); undefined while open. */
  closeCode: number | undefined;
  /** Close reason the session ended with. */
  closeReason: string | undefined;
}

/** A request served by this mock's KV side channel (a peer reading KV, joining a room, querying). */
export interface KvPullServed {
  /** Side-channel path, e.g. "/_mock/nixl/pull" or "/query". */
  readonly path: string;
  /** The key the peer asked for (handle, room, transfer id, kv_request_id, prompt hash). */
  readonly remoteRequestId: unknown;
  /** 200 on success, else the refusal status. */
  readonly status: number;
  /** Refusal reason, absent on success. */
  readonly reason?: string;
}

/** A running mock vLLM server. */
export interface MockVllm extends AsyncDisposable {
  /** Label used in log lines. */
  readonly name: string;
  /** Base URL, e.g. "http://127.0.0.1:41234". */
  readonly url: string;
  /** Bound hostname. */
  readonly hostname: string;
  /** Bound port. */
  readonly port: number;
  /** Port of the KV side channel (the API port unless a separate one runs): NIXL `remote_port`, SGLang/Mooncake bootstrap port, P2P port. */
  readonly sideChannelPort: number;
  /** Plain-HTTP base URL of the KV side channel, e.g. for another mock's `kvStoreUrl`. */
  readonly sideChannelUrl: string;
  /** KV connector this mock speaks. */
  readonly kvConnector: KvConnectorName;
  /** NIXL engine id advertised as `remote_engine_id`. */
  readonly engineId: string;
  /** Every request received (KV side-channel pulls excluded), in order. */
  readonly requests: readonly RecordedRequest[];
  /** Every side-channel request this mock served, in order. */
  readonly kvPulls: readonly KvPullServed[];
  /** Every log line emitted. */
  readonly logs: readonly string[];
  /** Resolves with the first already-recorded or future request matching the predicate. */
  nextRequest(
    predicate?: (r: RecordedRequest) => boolean,
  ): Promise<RecordedRequest>;
  /** Changes knobs at runtime; throws on options fixed at start (hostname, port, tls, sideChannelPort, kvConnector, kvRole, kvStore, kvStoreUrl, dataParallelSize). */
  setConfig(patch: Partial<MockVllmOptions>): void;
  /** Makes `/health` answer 200 (true) or 503 (false). */
  setHealthy(healthy: boolean): void;
  /** Aborts in-flight streams, then shuts the server down; idempotent. */
  close(): Promise<void>;
}
