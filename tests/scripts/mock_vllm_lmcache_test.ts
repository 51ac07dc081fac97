import assert from "node:assert/strict";
import {
  createKvStore,
  createMockVllm,
  type MockVllm,
  type MockVllmOptions,
} from "../../scripts/mock_vllm/mod.ts";
import {
  cachedTokensOf,
  CHAT,
  chatBody,
  postForJson,
  spawnMock,
} from "./_mock_vllm_helpers.ts";

/** The client's request. */
const CLIENT_BODY = chatBody({ max_tokens: 32 });

/** The lmcache prefill leg: the client's body with token limits at 1, nothing else. */
const PREFILL_BODY = {
  ...CLIENT_BODY,
  "max_tokens": 1,
  "max_completion_tokens": 1,
};

async function lmcachePair(
  decodeOptions: MockVllmOptions = {},
): Promise<[MockVllm, MockVllm]> {
  const kvStore = createKvStore();
  return await Promise.all([
    createMockVllm({
      name: "prefiller",
      kvConnector: "lmcache",
      kvRole: "kv_producer",
      kvStore,
    }),
    createMockVllm({
      name: "decoder",
      kvConnector: "lmcache",
      kvRole: "kv_consumer",
      promptTokensDetails: true,
      kvStore,
      ...decodeOptions,
    }),
  ]);
}

Deno.test("mock vllm lmcache decode finds the prompt the prefill stored and reports it cached", async () => {
  const [prefill, decode] = await lmcachePair();
  await using _p = prefill;
  await using _d = decode;
  assert.equal((await postForJson(prefill, CHAT, PREFILL_BODY)).status, 200);
  const stored = prefill.requests[0]?.kvHandOff;
  assert.equal(stored?.connector, "lmcache");
  assert.equal(stored?.numTokens, 9);
  const { status, body } = await postForJson(decode, CHAT, CLIENT_BODY);
  assert.equal(status, 200);
  assert.equal(cachedTokensOf(body), 9);
  assert.equal((body.usage as Record<string, unknown>).completion_tokens, 12);
  assert.equal(decode.requests[0]?.role, "decode");
  assert.deepEqual(decode.requests[0]?.kvTransfer, {
    connector: "lmcache",
    remoteRequestId: stored?.key,
    outcome: "pulled",
    numTokens: 9,
  });
  assert.ok(
    decode.logs.some((l) =>
      l.includes(
        `LMCache hit for request ${
          String(body.id)
        }: 9 of 9 prompt tokens cached`,
      )
    ),
  );
});

Deno.test("mock vllm lmcache decode without a prior prefill computes every prompt token", async () => {
  const [prefill, decode] = await lmcachePair();
  await using _p = prefill;
  await using _d = decode;
  const { status, body } = await postForJson(decode, CHAT, CLIENT_BODY);
  assert.equal(status, 200);
  assert.equal(cachedTokensOf(body), 0);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "recomputed");
  assert.equal(
    decode.requests[0]?.kvTransfer?.reason,
    "prompt not in LMCache store",
  );
});

Deno.test("mock vllm lmcache decode misses when the prefill carried another prompt", async () => {
  const [prefill, decode] = await lmcachePair();
  await using _p = prefill;
  await using _d = decode;
  const other = {
    ...PREFILL_BODY,
    messages: [{ role: "user", content: "Hello there" }],
  };
  assert.equal((await postForJson(prefill, CHAT, other)).status, 200);
  const { body } = await postForJson(decode, CHAT, CLIENT_BODY);
  assert.equal(cachedTokensOf(body), 0);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "recomputed");
});

Deno.test("mock vllm lmcache consumer does not store what it computed", async () => {
  const [prefill, decode] = await lmcachePair();
  await using _p = prefill;
  await using _d = decode;
  await postForJson(decode, CHAT, CLIENT_BODY);
  const { body } = await postForJson(decode, CHAT, CLIENT_BODY);
  assert.equal(
    cachedTokensOf(body),
    0,
    "a decoder alone never warms the cache",
  );
  assert.equal(decode.requests[1]?.kvHandOff, undefined);
});

Deno.test("mock vllm lmcache mocks without a shared store do not see each other's KV", async () => {
  await using prefill = await createMockVllm({ kvConnector: "lmcache" });
  await using decode = await createMockVllm({
    kvConnector: "lmcache",
    promptTokensDetails: true,
  });
  await postForJson(prefill, CHAT, PREFILL_BODY);
  const { body } = await postForJson(decode, CHAT, CLIENT_BODY);
  assert.equal(cachedTokensOf(body), 0);
});

Deno.test("mock vllm lmcache decode reads another process's store through kvStoreUrl", async () => {
  await using prefill = await spawnMock([
    "--kv-connector",
    "lmcache",
    "--kv-role",
    "kv_producer",
    "--name",
    "prefiller",
  ]);
  await using decode = await createMockVllm({
    kvConnector: "lmcache",
    kvRole: "kv_consumer",
    kvStoreUrl: prefill.url,
    promptTokensDetails: true,
  });
  const primed = await fetch(prefill.url + CHAT, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(PREFILL_BODY),
  });
  assert.equal(primed.status, 200);
  await primed.body?.cancel();
  const { body } = await postForJson(decode, CHAT, CLIENT_BODY);
  assert.equal(cachedTokensOf(body), 9);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "pulled");
});
