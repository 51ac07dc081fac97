/**
 * The client reads the prefiller's cached tokens on the nixlv2 path, not the
 * decoder's (which count the transferred prompt as cached), in JSON answers
 * and in streams that carry usage, whatever the chunk boundaries; a decoder
 * that reports the count itself (vLLM PR #54222) is left alone.
 */

import assert from "node:assert/strict";
import { rewriteEvents } from "../../src/connectors/_cached_tokens.ts";
import { PROMPT_TOKENS_DETAILS_PLACE } from "../../src/protocol/api.ts";
import { chatBody, createHarness, readSseData } from "../support/harness.ts";
import { startStubUpstream } from "../support/stub_upstream.ts";
import { within } from "./_support.ts";

const PREFIX_CACHED = 3;

function harness() {
  return createHarness({
    prefill: { promptTokensDetails: true, prefixCachedTokens: PREFIX_CACHED },
    decode: { promptTokensDetails: true },
  });
}

Deno.test("nixlv2 answers a JSON chat with the prefiller's cached tokens", async () => {
  await using h = await harness();
  const response = await h.pd("/v1/chat/completions", chatBody());
  assert.equal(response.status, 200);
  const usage = (await response.json()).usage;
  assert.ok(usage.prompt_tokens > PREFIX_CACHED);
  assert.deepEqual(usage.prompt_tokens_details, {
    cached_tokens: PREFIX_CACHED,
  });
  assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
});

Deno.test("nixlv2 answers the generate API with the prefiller's cached tokens", async () => {
  await using h = await harness();
  const response = await h.pd(
    "/inference/v1/generate",
    JSON.stringify({
      model: "Qwen/Qwen3-0.6B",
      token_ids: [1, 2, 3, 4, 5, 6],
      sampling_params: { max_tokens: 4 },
    }),
  );
  assert.equal(response.status, 200);
  const usage = (await response.json()).usage;
  assert.equal(usage.prompt_tokens_details.cached_tokens, PREFIX_CACHED);
});

Deno.test("nixlv2 rewrites the usage chunk of a stream that asked for usage", async () => {
  await using h = await harness();
  const response = await h.pd(
    "/v1/chat/completions",
    chatBody({ stream: true, stream_options: { include_usage: true } }),
  );
  assert.equal(response.status, 200);
  const events = await within(readSseData(response), "the stream");
  assert.equal(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1).map((data) => JSON.parse(data));
  const withUsage = chunks.filter((chunk) => chunk.usage);
  assert.equal(withUsage.length, 1);
  assert.deepEqual(withUsage[0].usage.prompt_tokens_details, {
    cached_tokens: PREFIX_CACHED,
  });
  assert.ok(chunks.some((chunk) => chunk.choices[0]?.delta?.content));
});

/** A Responses API request body. */
function responsesBody(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    model: "Qwen/Qwen3-0.6B",
    input: "Hello there",
    max_output_tokens: 8,
    ...extra,
  });
}

Deno.test("nixlv2 answers a JSON Responses request with the prefiller's cached tokens in input_tokens_details", async () => {
  await using h = await harness();
  const response = await h.pd("/v1/responses", responsesBody());
  assert.equal(response.status, 200);
  const usage = (await response.json()).usage;
  assert.ok(usage.input_tokens > PREFIX_CACHED);
  assert.deepEqual(usage.input_tokens_details, {
    cached_tokens: PREFIX_CACHED,
  });
  assert.equal("prompt_tokens_details" in usage, false);
  assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
});

Deno.test("nixlv2 rewrites response.completed of a Responses stream, keeping its event lines", async () => {
  await using h = await harness();
  const response = await h.pd("/v1/responses", responsesBody({ stream: true }));
  assert.equal(response.status, 200);
  const text = await within(response.text(), "the stream");
  const events = text.split("\n\n").filter((event) => event !== "");
  assert.ok(events.every((event) => /^event: [a-z_.]+\ndata: /.test(event)));
  const completed = events.find((event) =>
    event.startsWith("event: response.completed\n")
  );
  assert.ok(completed, "a response.completed event");
  const data = JSON.parse(completed.slice(completed.indexOf("data: ") + 6));
  assert.equal(data.type, "response.completed");
  assert.deepEqual(data.response.usage.input_tokens_details, {
    cached_tokens: PREFIX_CACHED,
  });
  assert.equal("usage" in data, false, "no usage added at the top level");
});

Deno.test("nixlv2 leaves the Messages API's usage alone", async () => {
  await using h = await harness();
  const response = await h.pd(
    "/v1/messages",
    JSON.stringify({
      model: "Qwen/Qwen3-0.6B",
      max_tokens: 4,
      messages: [{ role: "user", content: "Hi" }],
    }),
  );
  const usage = (await response.json()).usage;
  assert.deepEqual(Object.keys(usage).sort(), [
    "input_tokens",
    "output_tokens",
  ]);
});

