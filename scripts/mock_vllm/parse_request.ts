/**
 * Validates generation requests the way vLLM's FastAPI layer does and turns
 * them into one typed {@linkcode GenerationRequest}. Unknown fields are
 * ignored, as vLLM's request models allow extra keys.
 *
 * @module
 */

import {
  modelNotFound,
  pydanticMessage,
  validationError,
  VllmError,
} from "./errors.ts";
import {
  type ChatText,
  countChatTokens,
  MAX_MODEL_LEN,
  renderChatPrompt,
  splitWords,
} from "./tokens.ts";

/** The generation APIs the mock serves: OpenAI's three, Anthropic Messages, and vLLM's token-in generate. */
export type ApiKind =
  | "chat"
  | "completions"
  | "responses"
  | "messages"
  | "generate";

/** A validated generation request. */
export interface GenerationRequest {
  readonly api: ApiKind;
  readonly body: Readonly<Record<string, unknown>>;
  readonly stream: boolean;
  /** Send the final `choices: []` usage chunk. */
  readonly includeUsage: boolean;
  /** Put a running `usage` on every chunk (`stream_options.continuous_usage_stats`). */
  readonly continuousUsage: boolean;
  /** Token limit from the request, capped by the context left; undefined when none was given. */
  readonly limit: number | undefined;
  readonly promptTokens: number;
  /** Prompt as vLLM would log it (chat prompts after the template). */
  readonly promptText: string;
  /** What identifies the prompt's KV: the rendered text, or the token ids (`ids:[…]`). */
  readonly promptKey: string;
  /** `kv_transfer_params` exactly as received (undefined when absent). */
  readonly kvParams: unknown;
  /** `cache_hit_threshold` (0..1, vLLM RFC #24256), when given. */
  readonly cacheHitThreshold: number | undefined;
  /** `min_tokens` (inside `sampling_params` for generate); 0 when absent. */
  readonly minTokens: number;
}

/** A request body parsed once at arrival. */
export type ParsedBody =
  | { readonly ok: true; readonly value: unknown }
  | {
    readonly ok: false;
    readonly empty: boolean;
    readonly position: number;
    readonly reason: string;
  };

/** Parses a body as JSON without throwing. */
export function parseJsonBody(text: string): ParsedBody {
  if (text.trim() === "") {
    return { ok: false, empty: true, position: 0, reason: "Expecting value" };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const position = Number(/position (\d+)/.exec(message)?.[1] ?? 0);
    return { ok: false, empty: false, position, reason: message };
  }
}

/** True for a plain JSON object. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** First `X-Request-Id` value, or undefined when absent or empty. */
export function requestIdHeader(headers: Headers): string | undefined {
  // Deno joins repeated headers with ", "; Starlette's Headers.get returns the first one.
  return headers.get("x-request-id")?.split(",")[0]?.trim() || undefined;
}

/** Request id base: first `X-Request-Id` value, else the body's `request_id`, else a random uuid hex. */
export function requestIdBase(headers: Headers, body: unknown): string {
  const header = requestIdHeader(headers);
  if (header !== undefined) return header;
  if (
    isRecord(body) && typeof body.request_id === "string" &&
    body.request_id !== ""
  ) return body.request_id;
  return crypto.randomUUID().replaceAll("-", "");
}

/** Rejects a media type other than `application/json` (vLLM's `validate_json_request`). */
export function checkContentType(contentType: string | null): void {
  const media = (contentType ?? "").split(";")[0]?.trim().toLowerCase();
  if (media !== "application/json") {
    throw validationError(
      "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed",
      null,
    );
  }
}

/** Validates the parsed body of a generation route; throws {@linkcode VllmError}. */
export function parseGenerationRequest(
  api: ApiKind,
  parsed: ParsedBody,
): GenerationRequest {
  const body = requireObject(parsed);
  const prompt = readPrompt(api, body);
  const stream = readStream(body);
  const streamOptions = body.stream_options;
  // The rule lives in OpenAI request models; Messages has no stream_options, generate no such check.
  const checksStreamOptions = api !== "messages" && api !== "generate";
  if (
    checksStreamOptions && streamOptions !== undefined &&
    streamOptions !== null && !stream
  ) {
    throw validationError(
      "Stream options can only be defined when `stream=True`.",
      "stream_options",
    );
  }
  const includeUsage = stream && isRecord(streamOptions) &&
    streamOptions.include_usage !== false;
  const sampling = api === "generate" ? readSamplingParams(body) : body;
  const requested = readLimit(api, sampling);
  if (prompt.tokens > MAX_MODEL_LEN) {
    throw new VllmError(
      400,
      `Input length (${prompt.tokens}) exceeds model's maximum context length (${MAX_MODEL_LEN}).`,
    );
  }
  const room = MAX_MODEL_LEN - prompt.tokens;
  const limit = requested === undefined ? undefined : Math.min(requested, room);
  const minTokens = readMinTokens(api, sampling, limit ?? room);
  return {
    api,
    body,
    stream,
    includeUsage,
    continuousUsage: includeUsage && isRecord(streamOptions) &&
      streamOptions.continuous_usage_stats === true,
    limit,
    promptTokens: prompt.tokens,
    promptText: prompt.text,
    promptKey: prompt.key,
    kvParams: body.kv_transfer_params,
    cacheHitThreshold: readCacheHitThreshold(body),
    minTokens,
  };
}

