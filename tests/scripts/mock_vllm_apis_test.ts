import assert from "node:assert/strict";
import { createMockVllm } from "../../scripts/mock_vllm/mod.ts";
import {
  cachedTokensOf,
  GENERATE,
  MESSAGES,
  postForJson,
  postJson,
  sseData,
  sseJson,
} from "./_mock_vllm_helpers.ts";

const NIXL_PREFILL_PARAMS = {
  "do_remote_decode": true,
  "do_remote_prefill": false,
  "remote_engine_id": null,
  "remote_block_ids": null,
  "remote_host": null,
  "remote_port": null,
};

/** An Anthropic Messages request. */
function messagesBody(
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    model: "Qwen/Qwen3-0.6B",
    max_tokens: 32,
    messages: [{ role: "user", content: "Hello" }],
    ...extra,
  };
}

/** Event names and parsed data of an Anthropic SSE text. */
function namedEvents(text: string): [string, Record<string, unknown>][] {
  return text.split("\n\n").filter((e) => e !== "").map((e) => {
    const [eventLine, dataLine] = e.split("\n");
    return [
      eventLine?.replace(/^event: /, "") ?? "",
      JSON.parse(dataLine?.replace(/^data: /, "") ?? "{}"),
    ];
  });
}

Deno.test("mock vllm answers /v1/messages in vLLM's Anthropic shape", async () => {
  await using mock = await createMockVllm();
  const { status, body } = await postForJson(mock, MESSAGES, messagesBody(), {
    "x-request-id": "m1",
  });
  assert.equal(status, 200);
  assert.deepEqual(body, {
    id: "chatcmpl-m1",
    type: "message",
    role: "assistant",
    content: [{
      type: "text",
      text: "Hello! This is a mock reply from vLLM for you.",
    }],
    model: "Qwen/Qwen3-0.6B",
    stop_reason: "end_turn",
    usage: { input_tokens: 9, output_tokens: 12 },
  });
  const capped = await postForJson(
    mock,
    MESSAGES,
    messagesBody({ max_tokens: 2 }),
  );
  assert.equal(capped.body.stop_reason, "max_tokens");
  assert.equal(
    (capped.body.usage as Record<string, unknown>).output_tokens,
    2,
  );
});

Deno.test("mock vllm streams /v1/messages as Anthropic events", async () => {
  await using mock = await createMockVllm();
  const response = await postJson(
    mock,
    MESSAGES,
    messagesBody({ max_tokens: 2, stream: true, system: "Be brief." }),
    { headers: { "x-request-id": "m2" } },
  );
  assert.equal(response.status, 200);
  assert.equal(
    response.headers.get("content-type"),
    "text/event-stream; charset=utf-8",
  );
  assert.deepEqual(namedEvents(await response.text()), [
    ["message_start", {
      type: "message_start",
      message: {
        id: "chatcmpl-m2",
        content: [],
        model: "Qwen/Qwen3-0.6B",
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 17, output_tokens: 0 },
      },
    }],
    ["content_block_start", {
      type: "content_block_start",
      content_block: { type: "text", text: "" },
      index: 0,
    }],
    ["content_block_delta", {
      type: "content_block_delta",
      delta: { type: "text_delta", text: "Hello" },
      index: 0,
    }],
    ["content_block_delta", {
      type: "content_block_delta",
      delta: { type: "text_delta", text: "!" },
      index: 0,
    }],
    ["content_block_stop", { type: "content_block_stop", index: 0 }],
    ["message_delta", {
      type: "message_delta",
      delta: { stop_reason: "max_tokens" },
      usage: { input_tokens: 17, output_tokens: 2 },
    }],
    ["message_stop", { type: "message_stop" }],
  ]);
});

Deno.test("mock vllm /v1/messages errors: validation in vLLM's shape, serving errors in Anthropic's", async () => {
  await using mock = await createMockVllm();
  const { max_tokens: _limit, ...noLimit } = messagesBody();
  const missing = await postForJson(mock, MESSAGES, noLimit);
  assert.equal(missing.status, 400);
  assert.equal(
    (missing.body.error as Record<string, unknown>).type,
    "Bad Request",
  );
  const unknown = await postForJson(
    mock,
    MESSAGES,
    messagesBody({ model: "nope" }),
  );
  assert.equal(unknown.status, 404);
  assert.deepEqual(unknown.body, {
    type: "error",
    error: {
      type: "NotFoundError",
      message: "The model `nope` does not exist.",
    },
  });
});

