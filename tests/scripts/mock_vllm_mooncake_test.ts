import assert from "node:assert/strict";
import { createMockVllm, type MockVllm } from "../../scripts/mock_vllm/mod.ts";
import {
  cachedTokensOf,
  CHAT,
  chatBody,
  postForJson,
  postJson,
} from "./_mock_vllm_helpers.ts";
import { withDeadline } from "../support/deadline.ts";

const WAIT_MS = 2_000;

async function mooncakePair(
  dataParallelSize = 1,
  waitMs = WAIT_MS,
): Promise<[MockVllm, MockVllm]> {
  return await Promise.all([
    createMockVllm({
      name: "prefiller",
      kvConnector: "mooncake",
      engineId: "engine-p",
      dataParallelSize,
    }),
    createMockVllm({
      name: "decoder",
      kvConnector: "mooncake",
      kvWaitTimeoutMs: waitMs,
      promptTokensDetails: true,
    }),
  ]);
}

/** The prefill leg: primed client body plus the Mooncake prefill params. */
function prefillLeg(transferId: string): Record<string, unknown> {
  return chatBody({
    max_tokens: 1,
    stream: false,
    kv_transfer_params: {
      do_remote_decode: true,
      do_remote_prefill: false,
      transfer_id: transferId,
    },
  });
}

/** The decode leg: client body plus the Mooncake decode params. */
function decodeLeg(
  prefill: MockVllm,
  transferId: string,
  engineId: string,
): Record<string, unknown> {
  return chatBody({
    max_tokens: 32,
    kv_transfer_params: {
      do_remote_decode: false,
      do_remote_prefill: true,
      transfer_id: transferId,
      remote_bootstrap_addr: `http://127.0.0.1:${prefill.sideChannelPort}`,
      remote_engine_id: engineId,
    },
  });
}

Deno.test("mock vllm mooncake answers /query with one engine id per data-parallel rank", async () => {
  await using single = await createMockVllm({
    kvConnector: "mooncake",
    engineId: "engine-p",
  });
  const one = await fetch(single.sideChannelUrl + "/query");
  assert.equal(one.status, 200);
  assert.deepEqual(await one.json(), { "0": { engine_id: "engine-p" } });
  assert.deepEqual(single.kvPulls, [{
    path: "/query",
    remoteRequestId: undefined,
    status: 200,
  }]);
  await using ranked = await createMockVllm({
    kvConnector: "mooncake",
    engineId: "engine-p",
    dataParallelSize: 2,
  });
  assert.deepEqual(await (await fetch(ranked.url + "/query")).json(), {
    "0": { engine_id: "engine-p_dp0" },
    "1": { engine_id: "engine-p_dp1" },
  });
  await using nixl = await createMockVllm();
  const none = await fetch(nixl.url + "/query");
  assert.equal(none.status, 404, "only a Mooncake engine serves /query");
  await none.body?.cancel();
});

Deno.test("mock vllm mooncake decode reads the transfer its concurrent prefill registered", async () => {
  const [prefill, decode] = await mooncakePair();
  await using _p = prefill;
  await using _d = decode;
  const [p, d] = await withDeadline(
    Promise.all([
      postForJson(prefill, CHAT, prefillLeg("xfer-1"), {
        "x-data-parallel-rank": "0",
      }),
      postForJson(decode, CHAT, decodeLeg(prefill, "xfer-1", "engine-p")),
    ]),
    10_000,
    "both Mooncake legs",
  );
  assert.equal(p.status, 200);
  assert.equal(d.status, 200);
  assert.equal(cachedTokensOf(d.body), 9);
  assert.equal(prefill.requests[0]?.role, "prefill");
  assert.deepEqual(prefill.requests[0]?.kvHandOff, {
    connector: "mooncake",
    key: "xfer-1",
    numTokens: 9,
  });
  assert.deepEqual(decode.requests[0]?.kvTransfer, {
    connector: "mooncake",
    remoteEngineId: "engine-p",
    remoteRequestId: "xfer-1",
    remoteHost: `http://127.0.0.1:${prefill.sideChannelPort}`,
    outcome: "pulled",
    numTokens: 9,
  });
});

Deno.test("mock vllm mooncake decode that arrives first waits for the prefill", async () => {
  const [prefill, decode] = await mooncakePair();
  await using _p = prefill;
  await using _d = decode;
  const decoded = postForJson(
    decode,
    CHAT,
    decodeLeg(prefill, "xfer-2", "engine-p"),
  );
  await withDeadline(decode.nextRequest(), 5_000, "the decode leg");
  await postForJson(prefill, CHAT, prefillLeg("xfer-2"));
  const { status } = await withDeadline(decoded, 10_000, "the decode");
  assert.equal(status, 200);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "pulled");
});