/** APIs whose request model has `min_tokens` (the Responses and Anthropic models have none). */
const MIN_TOKENS_APIS: readonly ApiKind[] = ["chat", "completions", "generate"];

/**
 * `min_tokens` (0 when absent), checked as vLLM's `SamplingParams` checks it
 * against the effective `max_tokens`: a proxy that caps a prefill's
 * `max_tokens` to 1 and leaves a client's `min_tokens: 2` gets this 400
 * (llm-d-router delta §11 item 6).
 */
function readMinTokens(
  api: ApiKind,
  sampling: Record<string, unknown>,
  maxTokens: number,
): number {
  const value = sampling.min_tokens;
  if (!MIN_TOKENS_APIS.includes(api) || !Number.isInteger(value)) return 0;
  const minTokens = value as number;
  if (minTokens < 0) {
    throw new VllmError(
      400,
      `min_tokens must be greater than or equal to 0, got ${minTokens}.`,
      { param: "min_tokens" },
    );
  }
  if (minTokens > maxTokens) {
    throw new VllmError(
      400,
      `min_tokens must be less than or equal to max_tokens=${maxTokens}, got ${minTokens}.`,
      { param: "min_tokens" },
    );
  }
  return minTokens;
}

function readSamplingParams(
  body: Record<string, unknown>,
): Record<string, unknown> {
  const params = body.sampling_params;
  if (params === undefined || params === null) throw missing("sampling_params");
  if (!isRecord(params)) {
    throw validationError(
      pydanticMessage(
        "model_attributes_type",
        "body.sampling_params",
        "Input should be a valid dictionary or object to extract fields from",
      ),
      "body.sampling_params",
    );
  }
  return params;
}

function readCacheHitThreshold(
  body: Record<string, unknown>,
): number | undefined {
  const value = body.cache_hit_threshold;
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) {
    throw validationError(
      pydanticMessage(
        "value_error",
        "body.cache_hit_threshold",
        "Value error, cache_hit_threshold must be a number between 0 and 1",
      ),
      "body.cache_hit_threshold",
    );
  }
  return value;
}

/** Rejects a `model` other than the served one; absent or empty means the served model. */
export function checkModel(
  body: Readonly<Record<string, unknown>>,
  servedModel: string,
): void {
  const model = body.model;
  if (model === undefined || model === null || model === "") return;
  if (typeof model !== "string") {
    throw validationError(
      pydanticMessage(
        "string_type",
        "body.model",
        "Input should be a valid string",
      ),
      "body.model",
    );
  }
  if (model !== servedModel) throw modelNotFound(model);
}

function requireObject(parsed: ParsedBody): Record<string, unknown> {
  if (!parsed.ok) {
    if (parsed.empty) {
      throw validationError(
        pydanticMessage("missing", "body", "Field required"),
        "body",
      );
    }
    const loc = `body.${parsed.position}`;
    const extra = `, 'input': '<dict of 0 items>', 'ctx': {'error': '${
      parsed.reason.replaceAll("'", '"')
    }'}`;
    throw validationError(
      pydanticMessage("json_invalid", loc, "JSON decode error", extra),
      loc,
    );
  }
  if (!isRecord(parsed.value)) {
    throw validationError(
      pydanticMessage(
        "model_attributes_type",
        "body",
        "Input should be a valid dictionary or object to extract fields from",
      ),
      "body",
    );
  }
  return parsed.value;
}

function readStream(body: Record<string, unknown>): boolean {
  const stream = body.stream;
  if (stream === undefined || stream === null) return false;
  if (typeof stream !== "boolean") {
    throw validationError(
      pydanticMessage(
        "bool_type",
        "body.stream",
        "Input should be a valid boolean",
      ),
      "body.stream",
    );
  }
  return stream;
}

const LIMIT_FIELDS: Readonly<Record<ApiKind, readonly string[]>> = {
  // max_completion_tokens wins over the deprecated max_tokens.
  chat: ["max_completion_tokens", "max_tokens"],
  completions: ["max_tokens"],
  responses: ["max_output_tokens"],
  // vLLM's Anthropic model knows only max_tokens; other limit keys are ignored.
  messages: ["max_tokens"],
  // Read inside sampling_params.
  generate: ["max_tokens"],
};

/** Reads the token limit from `body` (the `sampling_params` object for generate). */
function readLimit(
  api: ApiKind,
  body: Record<string, unknown>,
): number | undefined {
  if (
    api === "messages" &&
    (body.max_tokens === undefined || body.max_tokens === null)
  ) {
    throw missing("max_tokens");
  }
  let limit: number | undefined;
  for (const field of LIMIT_FIELDS[api]) {
    const value = body[field];
    if (value === undefined || value === null) continue;
    if (!Number.isInteger(value)) {
      throw validationError(
        pydanticMessage(
          "int_type",
          `body.${field}`,
          "Input should be a valid integer",
        ),
        `body.${field}`,
      );
    }
    if ((value as number) < 1) {
      throw new VllmError(400, `${field} must be at least 1, got ${value}.`, {
        param: field,
      });
    }
    limit ??= value as number;
  }
  // /v1/completions defaults max_tokens to 16.
  return limit ?? (api === "completions" ? 16 : undefined);
}

