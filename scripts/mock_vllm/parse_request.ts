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
import type { RequestRole } from "./types.ts";

/** The three OpenAI generation APIs the mock serves. */
export type ApiKind = "chat" | "completions" | "responses";

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
  /** `kv_transfer_params` exactly as received (undefined when absent). */
  readonly kvParams: unknown;
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

/** Role of a generation request, read from its `kv_transfer_params`; decode wins if both flags are set. */
export function roleOf(body: unknown): RequestRole {
  if (!isRecord(body) || !isRecord(body.kv_transfer_params)) return "plain";
  if (body.kv_transfer_params.do_remote_prefill === true) return "decode";
  if (body.kv_transfer_params.do_remote_decode === true) return "prefill";
  return "plain";
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
  if (streamOptions !== undefined && streamOptions !== null && !stream) {
    throw validationError(
      "Stream options can only be defined when `stream=True`.",
      "stream_options",
    );
  }
  const includeUsage = stream && isRecord(streamOptions) &&
    streamOptions.include_usage !== false;
  const requested = readLimit(api, body);
  if (prompt.tokens > MAX_MODEL_LEN) {
    throw new VllmError(
      400,
      `Input length (${prompt.tokens}) exceeds model's maximum context length (${MAX_MODEL_LEN}).`,
    );
  }
  const room = MAX_MODEL_LEN - prompt.tokens;
  return {
    api,
    body,
    stream,
    includeUsage,
    continuousUsage: includeUsage && isRecord(streamOptions) &&
      streamOptions.continuous_usage_stats === true,
    limit: requested === undefined ? undefined : Math.min(requested, room),
    promptTokens: prompt.tokens,
    promptText: prompt.text,
    kvParams: body.kv_transfer_params,
  };
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
};

function readLimit(
  api: ApiKind,
  body: Record<string, unknown>,
): number | undefined {
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
}

function readPrompt(api: ApiKind, body: Record<string, unknown>): Prompt {
  if (api === "completions") return readCompletionPrompt(body.prompt);
  const messages = api === "chat"
    ? readChatMessages(body.messages)
    : readResponsesInput(body);
  return {
    tokens: countChatTokens(messages),
    text: renderChatPrompt(messages),
  };
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
  return { tokens: Math.max(1, tokens), text: texts.join("") };
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
