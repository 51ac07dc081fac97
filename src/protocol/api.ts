/**
 * @module
 * The generation APIs the sidecar disaggregates, and what differs between
 * them on the wire: which fields limit the number of generated tokens, where
 * they live, where the answer reports cached prompt tokens, and the shape of
 * the errors the API's clients expect.
 */

import {
  FIELD_INPUT_TOKENS_DETAILS,
  FIELD_MAX_COMPLETION_TOKENS,
  FIELD_MAX_OUTPUT_TOKENS,
  FIELD_MAX_TOKENS,
  FIELD_MIN_TOKENS,
  FIELD_PROMPT_TOKENS_DETAILS,
  FIELD_RESPONSE,
  FIELD_SAMPLING_PARAMS,
  PATH_CHAT_COMPLETIONS,
  PATH_COMPLETIONS,
  PATH_GENERATE,
  PATH_MESSAGES,
  PATH_RESPONSES,
} from "./fields.ts";

/**
 * A generation API served by vLLM: the OpenAI-compatible ones, Anthropic's
 * Messages API, and vLLM's token-in generate API.
 */
export type ApiKind =
  | "chat"
  | "completions"
  | "responses"
  | "messages"
  | "generate";

/** Every generation API, in route order. */
export const API_KINDS: readonly ApiKind[] = [
  "chat",
  "completions",
  "responses",
  "messages",
  "generate",
];

/** Paths of the generation APIs, the routes the P/D handler takes. */
export const API_PATHS: Readonly<Record<ApiKind, string>> = {
  chat: PATH_CHAT_COMPLETIONS,
  completions: PATH_COMPLETIONS,
  responses: PATH_RESPONSES,
  messages: PATH_MESSAGES,
  generate: PATH_GENERATE,
};

/** Where an API's token limits live and which of them the prefill leg sets to 1. */
export interface TokenLimits {
  /** Member holding the limits (`sampling_params`); top level when undefined. */
  readonly container: string | undefined;
  /** Fields set to 1 on the prefill leg, added when absent. */
  readonly capped: readonly string[];
}

/**
 * Token limits per API (delta §2.4). Chat and completions get
 * `max_completion_tokens` as well as `max_tokens` (llm-d-routing-sidecar #58:
 * vLLM lets `max_completion_tokens` win, so capping only `max_tokens` made
 * prefill generate the whole answer); `min_tokens` is capped too, since a
 * client's `min_tokens` above 1 would make vLLM reject the prefill. The
 * Messages API has one limit, `max_tokens` (vLLM's Anthropic model ignores
 * other keys, so the Go sidecar's chat caps there were inert). The generate
 * API keeps its limits in `sampling_params`.
 */
const TOKEN_LIMITS: Readonly<Record<ApiKind, TokenLimits>> = {
  chat: {
    container: undefined,
    capped: [FIELD_MAX_TOKENS, FIELD_MAX_COMPLETION_TOKENS, FIELD_MIN_TOKENS],
  },
  completions: {
    container: undefined,
    capped: [FIELD_MAX_TOKENS, FIELD_MAX_COMPLETION_TOKENS, FIELD_MIN_TOKENS],
  },
  responses: { container: undefined, capped: [FIELD_MAX_OUTPUT_TOKENS] },
  messages: { container: undefined, capped: [FIELD_MAX_TOKENS] },
  generate: {
    container: FIELD_SAMPLING_PARAMS,
    capped: [FIELD_MAX_TOKENS, FIELD_MIN_TOKENS],
  },
};

/** Where the token limits of `api` live and which the prefill leg caps. */
export function tokenLimitsOf(api: ApiKind): TokenLimits {
  return TOKEN_LIMITS[api];
}

/** Where an API's answers report the prompt tokens found in the prefix cache. */
export interface CachedTokensPlace {
  /** Member of `usage` holding `cached_tokens`. */
  readonly details: string;
  /** Member of a stream event holding the `usage`; at the top level when undefined. */
  readonly streamedIn: string | undefined;
  /** Whether every stream reports usage, whatever `stream_options` says. */
  readonly alwaysStreamed: boolean;
}

/** vLLM's `UsageInfo`: `usage.prompt_tokens_details`, streamed in its own chunk when asked for. */
export const PROMPT_TOKENS_DETAILS_PLACE: CachedTokensPlace = {
  details: FIELD_PROMPT_TOKENS_DETAILS,
  streamedIn: undefined,
  alwaysStreamed: false,
};

/**
 * Where each API reports cached tokens. The Responses API's usage has
 * `input_tokens_details` (vLLM fills it from the same engine count, so a
 * decoder's is inflated by the transferred prompt just the same) and its
 * stream carries it in `response.completed`'s `response`, always. vLLM's
 * Messages API never fills `cache_read_input_tokens` (its usage has only
 * the token counts), so there is nothing to correct; the Go sidecar's
 * injection of `prompt_tokens_details` there was wrong (delta §11 item 9).
 */
const CACHED_TOKENS_PLACES: Readonly<
  Record<ApiKind, CachedTokensPlace | undefined>
> = {
  chat: PROMPT_TOKENS_DETAILS_PLACE,
  completions: PROMPT_TOKENS_DETAILS_PLACE,
  responses: {
    details: FIELD_INPUT_TOKENS_DETAILS,
    streamedIn: FIELD_RESPONSE,
    alwaysStreamed: true,
  },
  messages: undefined,
  generate: PROMPT_TOKENS_DETAILS_PLACE,
};

/** Where `api`'s answers report cached tokens; undefined when they do not. */
export function cachedTokensPlaceOf(
  api: ApiKind,
): CachedTokensPlace | undefined {
  return CACHED_TOKENS_PLACES[api];
}

/**
 * Whether errors on `path` take Anthropic's shape: the Messages API and its
 * sub-paths, whose clients (the `@anthropic-ai/sdk`) read that shape, and
 * whose upstream (vLLM's Anthropic server) answers in it too.
 */
export function usesAnthropicErrors(path: string): boolean {
  return path === PATH_MESSAGES || path.startsWith(`${PATH_MESSAGES}/`);
}
