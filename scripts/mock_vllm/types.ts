/**
 * Public types of the mock vLLM server.
 *
 * @module
 */

/** What a decoder does when pulling KV from the prefiller fails (vLLM's `kv_load_failure_policy`). */
export type KvLoadFailurePolicy = "fail" | "recompute";

/** Role a request played, derived from its `kv_transfer_params`. */
export type RequestRole = "prefill" | "decode" | "plain" | "other";

/** How a request ended from the mock's point of view. */
export type FinishedState = "completed" | "aborted" | "failed";

/** Options of {@linkcode createMockVllm}; every knob has a vLLM-like default. */
export interface MockVllmOptions {
  /** Label for log lines, e.g. "prefiller" or "decoder"; default "vllm". */
  name?: string;
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

/** What a decoder did about the KV cache it was told to pull. */
export interface KvTransferRecord {
  /** "pulled" on success, "recomputed" when the params were unusable, "failed" when the pull failed. */
  outcome: "pulled" | "recomputed" | "failed";
  /** `remote_engine_id` as received. */
  remoteEngineId: unknown;
  /** `remote_request_id` as received. */
  remoteRequestId: unknown;
  /** `remote_host` as received. */
  remoteHost: unknown;
  /** `remote_port` as received. */
  remotePort: unknown;
  /** Number of block ids in `remote_block_ids` (flattened). */
  numBlocks: number;
  /** Tokens transferred (0 unless pulled). */
  numTokens: number;
  /** Why the pull failed or was skipped. */
  reason?: string;
  /** For outcome "failed": the policy applied ("recompute" means the request still succeeded). */
  failurePolicy?: KvLoadFailurePolicy;
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
  /** prefill: do_remote_decode true; decode: do_remote_prefill true; plain: other generation; other: non-generation route. */
  readonly role: RequestRole;
}

/** One request as it arrived at the mock, plus what the mock did with it. */
export interface RecordedRequest extends ArrivedRequest {
  /** Arrival order, starting at 1. */
  readonly seq: number;
  /** Status the mock answered. */
  status?: number;
  /** For role "decode" with `do_remote_prefill`: what happened when it "pulled" the KV. */
  kvTransfer?: KvTransferRecord;
  /** Resolves when the body was fully sent, the client went away, or the mock broke the stream on purpose. */
  readonly finished: Promise<FinishedState>;
}

/** A pull served by a prefiller's KV side channel. */
export interface KvPullServed {
  /** `remote_request_id` the decoder asked for. */
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
  /** Port advertised as `remote_port` (the API port unless a separate side channel runs). */
  readonly sideChannelPort: number;
  /** NIXL engine id advertised as `remote_engine_id`. */
  readonly engineId: string;
  /** Every request received (KV side-channel pulls excluded), in order. */
  readonly requests: readonly RecordedRequest[];
  /** Every KV pull this mock served as a prefiller, in order. */
  readonly kvPulls: readonly KvPullServed[];
  /** Every log line emitted. */
  readonly logs: readonly string[];
  /** Resolves with the first already-recorded or future request matching the predicate. */
  nextRequest(
    predicate?: (r: RecordedRequest) => boolean,
  ): Promise<RecordedRequest>;
  /** Changes knobs at runtime; throws on options that need a restart (hostname, port, tls, sideChannelPort). */
  setConfig(patch: Partial<MockVllmOptions>): void;
  /** Makes `/health` answer 200 (true) or 503 (false). */
  setHealthy(healthy: boolean): void;
  /** Aborts in-flight streams, then shuts the server down; idempotent. */
  close(): Promise<void>;
}
