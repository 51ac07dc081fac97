import assert from "node:assert/strict";
import { createMockVllm, type MockVllm } from "../../scripts/mock_vllm/mod.ts";
import { formatHostPort } from "../../scripts/mock_vllm/peer.ts";
import {
  CHAT,
  chatBody,
  COMPLETIONS,
  postJson,
  prefillParams,
  sseData,
} from "./_mock_vllm_helpers.ts";

/** Sends the decode leg with `params` and returns the parsed JSON answer. */
async function decodeWith(
  decode: MockVllm,
  params: unknown,
  extra: Record<string, unknown> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await postJson(
    decode,
    CHAT,
    chatBody({ max_tokens: 4, kv_transfer_params: params, ...extra }),
  );
  return { status: response.status, body: await response.json() };
}

Deno.test("mock vllm prefill returns kv_transfer_params in vLLM's newest shape", async () => {
  await using prefill = await createMockVllm({
    name: "prefiller",
    engineId: "engine-p",
  });
  const response = await postJson(
    prefill,
    CHAT,
    chatBody({
      max_tokens: 1,
      stream: false,
      kv_transfer_params: { do_remote_decode: true },
    }),
    { headers: { "x-request-id": "req-1" } },
  );
  const body = await response.json();
  assert.equal(body.id, "chatcmpl-req-1");
  assert.equal(body.choices[0].finish_reason, "length");
  assert.equal(body.usage.completion_tokens, 1);
  const params = body.kv_transfer_params;
  assert.match(params.remote_request_id, /^chatcmpl-req-1-[0-9a-f]{8}$/);
  assert.deepEqual(params, {
    do_remote_prefill: true,
    do_remote_decode: false,
    remote_block_ids: [[1]],
    remote_engine_id: "engine-p",
    remote_request_id: params.remote_request_id,
    remote_host: "127.0.0.1",
    remote_port: prefill.port,
    tp_size: 1,
    dcp_size: 1,
    pp_size: 1,
    remote_num_tokens: 9,
    remote_blocks_expiry_time: null,
    transfer_mode: "pull",
  });
  assert.equal(prefill.requests[0]?.role, "prefill");
  assert.ok(
    prefill.logs.some((l) =>
      l.includes("[logger.py:43] Received request chatcmpl-req-1: prompt: ")
    ),
  );
  assert.ok(
    prefill.logs.some((l) =>
      l.includes(
        "[nixl_connector.py:1003] NIXLConnector request_finished, request_status=FINISHED_LENGTH_CAPPED, " +
          "kv_transfer_params={'do_remote_decode': True}",
      )
    ),
  );
});

Deno.test("mock vllm prefill allocates one block per 16 prompt tokens from a per-engine counter", async () => {
  await using prefill = await createMockVllm({ sideChannelHost: "10.0.0.5" });
  const prompt = Array.from({ length: 40 }, (_, i) => `w${i}`).join(" ");
  const first = await (await postJson(prefill, COMPLETIONS, {
    prompt,
    max_tokens: 1,
    kv_transfer_params: { do_remote_decode: true },
  })).json();
  assert.deepEqual(first.kv_transfer_params.remote_block_ids, [[1, 2, 3]]);
  assert.equal(first.kv_transfer_params.remote_num_tokens, 40);
  assert.equal(first.kv_transfer_params.remote_host, "10.0.0.5");
  // Completions engine ids carry the prompt index before the random suffix.
  assert.match(
    first.kv_transfer_params.remote_request_id,
    /^cmpl-[0-9a-f]{32}-0-[0-9a-f]{8}$/,
  );
  const second = await prefillParams(prefill);
  assert.deepEqual(second.remote_block_ids, [[4]]);
});

