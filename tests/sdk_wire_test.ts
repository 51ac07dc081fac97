/**
 * What real SDK clients send, through the P/D path of the connectors with
 * different wire rules: every field the client sent reaches both legs as
 * sent, changed only where the connector's protocol says.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import type { ConnectorName } from "../src/config.ts";
import type { RecordedRequest } from "../scripts/mock_vllm/mod.ts";
import {
  bodyOf,
  createConnectorHarness,
  within,
} from "./connectors/_support.ts";

const MODEL = "Qwen/Qwen3-0.6B";

/** Keys each connector may set on each leg (reference-sidecar*.md §3). */
const CHANGED: Record<
  string,
  { prefill: readonly string[]; decode: readonly string[] }
> = {
  nixlv2: {
    prefill: [
      "kv_transfer_params",
      "stream",
      "stream_options",
      "max_tokens",
      "max_completion_tokens",
      "min_tokens",
      "max_output_tokens",
    ],
    decode: ["kv_transfer_params"],
  },
  sglang: {
    prefill: ["bootstrap_host", "bootstrap_port", "bootstrap_room"],
    decode: ["bootstrap_host", "bootstrap_port", "bootstrap_room"],
  },
  lmcache: {
    prefill: [
      "stream",
      "stream_options",
      "max_tokens",
      "max_completion_tokens",
      "min_tokens",
      "max_output_tokens",
    ],
    decode: [],
  },
};

const CONNECTORS = Object.keys(CHANGED) as ConnectorName[];

function without(
  body: Record<string, unknown>,
  keys: readonly string[],
): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(body).filter(([key]) => !keys.includes(key)),
  );
}

function postsOf(requests: readonly RecordedRequest[]): RecordedRequest[] {
  return requests.filter((request) => request.method === "POST");
}

/** A `fetch` for the SDKs that keeps each body it sends. */
function recordingFetch(sent: string[]): typeof fetch {
  return (input, init) => {
    if (typeof init?.body === "string") sent.push(init.body);
    return fetch(input, init);
  };
}

function assertLegsKeep(
  connector: ConnectorName,
  client: Record<string, unknown>,
  legs: { prefill: RecordedRequest[]; decode: RecordedRequest[] },
): void {
  const changed = CHANGED[connector]!;
  assert.equal(legs.prefill.length, 1);
  assert.equal(legs.decode.length, 1);
  assert.deepEqual(
    without(bodyOf(legs.prefill[0]), changed.prefill),
    without(client, changed.prefill),
  );
  assert.deepEqual(
    without(bodyOf(legs.decode[0]), changed.decode),
    without(client, changed.decode),
  );
}

for (const connector of CONNECTORS) {
  Deno.test(`${connector}: an openai client's sampling, tool and vLLM fields reach both legs`, async () => {
    await using h = await createConnectorHarness(connector);
    const sent: string[] = [];
    const openai = new OpenAI({
      baseURL: `${h.listen()}/v1`,
      apiKey: "unused",
      maxRetries: 0,
      fetch: recordingFetch(sent),
      defaultHeaders: { "x-prefiller-host-port": h.prefillerHeader },
    });
    const stream = await openai.chat.completions.create({
      model: MODEL,
      messages: [
        { role: "system", content: "Answer in JSON <&>" },
        { role: "user", content: "Grüße 世界 🚀 ".repeat(200) },
      ],
      stream: true,
      stream_options: { include_usage: true },
      n: 2,
      logprobs: true,
      top_logprobs: 3,
      tools: [{
        type: "function",
        function: {
          name: "lookup",
          parameters: { type: "object", properties: { q: { type: "string" } } },
        },
      }],
      tool_choice: "auto",
      response_format: {
        type: "json_schema",
        json_schema: { name: "answer", schema: { type: "object" } },
      },
      stop: ["\n\n", "END"],
      max_completion_tokens: 7,
      seed: 42,
      user: "user-1",
      // vLLM's own sampling and scheduling fields, which the SDK passes through.
      ...{ min_tokens: 2, ignore_eos: true, priority: 3 },
    });
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) usage = chunk.usage ?? usage;
    assert.equal(usage?.completion_tokens, 7);
    assertLegsKeep(connector, JSON.parse(sent[0]!), {
      prefill: postsOf(h.prefill.requests),
      decode: postsOf(h.decode.requests),
    });
  });

  Deno.test(`${connector}: an anthropic client's system blocks, stop sequences and tools reach both legs`, async () => {
    await using h = await createConnectorHarness(connector);
    const sent: string[] = [];
    const anthropic = new Anthropic({
      baseURL: h.listen(),
      apiKey: "unused",
      maxRetries: 0,
      fetch: recordingFetch(sent),
      defaultHeaders: { "x-prefiller-host-port": h.prefillerHeader },
    });
    const message = await anthropic.messages.stream({
      model: MODEL,
      max_tokens: 6,
      system: [{ type: "text", text: "Be brief ✓" }],
      messages: [{ role: "user", content: [{ type: "text", text: "Hi 🙂" }] }],
      stop_sequences: ["STOP"],
      temperature: 0.5,
      top_k: 3,
      metadata: { user_id: "user-1" },
      tools: [{ name: "lookup", input_schema: { type: "object" } }],
      tool_choice: { type: "auto" },
    }).finalMessage();
    assert.equal(message.usage.output_tokens, 6);
    assertLegsKeep(connector, JSON.parse(sent[0]!), {
      prefill: postsOf(h.prefill.requests),
      decode: postsOf(h.decode.requests),
    });
  });

  Deno.test(`${connector}: an openai client's abort mid-stream aborts the decode`, async () => {
    await using h = await createConnectorHarness(connector, {
      decode: { interTokenMs: 20 },
    });
    const openai = new OpenAI({
      baseURL: `${h.listen()}/v1`,
      apiKey: "unused",
      maxRetries: 0,
      defaultHeaders: { "x-prefiller-host-port": h.prefillerHeader },
    });
    const abort = new AbortController();
    const stream = await openai.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Hello" }],
      max_tokens: 200,
      stream: true,
    }, { signal: abort.signal });
    // The SDK's iterator ends quietly when its signal aborts.
    let chunks = 0;
    for await (const _ of stream) if (++chunks === 3) abort.abort();
    assert.equal(chunks, 3);
    const decode = await within(
      h.decode.nextRequest((r) => r.method === "POST"),
      "the decode leg",
    );
    assert.equal(
      await within(decode.finished, "the decode leg's end"),
      "aborted",
    );
  });

  Deno.test(`${connector}: an openai client's retries each run the whole exchange`, async () => {
    await using h = await createConnectorHarness(connector, {
      decode: { failureRate: 1, failureStatus: 503 },
    });
    const openai = new OpenAI({
      baseURL: `${h.listen()}/v1`,
      apiKey: "unused",
      maxRetries: 2,
      timeout: 5000,
      defaultHeaders: { "x-prefiller-host-port": h.prefillerHeader },
    });
    await assert.rejects(
      openai.chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "Hello" }],
        max_tokens: 3,
      }),
      (error: unknown) =>
        error instanceof OpenAI.APIError && error.status === 503,
    );
    assert.equal(postsOf(h.prefill.requests).length, 3);
    assert.equal(postsOf(h.decode.requests).length, 3);
  });
}