Deno.test("mock vllm /v1/messages speaks nixlv2 P/D: the prefill hands off, the streamed decode pulls", async () => {
  await using prefill = await createMockVllm({ name: "prefiller" });
  await using decode = await createMockVllm({ name: "decoder" });
  const p = await postForJson(
    prefill,
    MESSAGES,
    messagesBody({
      max_tokens: 1,
      max_completion_tokens: 1,
      min_tokens: 1,
      stream: false,
      kv_transfer_params: NIXL_PREFILL_PARAMS,
    }),
  );
  assert.equal(p.body.stop_reason, "max_tokens");
  const params = p.body.kv_transfer_params as Record<string, unknown>;
  assert.equal(params.do_remote_prefill, true);
  assert.equal(prefill.requests[0]?.role, "prefill");
  const response = await postJson(
    decode,
    MESSAGES,
    messagesBody({ stream: true, kv_transfer_params: params }),
  );
  const events = namedEvents(await response.text()).map(([name]) => name);
  assert.equal(events[0], "message_start");
  assert.equal(events.at(-1), "message_stop");
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "pulled");
});

Deno.test("mock vllm /v1/messages stream reports a failed KV pull as one error event", async () => {
  await using decode = await createMockVllm();
  const response = await postJson(
    decode,
    MESSAGES,
    messagesBody({
      stream: true,
      kv_transfer_params: {
        do_remote_prefill: true,
        remote_block_ids: [[1]],
        remote_engine_id: "e",
        remote_request_id: "r",
        remote_host: "127.0.0.1",
        remote_port: decode.port,
      },
    }),
  );
  assert.deepEqual(namedEvents(await response.text()), [[
    "error",
    {
      type: "error",
      error: { type: "internal_error", message: "Internal server error" },
    },
  ]]);
});

Deno.test("mock vllm answers /inference/v1/generate with token ids and its limits in sampling_params", async () => {
  await using mock = await createMockVllm();
  const { status, body } = await postForJson(mock, GENERATE, {
    model: "Qwen/Qwen3-0.6B",
    token_ids: [1, 2, 3],
    sampling_params: { max_tokens: 4, temperature: 0.7 },
    max_tokens: 1,
  }, { "x-request-id": "g1" });
  assert.equal(status, 200);
  assert.equal(body.id, "generate-tokens-g1");
  const choice = (body.choices as Record<string, unknown>[])[0];
  assert.equal(choice?.finish_reason, "length");
  assert.equal(
    (choice?.token_ids as number[]).length,
    4,
    "top-level max_tokens means nothing here",
  );
  assert.deepEqual(body.usage, {
    prompt_tokens: 3,
    total_tokens: 7,
    completion_tokens: 4,
    prompt_tokens_details: null,
  });
  assert.equal(body.kv_transfer_params, null);
});

Deno.test("mock vllm streams /inference/v1/generate as token-id chunks", async () => {
  await using mock = await createMockVllm();
  const response = await postJson(mock, GENERATE, {
    token_ids: [1, 2, 3],
    sampling_params: { max_tokens: 2 },
    stream: true,
    stream_options: { include_usage: true },
  }, { headers: { "x-request-id": "g2" } });
  const text = await response.text();
  const chunks = sseJson(text);
  assert.equal(chunks.length, 3);
  assert.equal(chunks[0]?.request_id, "generate-tokens-g2");
  const finishes = chunks.slice(0, 2).map((c) =>
    (c.choices as Record<string, unknown>[])[0]?.finish_reason
  );
  assert.deepEqual(finishes, [null, "length"]);
  assert.deepEqual(chunks[2], {
    request_id: "generate-tokens-g2",
    choices: [],
    usage: { prompt_tokens: 3, total_tokens: 5, completion_tokens: 2 },
  });
  assert.equal(sseData(text).at(-1), "[DONE]");
});

Deno.test("mock vllm /inference/v1/generate requires token_ids and sampling_params", async () => {
  await using mock = await createMockVllm();
  const noParams = await postForJson(mock, GENERATE, { token_ids: [1] });
  assert.equal(noParams.status, 400);
  assert.equal(
    (noParams.body.error as Record<string, unknown>).param,
    "body.sampling_params",
  );
  const noIds = await postForJson(mock, GENERATE, { sampling_params: {} });
  assert.equal(
    (noIds.body.error as Record<string, unknown>).param,
    "body.token_ids",
  );
});

Deno.test("mock vllm /inference/v1/generate speaks nixlv2 P/D", async () => {
  await using prefill = await createMockVllm({ name: "prefiller" });
  await using decode = await createMockVllm({
    name: "decoder",
    promptTokensDetails: true,
  });
  const p = await postForJson(prefill, GENERATE, {
    token_ids: [1, 2, 3],
    sampling_params: { max_tokens: 1, min_tokens: 1, temperature: 0.7 },
    stream: false,
    kv_transfer_params: NIXL_PREFILL_PARAMS,
  });
  const params = p.body.kv_transfer_params as Record<string, unknown>;
  assert.equal(params.remote_num_tokens, 3);
  assert.match(params.remote_request_id as string, /^generate-tokens-/);
  const d = await postForJson(decode, GENERATE, {
    token_ids: [1, 2, 3],
    sampling_params: { max_tokens: 50, temperature: 0.7 },
    kv_transfer_params: params,
  });
  assert.equal(d.status, 200);
  assert.equal(cachedTokensOf(d.body), 3);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "pulled");
});
