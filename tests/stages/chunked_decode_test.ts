import assert from "node:assert/strict";
import { bodyOf, kvParamsOf, within } from "../connectors/_support.ts";
import {
  chatBody,
  createHarness,
  jsonHeaders,
  readSseData,
} from "../support/harness.ts";

/** The mock's whole canned reply (12 tokens), as one unchunked decode says it. */
const FULL_REPLY = "Hello! This is a mock reply from vLLM for you.";

function decodeOnly(
  h: { request(path: string, init?: RequestInit): Promise<Response> },
  body: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return within(
    h.request("/v1/chat/completions", {
      method: "POST",
      headers: jsonHeaders(headers),
      body,
    }),
    "the answer",
  );
}

Deno.test(
  "chunked decode continues one assistant message per chunk and answers one completion",
  async () => {
    await using h = await createHarness({ config: { decodeChunkSize: 4 } });
    const response = await decodeOnly(
      h,
      chatBody({ max_tokens: undefined, "x_extra": 1 }),
      { "x-request-id": "req-1" },
    );
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.object, "chat.completion");
    assert.equal(body.choices.length, 1);
    assert.equal(body.choices[0].message.content, FULL_REPLY);
    assert.equal(body.choices[0].finish_reason, "stop");
    assert.equal(body.usage.completion_tokens, 12);
    assert.equal(
      body.usage.total_tokens,
      body.usage.prompt_tokens + 12,
    );
    const chunks = h.decode.requests;
    assert.equal(chunks.length, 3);
    const user = [{ role: "user", content: "Hello there" }];
    assert.deepEqual(bodyOf(chunks[0]).messages, user);
    assert.equal("continue_final_message" in bodyOf(chunks[0]), false);
    assert.deepEqual(bodyOf(chunks[1]).messages, [
      ...user,
      { role: "assistant", content: "Hello! This is" },
    ]);
    assert.deepEqual(bodyOf(chunks[2]).messages, [
      ...user,
      { role: "assistant", content: "Hello! This is a mock reply from" },
    ]);
    for (const [index, chunk] of chunks.entries()) {
      const sent = bodyOf(chunk);
      assert.equal(sent.max_tokens, 4);
      assert.equal(sent.max_completion_tokens, 4);
      assert.equal(sent.stream, false);
      assert.equal(sent.x_extra, 1, "other fields pass through");
      assert.equal(chunk.headers.get("x-request-id"), "req-1");
      if (index > 0) {
        assert.equal(sent.continue_final_message, true);
        assert.equal(sent.add_generation_prompt, false);
      }
    }
  },
);

