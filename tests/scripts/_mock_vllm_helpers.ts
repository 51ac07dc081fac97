/**
 * Helpers shared by the mock vLLM tests: request builders and SSE readers.
 *
 * @module
 */

import type { MockVllm } from "../../scripts/mock_vllm/mod.ts";

/** Chat completions path. */
export const CHAT = "/v1/chat/completions";
/** Completions path. */
export const COMPLETIONS = "/v1/completions";
/** Responses API path. */
export const RESPONSES = "/v1/responses";

/** A chat body with one user message "Hello" (9 prompt tokens), plus `extra`. */
export function chatBody(
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    model: "Qwen/Qwen3-0.6B",
    messages: [{ role: "user", content: "Hello" }],
    ...extra,
  };
}

/** POSTs JSON to the mock. */
export function postJson(
  mock: MockVllm,
  path: string,
  body: unknown,
  init: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Response> {
  return fetch(mock.url + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...init.headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(init.signal ? { signal: init.signal } : {}),
  });
}

/** Reads a body to the end and returns each read as text, to see how events were chunked. */
export async function readChunks(response: Response): Promise<string[]> {
  const decoder = new TextDecoder();
  const chunks: string[] = [];
  const reader = response.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return chunks;
    chunks.push(decoder.decode(value));
  }
}

/** The `data:` payloads of an SSE text, in order. */
export function sseData(text: string): string[] {
  return text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) =>
    e.slice("data: ".length)
  );
}

/** JSON `data:` payloads of an SSE text, without the `[DONE]` terminator. */
export function sseJson(text: string): Record<string, unknown>[] {
  return sseData(text).filter((d) => d !== "[DONE]").map((d) => JSON.parse(d));
}

/** POSTs a prefill leg (as a P/D proxy sends it) and returns the prefiller's `kv_transfer_params`. */
export async function prefillParams(
  prefill: MockVllm,
  requestId = crypto.randomUUID(),
): Promise<Record<string, unknown>> {
  const response = await postJson(
    prefill,
    CHAT,
    chatBody({
      max_tokens: 1,
      max_completion_tokens: 1,
      min_tokens: 1,
      stream: false,
      kv_transfer_params: {
        do_remote_decode: true,
        do_remote_prefill: false,
        remote_engine_id: null,
        remote_block_ids: null,
        remote_host: null,
        remote_port: null,
      },
    }),
    { headers: { "x-request-id": requestId } },
  );
  const body = await response.json();
  return body.kv_transfer_params;
}