Deno.test("mock vllm decode pulls KV from the prefiller named in kv_transfer_params", async () => {
  await using prefill = await createMockVllm({ name: "prefiller" });
  await using decode = await createMockVllm({
    name: "decoder",
    promptTokensDetails: true,
  });
  const params = await prefillParams(prefill);
  const { status, body } = await decodeWith(decode, params);
  assert.equal(status, 200);
  assert.equal(body.kv_transfer_params, null);
  assert.deepEqual(body.usage, {
    prompt_tokens: 9,
    total_tokens: 13,
    completion_tokens: 4,
    prompt_tokens_details: { cached_tokens: 9 },
  });
  const recorded = decode.requests[0];
  assert.equal(recorded?.role, "decode");
  assert.deepEqual(recorded?.kvTransfer, {
    connector: "nixlv2",
    outcome: "pulled",
    remoteEngineId: prefill.engineId,
    remoteRequestId: params.remote_request_id,
    remoteHost: "127.0.0.1",
    remotePort: prefill.port,
    numBlocks: 1,
    numTokens: 9,
  });
  assert.deepEqual(prefill.kvPulls, [{
    path: "/_mock/nixl/pull",
    remoteRequestId: params.remote_request_id,
    status: 200,
  }]);
  assert.equal(
    prefill.requests.length,
    1,
    "side-channel pulls are not recorded as API requests",
  );
  assert.ok(
    decode.logs.some((l) =>
      l.includes(
        `[nixl_connector.py:646] start_load_kv for request ${
          String(body.id)
        } from remote engine ${prefill.engineId}. ` +
          "Num local_block_ids: 1. Num remote_block_ids: 1",
      )
    ),
  );
  const metrics = await (await fetch(decode.url + "/metrics")).text();
  assert.ok(metrics.includes('mock_vllm:kv_pulls_total{outcome="pulled"} 1.0'));
});

Deno.test("mock vllm decode answers 500 when the prefiller never issued the handle", async () => {
  await using prefill = await createMockVllm();
  await using decode = await createMockVllm();
  const params = {
    ...await prefillParams(prefill),
    "remote_request_id": "chatcmpl-forged-00000000",
  };
  const { status, body } = await decodeWith(decode, params);
  assert.equal(status, 500);
  assert.deepEqual(body, {
    error: {
      message: "Internal server error",
      type: "InternalServerError",
      param: null,
      code: 500,
    },
  });
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "failed");
  assert.equal(decode.requests[0]?.kvTransfer?.reason, "unknown handle");
  assert.equal(decode.requests[0]?.kvTransfer?.failurePolicy, "fail");
  assert.ok(
    decode.logs.some((l) =>
      / ERROR .*KV load failed for request chatcmpl-.*: unknown handle$/.test(l)
    ),
  );
  assert.deepEqual(prefill.kvPulls.map((p) => [p.status, p.reason]), [[
    404,
    "unknown handle",
  ]]);
});

Deno.test("mock vllm decode fails when the same handle is pulled twice", async () => {
  await using prefill = await createMockVllm();
  await using decode = await createMockVllm();
  const params = await prefillParams(prefill);
  assert.equal((await decodeWith(decode, params)).status, 200);
  assert.equal((await decodeWith(decode, params)).status, 500);
  assert.deepEqual(decode.requests.map((r) => r.kvTransfer?.reason), [
    undefined,
    "handle already consumed",
  ]);
  assert.deepEqual(prefill.kvPulls.map((p) => p.status), [200, 409]);
});

Deno.test("mock vllm decode fails after the prefiller's lease expired", async () => {
  await using prefill = await createMockVllm({ kvLeaseMs: 1 });
  await using decode = await createMockVllm();
  const params = await prefillParams(prefill);
  // Expiry is a clock comparison at pull time; 5 ms is well past a 1 ms lease.
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal((await decodeWith(decode, params)).status, 500);
  assert.equal(decode.requests[0]?.kvTransfer?.reason, "lease expired");
  assert.equal(prefill.kvPulls[0]?.status, 410);
});

Deno.test("mock vllm decode fails when the engine id is not the prefiller's", async () => {
  await using prefill = await createMockVllm();
  await using decode = await createMockVllm();
  const params = {
    ...await prefillParams(prefill),
    "remote_engine_id": "someone-else",
  };
  assert.equal((await decodeWith(decode, params)).status, 500);
  assert.equal(decode.requests[0]?.kvTransfer?.reason, "engine id mismatch");
});

Deno.test("mock vllm decode fails when remote_block_ids were not copied verbatim", async () => {
  await using prefill = await createMockVllm();
  await using decode = await createMockVllm();
  const params = await prefillParams(prefill);
  const flattened = {
    ...params,
    "remote_block_ids": (params.remote_block_ids as number[][]).flat(),
  };
  assert.equal((await decodeWith(decode, flattened)).status, 500);
  assert.equal(decode.requests[0]?.kvTransfer?.reason, "block ids mismatch");
});