Deno.test("mock vllm mooncake decode naming another rank's engine id fails", async () => {
  const [prefill, decode] = await mooncakePair(2);
  await using _p = prefill;
  await using _d = decode;
  await postForJson(prefill, CHAT, prefillLeg("xfer-3"), {
    "x-data-parallel-rank": "1",
  });
  const { status } = await postForJson(
    decode,
    CHAT,
    decodeLeg(prefill, "xfer-3", "engine-p_dp0"),
  );
  assert.equal(status, 500);
  assert.equal(
    decode.requests[0]?.kvTransfer?.reason,
    "engine id mismatch: transfer xfer-3 is on engine engine-p_dp1, not engine-p_dp0",
  );
  const right = await postForJson(
    decode,
    CHAT,
    decodeLeg(prefill, "xfer-3", "engine-p_dp1"),
  );
  assert.equal(right.status, 200, "the refused read did not consume it");
});

Deno.test("mock vllm mooncake decode with a transfer id no prefill registered fails after the wait", async () => {
  const [prefill, decode] = await mooncakePair(1, 100);
  await using _p = prefill;
  await using _d = decode;
  await postForJson(prefill, CHAT, prefillLeg("xfer-4"));
  const { status } = await postForJson(
    decode,
    CHAT,
    decodeLeg(prefill, "xfer-other", "engine-p"),
  );
  assert.equal(status, 500);
  assert.equal(
    decode.requests[0]?.kvTransfer?.reason,
    "unknown transfer_id (no prefill registered it within 100 ms)",
  );
});

Deno.test("mock vllm mooncake transfer is read once", async () => {
  const [prefill, decode] = await mooncakePair(1, 100);
  await using _p = prefill;
  await using _d = decode;
  await postForJson(prefill, CHAT, prefillLeg("xfer-5"));
  const leg = decodeLeg(prefill, "xfer-5", "engine-p");
  assert.equal((await postForJson(decode, CHAT, leg)).status, 200);
  assert.equal((await postForJson(decode, CHAT, leg)).status, 500);
});

Deno.test("mock vllm mooncake refuses a prefill without a transfer id and a rank out of range", async () => {
  const [prefill, decode] = await mooncakePair();
  await using _p = prefill;
  await using _d = decode;
  const missing = await postForJson(
    prefill,
    CHAT,
    chatBody({ kv_transfer_params: { do_remote_decode: true } }),
  );
  assert.equal(missing.status, 400);
  assert.match(
    (missing.body.error as Record<string, unknown>).message as string,
    /transfer_id must be a non-empty string/,
  );
  const rank = await postForJson(prefill, CHAT, prefillLeg("xfer-6"), {
    "x-data-parallel-rank": "1",
  });
  assert.equal(rank.status, 400);
  assert.equal(
    (rank.body.error as Record<string, unknown>).message,
    "data_parallel_rank 1 is out of range [0, 1).",
  );
});

Deno.test("mock vllm mooncake decode with an unbracketed IPv6 bootstrap address computes the prompt", async () => {
  const [prefill, decode] = await mooncakePair();
  await using _p = prefill;
  await using _d = decode;
  const leg = decodeLeg(prefill, "xfer-7", "engine-p");
  (leg.kv_transfer_params as Record<string, unknown>).remote_bootstrap_addr =
    "http://fd00::5:8998";
  const response = await postJson(decode, CHAT, leg);
  await response.body?.cancel();
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "recomputed");
  assert.equal(
    decode.requests[0]?.kvTransfer?.reason,
    "invalid kv_transfer_params: missing remote_bootstrap_addr",
  );
});

Deno.test("mock vllm mooncake gives a transfer to one of two decodes waiting for it", async () => {
  let reads = 0;
  const { promise: bothWaiting, resolve } = Promise.withResolvers<void>();
  await using prefill = await createMockVllm({
    kvConnector: "mooncake",
    engineId: "engine-p",
    log: (line) => {
      if (line.includes("reads transfer xfer-8") && ++reads === 2) resolve();
    },
  });
  await using decode = await createMockVllm({
    kvConnector: "mooncake",
    kvWaitTimeoutMs: 60_000,
  });
  const leg = decodeLeg(prefill, "xfer-8", "engine-p");
  const both = Promise.all([
    postForJson(decode, CHAT, leg),
    postForJson(decode, CHAT, leg),
  ]);
  await withDeadline(bothWaiting, 5_000, "both reads to wait at the prefiller");
  await postForJson(prefill, CHAT, prefillLeg("xfer-8"));
  const answers = await withDeadline(both, 5_000, "both decodes");
  assert.deepEqual(answers.map((r) => r.status).sort(), [200, 500]);
  assert.deepEqual(
    decode.requests.map((r) => r.kvTransfer?.reason).filter(Boolean),
    ["transfer xfer-8 was already read"],
  );
});