interface Prompt {
  readonly tokens: number;
  readonly text: string;
  readonly key: string;
}

function readPrompt(api: ApiKind, body: Record<string, unknown>): Prompt {
  if (api === "completions") return readCompletionPrompt(body.prompt);
  if (api === "generate") return readTokenIds(body.token_ids);
  const messages = api === "chat"
    ? readChatMessages(body.messages)
    : api === "messages"
    ? readAnthropicMessages(body)
    : readResponsesInput(body);
  const text = renderChatPrompt(messages);
  return { tokens: countChatTokens(messages), text, key: text };
}

function readTokenIds(ids: unknown): Prompt {
  if (ids === undefined || ids === null) throw missing("token_ids");
  if (!Array.isArray(ids) || !ids.every(Number.isInteger)) {
    throw validationError(
      pydanticMessage(
        "list_type",
        "body.token_ids",
        "Input should be a valid list of integers",
      ),
      "body.token_ids",
    );
  }
  if (ids.length === 0) {
    throw new VllmError(400, "The decoder prompt cannot be empty", {
      param: "token_ids",
    });
  }
  return { tokens: ids.length, text: "", key: `ids:${JSON.stringify(ids)}` };
}

/**
 * Anthropic messages as vLLM converts them to chat: the `system` field (a
 * string or text blocks) first, then each message's text.
 */
function readAnthropicMessages(body: Record<string, unknown>): ChatText[] {
  if (typeof body.model !== "string" || body.model === "") {
    throw validationError(
      pydanticMessage(
        "value_error",
        "body.model",
        "Value error, Model is required",
      ),
      "body.model",
    );
  }
  const messages: ChatText[] = [];
  const system = contentText(body.system);
  if (system !== "") messages.push({ role: "system", text: system });
  messages.push(...readChatMessages(body.messages));
  return messages;
}

function missing(field: string): VllmError {
  return validationError(
    pydanticMessage("missing", `body.${field}`, "Field required"),
    `body.${field}`,
  );
}

function readCompletionPrompt(prompt: unknown): Prompt {
  if (prompt === undefined || prompt === null) throw missing("prompt");
  const items = Array.isArray(prompt) ? prompt : [prompt];
  const allText = items.every((item) => typeof item === "string");
  let tokens = 0;
  const texts: string[] = [];
  for (const item of items) {
    if (typeof item === "string") {
      tokens += splitWords(item).length;
      texts.push(item);
    } else if (Number.isInteger(item)) {
      tokens += 1;
    } else if (Array.isArray(item) && item.every(Number.isInteger)) {
      tokens += item.length;
    } else {
      throw validationError(
        "1 validation error:\n  prompt must be a string, a list of strings, a list of token ids or a list of token id lists",
        "prompt",
      );
    }
  }
  if (
    items.length === 0 ||
    (texts.length === items.length && texts.every((t) => t === ""))
  ) {
    throw validationError(
      "Either prompt or prompt_embeds must be provided and non-empty.",
      "prompt",
    );
  }
  const text = texts.join("");
  return {
    tokens: Math.max(1, tokens),
    text,
    key: allText ? text : `ids:${JSON.stringify(prompt)}`,
  };
}

function readChatMessages(messages: unknown): ChatText[] {
  if (messages === undefined || messages === null) throw missing("messages");
  if (!Array.isArray(messages)) {
    throw validationError(
      pydanticMessage(
        "list_type",
        "body.messages",
        "Input should be a valid list",
      ),
      "body.messages",
    );
  }
  return messages.map(toChatText);
}

function readResponsesInput(body: Record<string, unknown>): ChatText[] {
  const input = body.input;
  if (input === undefined || input === null) throw missing("input");
  const messages: ChatText[] = [];
  if (typeof body.instructions === "string") {
    messages.push({ role: "system", text: body.instructions });
  }
  if (typeof input === "string") messages.push({ role: "user", text: input });
  else if (Array.isArray(input)) messages.push(...input.map(toChatText));
  else {
    throw validationError(
      pydanticMessage(
        "string_type",
        "body.input",
        "Input should be a valid string or list",
      ),
      "body.input",
    );
  }
  return messages;
}

function toChatText(message: unknown): ChatText {
  if (!isRecord(message)) return { role: "user", text: "" };
  const role = typeof message.role === "string" ? message.role : "user";
  return { role, text: contentText(message.content) };
}

/** Text of a message `content`: a string or an array of text parts (other parts are ignored). */
function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .map((
      part,
    ) => (isRecord(part) && typeof part.text === "string" ? part.text : ""))
    .filter((t) => t !== "")
    .join("\n");
}