Deno.test("mock vllm decode recomputes when kv_transfer_params miss required fields", async () => {
  await using prefill = await createMockVllm();
  await using decode = await createMockVllm();
  const { remote_request_id: _dropped, ...params } = await prefillParams(
    prefill,
  );
  const { status, body } = await decodeWith(decode, params);
  assert.equal(status, 200);
  assert.equal((body.usage as Record<string, unknown>).completion_tokens, 4);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "recomputed");
  assert.equal(
    decode.requests[0]?.kvTransfer?.reason,
    "invalid kv_transfer_params: missing remote_request_id",
  );
  assert.ok(
    decode.logs.some((l) =>
      l.includes("This request will not utilize KVTransfer")
    ),
  );
  assert.deepEqual(prefill.kvPulls, []);
});

Deno.test("mock vllm decode recomputes when remote_block_ids are empty", async () => {
  await using decode = await createMockVllm();
  const { status } = await decodeWith(decode, {
    do_remote_prefill: true,
    remote_block_ids: [],
    remote_engine_id: "e",
    remote_request_id: "r",
    remote_host: "127.0.0.1",
    remote_port: 1,
  });
  assert.equal(status, 200);
  assert.equal(
    decode.requests[0]?.kvTransfer?.reason,
    "invalid kv_transfer_params: missing remote_block_ids",
  );
});

Deno.test("mock vllm decode streams one error frame then [DONE] when the pull fails", async () => {
  await using prefill = await createMockVllm();
  await using decode = await createMockVllm();
  const params = {
    ...await prefillParams(prefill),
    "remote_request_id": "chatcmpl-gone-00000000",
  };
  const response = await postJson(
    decode,
    CHAT,
    chatBody({ stream: true, kv_transfer_params: params }),
  );
  assert.equal(response.status, 200);
  assert.deepEqual(sseData(await response.text()), [
    JSON.stringify({
      error: {
        message: "Internal server error",
        type: "InternalServerError",
        param: null,
        code: 500,
      },
    }),
    "[DONE]",
  ]);
  assert.equal(await decode.requests[0]?.finished, "completed");
});

Deno.test("mock vllm decode under policy recompute still answers after a failed pull", async () => {
  await using prefill = await createMockVllm();
  await using decode = await createMockVllm({
    kvLoadFailurePolicy: "recompute",
  });
  const params = {
    ...await prefillParams(prefill),
    "remote_request_id": "chatcmpl-gone-00000000",
  };
  const { status } = await decodeWith(decode, params);
  assert.equal(status, 200);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "failed");
  assert.equal(decode.requests[0]?.kvTransfer?.failurePolicy, "recompute");
});

Deno.test("mock vllm decode reports an unreachable prefiller as a failed pull", async () => {
  const gone = await createMockVllm();
  const params = await prefillParams(gone);
  await gone.close();
  await using decode = await createMockVllm();
  assert.equal((await decodeWith(decode, params)).status, 500);
  assert.match(
    decode.requests[0]?.kvTransfer?.reason ?? "",
    /^cannot reach remote engine at 127\.0\.0\.1:\d+: /,
  );
});

Deno.test("mock vllm decode with kv_transfer_params null is a plain generation", async () => {
  await using decode = await createMockVllm();
  const { status } = await decodeWith(decode, null);
  assert.equal(status, 200);
  assert.equal(decode.requests[0]?.role, "plain");
  assert.equal(decode.requests[0]?.kvTransfer, undefined);
});

Deno.test("mock vllm prefill with stream true streams without kv_transfer_params and warns", async () => {
  await using prefill = await createMockVllm();
  const response = await postJson(
    prefill,
    CHAT,
    chatBody({ stream: true, kv_transfer_params: { do_remote_decode: true } }),
  );
  const text = await response.text();
  assert.ok(!text.includes("kv_transfer_params"));
  assert.ok(text.endsWith("data: [DONE]\n\n"));
  assert.equal(prefill.requests[0]?.role, "prefill");
  assert.ok(
    prefill.logs.some((l) =>
      l.includes(" WARNING ") && l.includes("stream=true")
    ),
  );
});