/** A decode answer whose own count is 9; the prefiller's 3 when it hands it over or not. */
async function throughStubs(
  handsOver: boolean,
): Promise<Record<string, unknown>> {
  const decodeAnswer = JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion",
    choices: [],
    usage: {
      prompt_tokens: 10,
      completion_tokens: 1,
      total_tokens: 11,
      prompt_tokens_details: { cached_tokens: 9 },
    },
  });
  await using prefiller = startStubUpstream(() =>
    Response.json({
      choices: [],
      usage: { prompt_tokens: 10, prompt_tokens_details: { cached_tokens: 3 } },
      kv_transfer_params: {
        remote_engine_id: "e",
        ...(handsOver ? { remote_num_cached_tokens: 3 } : {}),
      },
    })
  );
  await using decoder = startStubUpstream(() =>
    new Response(decodeAnswer, {
      headers: { "content-type": "application/json" },
    })
  );
  await using h = await createHarness({
    config: { modelServerPort: decoder.port },
  });
  const response = await h.pd("/v1/chat/completions", chatBody(), {
    "x-prefiller-host-port": prefiller.hostPort,
  });
  const text = await response.text();
  if (handsOver) assert.equal(text, decodeAnswer);
  return JSON.parse(text).usage;
}

Deno.test("nixlv2 leaves the count to a decoder the prefiller handed it to", async () => {
  const usage = await throughStubs(true);
  assert.deepEqual(usage.prompt_tokens_details, { cached_tokens: 9 });
});

Deno.test("nixlv2 rewrites the count when the prefiller did not hand it over", async () => {
  const usage = await throughStubs(false);
  assert.deepEqual(usage.prompt_tokens_details, { cached_tokens: 3 });
});

const STREAM = 'data: {"choices":[{"delta":{"content":"é"}}]}\n\n' +
  'data: {"choices":[],"usage":{"prompt_tokens":5,"prompt_tokens_details":null}}\r\n\r\n' +
  "data: [DONE]\n\n";
const EXPECTED = 'data: {"choices":[{"delta":{"content":"é"}}]}\n\n' +
  'data: {"choices":[],"usage":{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":2}}}\r\n\r\n' +
  "data: [DONE]\n\n";

async function rewriteSplit(
  bytes: Uint8Array,
  cuts: number[],
): Promise<string> {
  const pieces: Uint8Array[] = [];
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    pieces.push(bytes.slice(start, cut));
    start = cut;
  }
  const source = ReadableStream.from(pieces);
  return await new Response(
    rewriteEvents(source, { cached: 2, place: PROMPT_TOKENS_DETAILS_PLACE }),
  ).text();
}

Deno.test("the stream rewrite finds the usage event whatever the chunk boundaries", async () => {
  const bytes = new TextEncoder().encode(STREAM);
  for (let cut = 0; cut <= bytes.length; cut++) {
    assert.equal(await rewriteSplit(bytes, [cut]), EXPECTED, `cut at ${cut}`);
  }
  const everyByte = Array.from({ length: bytes.length - 1 }, (_, i) => i + 1);
  assert.equal(await rewriteSplit(bytes, everyByte), EXPECTED);
});

Deno.test("the stream rewrite passes chunks without usage as the bytes read", async () => {
  const chunk = new TextEncoder().encode('data: {"choices":[]}\n\n');
  const reader = rewriteEvents(ReadableStream.from([chunk]), {
    cached: 2,
    place: PROMPT_TOKENS_DETAILS_PLACE,
  }).getReader();
  const first = await reader.read();
  assert.equal(first.value, chunk);
});

/**
 * The bytes a client gets through nixlv2 from a decoder that compresses its
 * answer although the decode leg asked for `identity` (a compressing proxy
 * in front of vLLM may): the sidecar cannot rewrite a compressed body.
 */
async function compressedThroughStubs(
  body: string,
  init: { contentType: string; request: string },
): Promise<{ sent: Uint8Array; response: Response }> {
  const sent = new Uint8Array(
    await new Response(
      ReadableStream.from([new TextEncoder().encode(body)]).pipeThrough(
        new CompressionStream("gzip"),
      ),
    ).arrayBuffer(),
  );
  await using prefiller = startStubUpstream(() =>
    Response.json({
      choices: [],
      usage: { prompt_tokens: 10, prompt_tokens_details: { cached_tokens: 3 } },
      kv_transfer_params: { remote_engine_id: "e" },
    })
  );
  await using decoder = startStubUpstream(() =>
    new Response(sent, {
      headers: { "content-type": init.contentType, "content-encoding": "gzip" },
    })
  );
  await using h = await createHarness({
    config: { modelServerPort: decoder.port },
  });
  const response = await h.pd("/v1/chat/completions", init.request, {
    "x-prefiller-host-port": prefiller.hostPort,
  });
  // Read before the stubs close.
  const bytes = new Uint8Array(await response.arrayBuffer());
  return { sent, response: new Response(bytes, response) };
}

for (
  const [label, contentType, request] of [
    ["a JSON answer", "application/json", chatBody()],
    [
      "a stream that asked for usage",
      "text/event-stream; charset=utf-8",
      chatBody({ stream: true, stream_options: { include_usage: true } }),
    ],
  ] as const
) {
  Deno.test(`nixlv2 relays ${label} the decoder compressed anyway as sent, with its coding`, async () => {
    const { sent, response } = await compressedThroughStubs(
      STREAM,
      { contentType, request },
    );
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-encoding"), "gzip");
    assert.deepEqual(new Uint8Array(await response.arrayBuffer()), sent);
  });
}