Deno.test(
  "a streamed chunked decode sends chat.completion.chunk events, finish_reason last, usage when asked",
  async () => {
    await using h = await createHarness({ config: { decodeChunkSize: 5 } });
    const response = await decodeOnly(
      h,
      chatBody({
        max_tokens: 11,
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    assert.equal(response.status, 200);
    assert.match(
      response.headers.get("content-type") ?? "",
      /^text\/event-stream/,
    );
    const data = await readSseData(response);
    assert.equal(data.at(-1), "[DONE]");
    const events = data.slice(0, -1).map((text) => JSON.parse(text));
    const usage = events.pop();
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.completion_tokens, 11);
    assert.equal(events.length, 3, "chunks of 5, 5 and 1 tokens");
    assert.equal(h.decode.requests.length, 3);
    assert.equal(bodyOf(h.decode.requests[2]).max_tokens, 1);
    for (const [index, event] of events.entries()) {
      assert.equal(event.object, "chat.completion.chunk");
      assert.equal(event.id, events[0].id);
      const [choice] = event.choices;
      assert.equal("role" in choice.delta, index === 0);
      assert.equal(
        choice.finish_reason,
        index === events.length - 1 ? "length" : null,
      );
      assert.equal("usage" in event, false);
    }
    const text = events.map((event) => event.choices[0].delta.content).join(
      "",
    );
    assert.equal(text, "Hello! This is a mock reply from vLLM for you");
    for (const chunk of h.decode.requests) {
      assert.equal("stream_options" in bodyOf(chunk), false);
    }
  },
);

Deno.test("a streamed chunked decode sends no usage event unless asked", async () => {
  await using h = await createHarness({ config: { decodeChunkSize: 6 } });
  const response = await decodeOnly(
    h,
    chatBody({ max_tokens: undefined, stream: true }),
  );
  const data = await readSseData(response);
  assert.equal(data.length, 3, "two chunk events and [DONE]");
  for (const text of data.slice(0, -1)) {
    const event = JSON.parse(text);
    assert.notDeepEqual(event.choices, []);
    assert.equal("usage" in event, false);
  }
});

Deno.test(
  "a budget within one chunk is decoded by one ordinary request, streamed by the decoder",
  async () => {
    await using h = await createHarness({ config: { decodeChunkSize: 8 } });
    const body = chatBody({ max_tokens: 8, stream: true });
    const response = await decodeOnly(h, body);
    const data = await readSseData(response);
    assert.equal(data.at(-1), "[DONE]");
    assert.equal(h.decode.requests.length, 1);
    assert.equal(h.decode.requests[0]?.bodyText, body);
  },
);

Deno.test(
  "a client's own continued assistant message is extended, not duplicated",
  async () => {
    await using h = await createHarness({ config: { decodeChunkSize: 4 } });
    const messages = [
      { role: "user", content: "Hello there" },
      { role: "assistant", content: "Hello!" },
    ];
    const response = await decodeOnly(
      h,
      chatBody({
        messages,
        max_tokens: undefined,
        continue_final_message: true,
        add_generation_prompt: false,
      }),
    );
    const body = await response.json();
    assert.equal(
      body.choices[0].message.content,
      FULL_REPLY.slice("Hello!".length),
    );
    assert.deepEqual(bodyOf(h.decode.requests[1]).messages, [
      messages[0],
      { role: "assistant", content: "Hello! This is a mock" },
    ]);
  },
);

Deno.test(
  "after a nixlv2 prefill only the first chunk carries the prefiller's kv_transfer_params",
  async () => {
    await using h = await createHarness({ config: { decodeChunkSize: 4 } });
    const response = await within(
      h.pd("/v1/chat/completions", chatBody({ max_tokens: undefined })),
      "the answer",
    );
    const body = await response.json();
    assert.equal(body.choices[0].message.content, FULL_REPLY);
    const [first, ...rest] = h.decode.requests;
    assert.equal(kvParamsOf(first).do_remote_prefill, true);
    assert.equal(first?.kvTransfer?.outcome, "pulled");
    assert.equal(rest.length, 2);
    for (const chunk of rest) {
      assert.equal("kv_transfer_params" in bodyOf(chunk), false);
    }
  },
);

Deno.test("a failing first chunk is the client's status, nothing streamed before it", async () => {
  await using h = await createHarness({ config: { decodeChunkSize: 4 } });
  const response = await decodeOnly(
    h,
    chatBody({ max_tokens: undefined, stream: true }),
    { "x-return-error": "429" },
  );
  assert.equal(response.status, 429);
  assert.match((await response.json()).error.message, /Simulated error/);
  assert.equal(h.decode.requests.length, 1);
});

Deno.test("chunked decode stops at a chunk that reports no completion tokens instead of asking for ever", async () => {
  let chunks = 0;
  // Text, but no usage, and a finish_reason that asks for more.
  await using decoder = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => {
      chunks++;
      return Response.json({
        id: "chatcmpl-1",
        object: "chat.completion",
        created: 1,
        model: "Qwen/Qwen3-0.6B",
        choices: [{
          index: 0,
          message: { role: "assistant", content: "ab" },
          finish_reason: "length",
        }],
      });
    },
  );
  await using h = await createHarness({
    config: { decodeChunkSize: 2, modelServerPort: decoder.addr.port },
  });
  const response = await decodeOnly(h, chatBody({ max_tokens: 8 }));
  assert.equal(response.status, 200);
  assert.equal((await response.json()).choices[0].message.content, "ab");
  assert.equal(chunks, 1);
});

Deno.test("chunked decode leaves other routes alone", async () => {
  await using h = await createHarness({ config: { decodeChunkSize: 2 } });
  const body = JSON.stringify({ model: "Qwen/Qwen3-0.6B", prompt: "Hi" });
  const response = await h.request("/v1/completions", {
    method: "POST",
    headers: jsonHeaders(),
    body,
  });
  assert.equal(response.status, 200);
  await response.text();
  assert.equal(h.decode.requests.length, 1);
  assert.equal(h.decode.requests[0]?.bodyText, body);
});

for (
  const [what, extra] of [
    ['"max_tokens": "abc"', { max_tokens: "abc" }],
    ['"max_tokens": 0', { max_tokens: 0 }],
    ['"max_tokens": 25.5', { max_tokens: 25.5 }],
    ['"min_tokens" above "max_tokens"', { max_tokens: 10, min_tokens: 20 }],
    ['"max_completion_tokens": -1', { max_completion_tokens: -1 }],
    ['"min_tokens": true', { min_tokens: true }],
  ] as const
) {
  Deno.test(`a chat decode with ${what} goes to the decoder unchunked, as the client sent it, for vLLM to judge`, async () => {
    await using h = await createHarness({ config: { decodeChunkSize: 4 } });
    const body = chatBody({ max_tokens: undefined, ...extra });
    const response = await decodeOnly(h, body);
    await response.body?.cancel();
    assert.equal(h.decode.requests.length, 1);
    assert.equal(h.decode.requests[0]?.bodyText, body);
  });
}