Deno.test("mock vllm serves the KV side channel on its own port when asked", async () => {
  await using prefill = await createMockVllm({ sideChannelPort: 0 });
  await using decode = await createMockVllm();
  assert.notEqual(prefill.sideChannelPort, prefill.port);
  const params = await prefillParams(prefill);
  assert.equal(params.remote_port, prefill.sideChannelPort);
  assert.equal((await decodeWith(decode, params)).status, 200);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "pulled");
});

Deno.test("mock vllm kv pull brackets IPv6 hosts", () => {
  assert.equal(formatHostPort("::1", 5600), "[::1]:5600");
  assert.equal(formatHostPort("[::1]", 5600), "[::1]:5600");
  assert.equal(formatHostPort("10.0.0.5", 5600), "10.0.0.5:5600");
});

Deno.test("mock vllm decode with do_remote_prefill false computes the prompt and pulls nothing", async () => {
  await using prefill = await createMockVllm();
  await using decode = await createMockVllm({ promptTokensDetails: true });
  const params = await prefillParams(prefill);
  const { status, body } = await decodeWith(decode, {
    ...params,
    do_remote_prefill: false,
  });
  assert.equal(status, 200);
  assert.equal(decode.requests[0]?.role, "plain");
  assert.equal(decode.requests[0]?.kvTransfer, undefined);
  assert.deepEqual(
    (body.usage as Record<string, unknown>).prompt_tokens_details,
    { cached_tokens: 0 },
  );
  assert.deepEqual(prefill.kvPulls, [], "no pull reached the prefiller");
  // The same params with the flag set are a valid pull: the handle was left alone.
  assert.equal((await decodeWith(decode, params)).status, 200);
  assert.equal(decode.requests[1]?.kvTransfer?.outcome, "pulled");
});

Deno.test("mock vllm nixlv2 prefill with remote_kv_source reads the prefix, then hands off as usual", async () => {
  await using source = await createMockVllm({ name: "source" });
  await using prefill = await createMockVllm({ name: "prefiller" });
  await using decode = await createMockVllm({ name: "decoder" });
  await (await postJson(source, CHAT, chatBody())).body?.cancel();
  const response = await postJson(
    prefill,
    CHAT,
    chatBody({
      max_tokens: 1,
      stream: false,
      kv_transfer_params: {
        do_remote_decode: true,
        do_remote_prefill: false,
        remote_engine_id: null,
        remote_block_ids: null,
        remote_host: null,
        remote_port: null,
        remote_kv_source: {
          kv_request_id: "src-1",
          remote_host: "127.0.0.1",
          remote_port: source.sideChannelPort,
        },
      },
    }),
  );
  const params = (await response.json()).kv_transfer_params;
  assert.equal(prefill.requests[0]?.role, "prefill");
  assert.equal(prefill.requests[0]?.kvTransfer?.outcome, "pulled");
  assert.equal(prefill.requests[0]?.kvTransfer?.remoteRequestId, "src-1");
  assert.deepEqual(source.kvPulls.map((p) => [p.path, p.status]), [[
    "/_mock/p2p/pull",
    200,
  ]]);
  assert.equal((await decodeWith(decode, params)).status, 200);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "pulled");
});

Deno.test("mock vllm nixlv2 decode-only request with remote_kv_source reads the prefix from that peer", async () => {
  await using source = await createMockVllm({ name: "source" });
  await using decode = await createMockVllm({ promptTokensDetails: true });
  await (await postJson(source, CHAT, chatBody())).body?.cancel();
  const { status, body } = await decodeWith(decode, {
    remote_kv_source: {
      kv_request_id: "src-2",
      remote_host: "127.0.0.1",
      remote_port: source.sideChannelPort,
    },
  });
  assert.equal(status, 200);
  assert.deepEqual(
    (body.usage as Record<string, unknown>).prompt_tokens_details,
    { cached_tokens: 9 },
  );
  assert.equal(decode.requests[0]?.role, "plain");
  assert.equal(decode.requests[0]?.kvTransfer?.connector, "nixlv2");
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "pulled");
});
