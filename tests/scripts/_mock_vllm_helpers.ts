/**
 * Helpers shared by the mock vLLM tests: request builders and SSE readers.
 *
 * @module
 */

import type { MockVllm } from "../../scripts/mock_vllm/mod.ts";
import { withDeadline } from "../support/deadline.ts";

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

/** Anthropic Messages path. */
export const MESSAGES = "/v1/messages";
/** vLLM's token-in generate path. */
export const GENERATE = "/inference/v1/generate";

/** POSTs JSON and returns the status and the parsed JSON answer. */
export async function postForJson(
  mock: MockVllm,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await postJson(mock, path, body, { headers });
  return { status: response.status, body: await response.json() };
}

/** `usage.prompt_tokens_details.cached_tokens` of an answer, or undefined. */
export function cachedTokensOf(body: Record<string, unknown>): unknown {
  const usage = body.usage as Record<string, unknown> | undefined;
  const details = usage?.prompt_tokens_details as
    | Record<string, unknown>
    | null
    | undefined;
  return details?.cached_tokens;
}

/** A mock vLLM running in a child process (the CLI), for tests of what crosses process boundaries. */
export interface SpawnedMock extends AsyncDisposable {
  /** Base URL the child logged at start. */
  readonly url: string;
  /** Every stderr line read so far. */
  readonly lines: readonly string[];
}

/**
 * Starts `scripts/mock_vllm.ts` with `args` on an ephemeral port and waits
 * (at most 20 s) for its start-up line. Disposing sends SIGTERM to this
 * child only and waits for it to exit.
 */
export async function spawnMock(args: readonly string[]): Promise<SpawnedMock> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      new URL("../../scripts/mock_vllm.ts", import.meta.url).pathname,
      "--port",
      "0",
      ...args,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  const readUrl = async (): Promise<string> => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`Mock exited early:\n${lines.join("\n")}`);
      pending += value;
      const parts = pending.split("\n");
      pending = parts.pop() ?? "";
      lines.push(...parts);
      const url = parts.map((l) =>
        /Starting vLLM API server 0 on (\S+)/.exec(l)?.[1]
      ).find((u) => u !== undefined);
      if (url !== undefined) return url;
    }
  };
  let url: string;
  try {
    url = await withDeadline(readUrl(), 20_000, "the child mock to start");
  } catch (error) {
    child.kill("SIGKILL");
    await reader.cancel().catch(() => {});
    await child.status;
    throw error;
  }
  const drained = (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      lines.push(...value.split("\n").filter((l) => l !== ""));
    }
  })();
  return {
    url,
    lines,
    async [Symbol.asyncDispose]() {
      child.kill("SIGTERM");
      await withDeadline(child.status, 10_000, "the child mock to exit");
      await drained;
    },
  };
}
