/**
 * @module
 * Every wire name the sidecar reads or writes: headers, JSON fields, paths.
 * Declared once so a spelling can only be wrong in one place.
 */

/** Prefill target(s), `host:port` or a comma-separated list (llm-d EPP sets it). */
export const HEADER_PREFILLER_HOST_PORT = "x-prefiller-host-port";
/** Legacy prefill target header of the original routing sidecar. */
export const HEADER_PREFILLER_URL = "x-prefiller-url";
/** Request id vLLM uses as the base of its response id; shared by both legs. */
export const HEADER_REQUEST_ID = "x-request-id";
/**
 * Response header saying the answer came from the local decoder alone after
 * the prefill failed (`-prefill-failure-policy=decode`): `decode-only; cause=<code>`.
 */
export const HEADER_PD_FALLBACK = "x-pd-fallback";
/** Appended with the client address by every proxy hop. */
export const HEADER_FORWARDED_FOR = "x-forwarded-for";
/** A peer holding cached prefix KV the engines may pull over P2P (llm-d EPP's p2p-source-producer). */
export const HEADER_KV_CACHE_SOURCE = "x-kv-cache-source-host-port";
/** Data-parallel rank a vLLM frontend pins a request to (mooncake's prefill leg). */
export const HEADER_DATA_PARALLEL_RANK = "x-data-parallel-rank";
/** Deprecated data-parallel rank selector, `POD_IP:port+r`; read on rank 0, forwarded as is. */
export const HEADER_DATA_PARALLEL_HOST_PORT = "x-data-parallel-host-port";

/** Encoder targets of the E/P/D encoder stage, `host:port` list (llm-d EPP sets it). */
export const HEADER_ENCODER_HOSTS_PORTS = "x-encoder-hosts-ports";

/** Routing headers consumed by the sidecar and never forwarded. */
export const ROUTING_HEADERS: readonly string[] = [
  HEADER_PREFILLER_HOST_PORT,
  HEADER_PREFILLER_URL,
  HEADER_KV_CACHE_SOURCE,
  HEADER_ENCODER_HOSTS_PORTS,
];

/**
 * Client headers not copied onto the P/D legs: the legs carry new JSON bodies
 * and the request id the connector sets; no accept-encoding, since the
 * sidecar reads the prefill answer itself and wants it uncompressed; the
 * sidecar answers `100 Continue` itself.
 */
export const OMITTED_ON_PD_LEGS: readonly string[] = [
  ...ROUTING_HEADERS,
  "content-length",
  "content-type",
  "accept-encoding",
  "expect",
  HEADER_REQUEST_ID,
];

/** Request and response field carrying the KV-connector handshake. */
export const FIELD_KV_TRANSFER_PARAMS = "kv_transfer_params";
/** Whether the answer is streamed as SSE. */
export const FIELD_STREAM = "stream";
/** Streaming options; vLLM rejects them unless `stream` is true. */
export const FIELD_STREAM_OPTIONS = "stream_options";
/** Token limit of the completions and chat APIs (deprecated in chat). */
export const FIELD_MAX_TOKENS = "max_tokens";
/** Token limit of the chat API; wins over `max_tokens` in vLLM. */
export const FIELD_MAX_COMPLETION_TOKENS = "max_completion_tokens";
/** Token limit of the Responses API. */
export const FIELD_MAX_OUTPUT_TOKENS = "max_output_tokens";
/** The generate API's member holding its sampling options, token limits included. */
export const FIELD_SAMPLING_PARAMS = "sampling_params";
/** Lower token bound of vLLM's completions, chat and generate APIs. */
export const FIELD_MIN_TOKENS = "min_tokens";
/** Token counts of an answer (vLLM's `UsageInfo`). */
export const FIELD_USAGE = "usage";
/** `usage` member detailing the prompt tokens; null unless vLLM runs with `--enable-prompt-tokens-details`. */
export const FIELD_PROMPT_TOKENS_DETAILS = "prompt_tokens_details";
/** The Responses API's `usage` member detailing the input tokens (always an object in vLLM). */
export const FIELD_INPUT_TOKENS_DETAILS = "input_tokens_details";
/** Member of a Responses API stream event holding the response, with its usage at the end. */
export const FIELD_RESPONSE = "response";
/** Prompt tokens found in the prefix cache. */
export const FIELD_CACHED_TOKENS = "cached_tokens";
/**
 * `kv_transfer_params` keys carrying the prefiller's cached-token count to
 * the decoder, which then reports it itself (vLLM PR #54222 and its
 * forerunners #46357, #46898, which read both spellings).
 */
