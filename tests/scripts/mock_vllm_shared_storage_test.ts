import assert from "node:assert/strict";
import {
  createKvStore,
  createMockVllm,
  type MockVllm,
} from "../../scripts/mock_vllm/mod.ts";
import {
  cachedTokensOf,
  CHAT,
  chatBody,
  COMPLETIONS,
  postForJson,
  postJson,
  sseData,
} from "./_mock_vllm_helpers.ts";

/** The client's request in the decode-first flow. */
const CLIENT_BODY = chatBody({ max_tokens: 32, cache_hit_threshold: 0.5 });

/** The sidecar's prefill leg: limits at 1, threshold 0. */
const PREFILL_BODY = {
  ...CLIENT_BODY,
  "max_tokens": 1,
  "max_completion_tokens": 1,
  "cache_hit_threshold": 0,
};

/** The sidecar's decode leg after a prefill: threshold 0. */
const DECODE_BODY = { ...CLIENT_BODY, "cache_hit_threshold": 0 };

async function storagePair(): Promise<[MockVllm, MockVllm]> {
  const kvStore = createKvStore();
  return await Promise.all([
    createMockVllm({
      name: "prefiller",
      kvConnector: "shared-storage",
      kvRole: "kv_producer",
      kvStore,
    }),
    createMockVllm({
      name: "decoder",
      kvConnector: "shared-storage",
      kvRole: "kv_consumer",
      kvStore,
      promptTokensDetails: true,
    }),
  ]);
}

Deno.test("mock vllm shared-storage decode below cache_hit_threshold finishes with cache_threshold", async () => {
  const [prefill, decode] = await storagePair();
  await using _p = prefill;
  await using _d = decode;
  const { status, body } = await postForJson(decode, CHAT, CLIENT_BODY);
  assert.equal(status, 200);
  const choice = (body.choices as Record<string, unknown>[])[0];
  assert.equal(choice?.finish_reason, "cache_threshold");
  assert.equal((choice?.message as Record<string, unknown>).content, "");
  assert.deepEqual(body.usage, {
    prompt_tokens: 9,
    total_tokens: 9,
    completion_tokens: 0,
    prompt_tokens_details: { cached_tokens: 0 },
  });
  assert.equal(body.kv_transfer_params, null);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "recomputed");
  const metrics = await (await fetch(decode.url + "/metrics")).text();
  assert.ok(metrics.includes('finished_reason="cache_threshold"'));
});

Deno.test("mock vllm shared-storage decode after a prefill serves the stored prompt", async () => {
  const [prefill, decode] = await storagePair();
  await using _p = prefill;
  await using _d = decode;
  assert.equal((await postForJson(prefill, CHAT, PREFILL_BODY)).status, 200);
  assert.equal(prefill.requests[0]?.kvHandOff?.connector, "shared-storage");
  const { body } = await postForJson(decode, CHAT, DECODE_BODY);
  const choice = (body.choices as Record<string, unknown>[])[0];
  assert.equal(choice?.finish_reason, "stop");
  assert.equal(cachedTokensOf(body), 9);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "pulled");
  // The client's own threshold is now met too.
  const again = await postForJson(decode, CHAT, CLIENT_BODY);
  assert.equal(
    (again.body.choices as Record<string, unknown>[])[0]?.finish_reason,
    "stop",
  );
});

Deno.test("mock vllm shared-storage streams cache_threshold as a role chunk then a finish chunk", async () => {
  const [prefill, decode] = await storagePair();
  await using _p = prefill;
  await using _d = decode;
  const response = await postJson(decode, CHAT, {
    ...CLIENT_BODY,
    stream: true,
    stream_options: { include_usage: true },
  }, { headers: { "x-request-id": "dfirst" } });
  assert.equal(response.status, 200);
  const frames = sseData(await response.text()).map((d) =>
    d === "[DONE]" ? d : JSON.parse(d)
  );
  const head = {
    id: "chatcmpl-dfirst",
    object: "chat.completion.chunk",
    created: frames[0].created,
    model: "Qwen/Qwen3-0.6B",
  };
  assert.deepEqual(frames, [
    {
      ...head,
      choices: [{
        index: 0,
        delta: { role: "assistant", content: "" },
        logprobs: null,
        finish_reason: null,
      }],
      prompt_token_ids: null,
    },
    {
      ...head,
      choices: [{
        index: 0,
        delta: { content: "" },
        logprobs: null,
        finish_reason: "cache_threshold",
        stop_reason: null,
        token_ids: null,
      }],
    },
    {
      ...head,
      choices: [],
      usage: {
        prompt_tokens: 9,
        total_tokens: 9,
        completion_tokens: 0,
        prompt_tokens_details: { cached_tokens: 0 },
      },
    },
    "[DONE]",
  ]);
});

Deno.test("mock vllm shared-storage completions stream carries cache_threshold in its first chunk", async () => {
  const [prefill, decode] = await storagePair();
  await using _p = prefill;
  await using _d = decode;
  const response = await postJson(decode, COMPLETIONS, {
    prompt: "The capital of France is",
    cache_hit_threshold: 1,
    stream: true,
  });
  const frames = sseData(await response.text());
  assert.equal(frames.length, 2);
  const chunk = JSON.parse(frames[0] ?? "{}");
  assert.equal(chunk.choices[0].finish_reason, "cache_threshold");
  assert.equal(chunk.choices[0].text, "");
});

Deno.test("mock vllm shared-storage decode of another prompt than the prefill's stays below the threshold", async () => {
  const [prefill, decode] = await storagePair();
  await using _p = prefill;
  await using _d = decode;
  await postForJson(prefill, CHAT, {
    ...PREFILL_BODY,
    messages: [{ role: "user", content: "Something else" }],
  });
  const { body } = await postForJson(decode, CHAT, CLIENT_BODY);
  assert.equal(
    (body.choices as Record<string, unknown>[])[0]?.finish_reason,
    "cache_threshold",
  );
});

Deno.test("mock vllm rejects a cache_hit_threshold outside 0..1", async () => {
  await using mock = await createMockVllm({ kvConnector: "shared-storage" });
  for (const bad of [1.5, -0.1, "0.5"]) {
    const { status, body } = await postForJson(
      mock,
      CHAT,
      chatBody({ cache_hit_threshold: bad }),
    );
    assert.equal(status, 400, JSON.stringify(bad));
    assert.equal(
      (body.error as Record<string, unknown>).param,
      "body.cache_hit_threshold",
    );
  }
});

Deno.test("mock vllm forces cache_threshold with X-Cache-Threshold-Finish-Reason", async () => {
  await using mock = await createMockVllm();
  const { body } = await postForJson(mock, CHAT, chatBody(), {
    "x-cache-threshold-finish-reason": "true",
  });
  assert.equal(
    (body.choices as Record<string, unknown>[])[0]?.finish_reason,
    "cache_threshold",
  );
});
