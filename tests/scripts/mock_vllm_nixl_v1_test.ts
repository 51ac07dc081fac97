import assert from "node:assert/strict";
import { createMockVllm, type MockVllm } from "../../scripts/mock_vllm/mod.ts";
import { CHAT, chatBody, postForJson, postJson } from "./_mock_vllm_helpers.ts";

/** The legacy prefill leg: the client's body plus top-level do_remote_decode, stream false. */
function prefillLeg(): Record<string, unknown> {
  return chatBody({ max_tokens: 32, do_remote_decode: true, stream: false });
}

/** Sends the legacy prefill leg with `x-request-id` and returns the answer. */
async function prefillV1(
  prefill: MockVllm,
  requestId: string,
): Promise<Record<string, unknown>> {
  const { status, body } = await postForJson(prefill, CHAT, prefillLeg(), {
    "x-request-id": requestId,
  });
  assert.equal(status, 200);
  return body;
}

/** The legacy decode leg: the client's body plus top-level do_remote_prefill and the four remote fields. */
function decodeLeg(
  answer: Record<string, unknown>,
): Record<string, unknown> {
  return chatBody({
    max_tokens: 32,
    do_remote_prefill: true,
    remote_block_ids: answer.remote_block_ids,
    remote_engine_id: answer.remote_engine_id,
    remote_host: answer.remote_host,
    remote_port: answer.remote_port,
  });
}

function nixlMocks(): Promise<[MockVllm, MockVllm]> {
  return Promise.all([
    createMockVllm({
      name: "prefiller",
      kvConnector: "nixl",
      engineId: "engine-p",
    }),
    createMockVllm({
      name: "decoder",
      kvConnector: "nixl",
      promptTokensDetails: true,
    }),
  ]);
}

Deno.test("mock vllm nixl prefill answers top-level remote fields with a flat block list", async () => {
  const [prefill, decode] = await nixlMocks();
  await using _p = prefill;
  await using _d = decode;
  const answer = await prefillV1(prefill, "req-1");
  assert.equal(answer.id, "chatcmpl-req-1");
  assert.deepEqual(answer.remote_block_ids, [1]);
  assert.equal(answer.remote_engine_id, "engine-p");
  assert.equal(answer.remote_host, "127.0.0.1");
  assert.equal(answer.remote_port, prefill.port);
  assert.equal(answer.kv_transfer_params, null);
  assert.equal(prefill.requests[0]?.role, "prefill");
  assert.deepEqual(prefill.requests[0]?.kvHandOff, {
    connector: "nixl",
    key: "chatcmpl-req-1",
    numTokens: 9,
  });
});

Deno.test("mock vllm nixl decode with the prefill's request id pulls the blocks", async () => {
  const [prefill, decode] = await nixlMocks();
  await using _p = prefill;
  await using _d = decode;
  const answer = await prefillV1(prefill, "req-2");
  const { status, body } = await postForJson(decode, CHAT, decodeLeg(answer), {
    "x-request-id": "req-2",
  });
  assert.equal(status, 200);
  assert.deepEqual(body.usage, {
    prompt_tokens: 9,
    total_tokens: 21,
    completion_tokens: 12,
    prompt_tokens_details: { cached_tokens: 9 },
  });
  assert.equal(decode.requests[0]?.role, "decode");
  assert.deepEqual(decode.requests[0]?.kvTransfer, {
    connector: "nixl",
    outcome: "pulled",
    remoteEngineId: "engine-p",
    remoteRequestId: "chatcmpl-req-2",
    remoteHost: "127.0.0.1",
    remotePort: prefill.port,
    numBlocks: 1,
    numTokens: 9,
  });
  assert.deepEqual(prefill.kvPulls, [{
    path: "/_mock/nixl/pull",
    remoteRequestId: "chatcmpl-req-2",
    status: 200,
  }]);
});

Deno.test("mock vllm nixl decode under another request id finds no blocks and fails", async () => {
  const [prefill, decode] = await nixlMocks();
  await using _p = prefill;
  await using _d = decode;
  const answer = await prefillV1(prefill, "req-3");
  const { status, body } = await postForJson(decode, CHAT, decodeLeg(answer), {
    "x-request-id": "another-id",
  });
  assert.equal(status, 500);
  assert.equal(
    (body.error as Record<string, unknown>).type,
    "InternalServerError",
  );
  assert.equal(decode.requests[0]?.kvTransfer?.reason, "unknown handle");
});

Deno.test("mock vllm nixl decode refuses per-group block ids the legacy prefill never issued", async () => {
  const [prefill, decode] = await nixlMocks();
  await using _p = prefill;
  await using _d = decode;
  const answer = await prefillV1(prefill, "req-4");
  const nested = decodeLeg({
    ...answer,
    remote_block_ids: [answer.remote_block_ids],
  });
  const { status } = await postForJson(decode, CHAT, nested, {
    "x-request-id": "req-4",
  });
  assert.equal(status, 500);
  assert.equal(decode.requests[0]?.kvTransfer?.reason, "block ids mismatch");
});

Deno.test("mock vllm nixl ignores kv_transfer_params: a nixlv2-shaped exchange hands nothing off", async () => {
  const [prefill, decode] = await nixlMocks();
  await using _p = prefill;
  await using _d = decode;
  const { body } = await postForJson(
    prefill,
    CHAT,
    chatBody({
      max_tokens: 1,
      stream: false,
      kv_transfer_params: { do_remote_decode: true },
    }),
    { "x-request-id": "req-5" },
  );
  assert.equal(prefill.requests[0]?.role, "plain");
  assert.equal(body.remote_block_ids, undefined);
  assert.equal(body.kv_transfer_params, null);
  const decoded = await postJson(
    decode,
    CHAT,
    chatBody({ kv_transfer_params: { do_remote_prefill: true } }),
  );
  await decoded.body?.cancel();
  assert.equal(decode.requests[0]?.role, "plain");
  assert.equal(decode.requests[0]?.kvTransfer, undefined);
});

Deno.test("mock vllm nixl decode missing a remote field computes the prompt itself", async () => {
  const [prefill, decode] = await nixlMocks();
  await using _p = prefill;
  await using _d = decode;
  const answer = await prefillV1(prefill, "req-6");
  const { remote_host: _dropped, ...leg } = decodeLeg(answer);
  const { status } = await postForJson(decode, CHAT, leg, {
    "x-request-id": "req-6",
  });
  assert.equal(status, 200);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "recomputed");
  assert.equal(
    decode.requests[0]?.kvTransfer?.reason,
    "invalid kv_transfer_params: missing remote_host",
  );
  assert.deepEqual(prefill.kvPulls, []);
});