export const REMOTE_CACHED_TOKENS_KEYS: readonly string[] = [
  "remote_num_cached_tokens",
  "remote_cached_tokens",
];
/** Generated choices of an OpenAI answer or stream chunk. */
export const FIELD_CHOICES = "choices";
/** Why a choice ended; `cache_threshold` asks for a prefill (vLLM RFC #24256). */
export const FIELD_FINISH_REASON = "finish_reason";
/** Fraction of the prompt that must be cached for the decoder to proceed (vLLM RFC #24256). */
export const FIELD_CACHE_HIT_THRESHOLD = "cache_hit_threshold";
/** The finish reason of a decode that declined for lack of cached prompt. */
export const FINISH_REASON_CACHE_THRESHOLD = "cache_threshold";
/** Encoder-cache handshake: what the encoders answer and the prefill and decode read. */
export const FIELD_EC_TRANSFER_PARAMS = "ec_transfer_params";
/** The chat conversation. */
export const FIELD_MESSAGES = "messages";
/** Number of choices to generate. */
export const FIELD_N = "n";
/** vLLM chat: continue the final assistant message instead of starting a new one. */
export const FIELD_CONTINUE_FINAL_MESSAGE = "continue_final_message";
/** vLLM chat: append the assistant turn's opening; must be false with `continue_final_message`. */
export const FIELD_ADD_GENERATION_PROMPT = "add_generation_prompt";
/** Legacy NIXL (v1) top-level flag asking the prefiller to keep KV for a remote decode. */
export const FIELD_DO_REMOTE_DECODE = "do_remote_decode";
/** Legacy NIXL (v1) top-level flag telling the decoder to pull KV. */
export const FIELD_DO_REMOTE_PREFILL = "do_remote_prefill";
/** Legacy NIXL (v1) top-level fields the prefiller answers and the decoder reads. */
export const NIXL_V1_REMOTE_FIELDS: readonly string[] = [
  "remote_block_ids",
  "remote_engine_id",
  "remote_host",
  "remote_port",
];
/** SGLang PD: host of the prefiller's bootstrap server. */
export const FIELD_BOOTSTRAP_HOST = "bootstrap_host";
/** SGLang PD: port of the prefiller's bootstrap server. */
export const FIELD_BOOTSTRAP_PORT = "bootstrap_port";
/** SGLang PD: the id on which a prefill and its decode meet. */
export const FIELD_BOOTSTRAP_ROOM = "bootstrap_room";
/** Path of the Mooncake bootstrap server's engine-id query. */
export const PATH_MOONCAKE_QUERY = "/query";

/** Responses API: the earlier response a turn continues, stored only by the engine that produced it. */
export const FIELD_PREVIOUS_RESPONSE_ID = "previous_response_id";
/** Responses API: answer at once with a queued response, run the request where it was sent. */
export const FIELD_BACKGROUND = "background";

/** Path of the chat completions API. */
export const PATH_CHAT_COMPLETIONS = "/v1/chat/completions";
/** Path of the completions API. */
export const PATH_COMPLETIONS = "/v1/completions";
/** Path of the Responses API. */
export const PATH_RESPONSES = "/v1/responses";
/** Path of Anthropic's Messages API, as vLLM serves it. */
export const PATH_MESSAGES = "/v1/messages";
/** Path of vLLM's token-in generate API. */
export const PATH_GENERATE = "/inference/v1/generate";
/** Liveness path answered by the sidecar itself. */
export const PATH_HEALTH = "/health";
