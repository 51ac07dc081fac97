import assert from "node:assert/strict";
import { createMockVllm, type MockVllm } from "../../scripts/mock_vllm/mod.ts";
import {
  cachedTokensOf,
  CHAT,
  chatBody,
  postForJson,
} from "./_mock_vllm_helpers.ts";
import { withDeadline } from "../support/deadline.ts";

const WAIT_MS = 2_000;

async function offloadingPair(
  waitMs = WAIT_MS,
): Promise<[MockVllm, MockVllm]> {
  return await Promise.all([
    createMockVllm({ name: "prefiller", kvConnector: "offloading" }),
    createMockVllm({
      name: "decoder",
      kvConnector: "offloading",
      kvWaitTimeoutMs: waitMs,
      promptTokensDetails: true,
    }),
  ]);
}

/** The prefill leg: primed client body plus `remote_decoder`. */
function prefillLeg(kvRequestId: string): Record<string, unknown> {
  return chatBody({
    max_tokens: 1,
    stream: false,
    kv_transfer_params: { remote_decoder: { kv_request_id: kvRequestId } },
  });
}

/** The decode leg: client body plus `remote_prefiller` naming `peer`'s P2P port. */
function decodeLeg(
  peer: MockVllm,
  kvRequestId: string,
): Record<string, unknown> {
  return chatBody({
    max_tokens: 32,
    kv_transfer_params: {
      remote_prefiller: {
        kv_request_id: kvRequestId,
        remote_host: "127.0.0.1",
        remote_port: peer.sideChannelPort,
      },
    },
  });
}

Deno.test("mock vllm offloading decode pulls from the prefiller it is told, concurrently", async () => {
  const [prefill, decode] = await offloadingPair();
  await using _p = prefill;
  await using _d = decode;
  const [p, d] = await withDeadline(
    Promise.all([
      postForJson(prefill, CHAT, prefillLeg("kv-1")),
      postForJson(decode, CHAT, decodeLeg(prefill, "kv-1")),
    ]),
    10_000,
    "both offloading legs",
  );
  assert.equal(p.status, 200);
  assert.equal(d.status, 200);
  assert.equal(cachedTokensOf(d.body), 9);
  assert.equal(prefill.requests[0]?.role, "prefill");
  assert.equal(decode.requests[0]?.role, "decode");
  assert.deepEqual(prefill.requests[0]?.kvHandOff, {
    connector: "offloading",
    key: "kv-1",
    numTokens: 9,
  });
  assert.deepEqual(decode.requests[0]?.kvTransfer, {
    connector: "offloading",
    remoteRequestId: "kv-1",
    remoteHost: "127.0.0.1",
    remotePort: prefill.sideChannelPort,
    outcome: "pulled",
    numTokens: 9,
  });
  assert.deepEqual(prefill.kvPulls, [{
    path: "/_mock/p2p/pull",
    remoteRequestId: "kv-1",
    status: 200,
  }]);
});

Deno.test("mock vllm offloading decode naming a prefiller that never prefilled the request fails", async () => {
  const [prefill, decode] = await offloadingPair(100);
  await using _p = prefill;
  await using _d = decode;
  await using bystander = await createMockVllm({ kvConnector: "offloading" });
  await postForJson(prefill, CHAT, prefillLeg("kv-2"));
  const { status } = await postForJson(
    decode,
    CHAT,
    decodeLeg(bystander, "kv-2"),
  );
  assert.equal(status, 500);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "failed");
  assert.equal(
    decode.requests[0]?.kvTransfer?.reason,
    "unknown kv_request_id (no prefill kept it within 100 ms)",
  );
  assert.equal(bystander.kvPulls[0]?.status, 404);
});

Deno.test("mock vllm offloading decode fails when the prefill computed another prompt", async () => {
  const [prefill, decode] = await offloadingPair();
  await using _p = prefill;
  await using _d = decode;
  const other = {
    ...prefillLeg("kv-3"),
    messages: [{ role: "user", content: "Something else" }],
  };
  await postForJson(prefill, CHAT, other);
  const { status } = await postForJson(
    decode,
    CHAT,
    decodeLeg(prefill, "kv-3"),
  );
  assert.equal(status, 500);
  assert.match(decode.requests[0]?.kvTransfer?.reason ?? "", /prompt mismatch/);
});

Deno.test("mock vllm offloading ignores the pre-rename keys and says so", async () => {
  const [prefill, decode] = await offloadingPair();
  await using _p = prefill;
  await using _d = decode;
  const { status } = await postForJson(
    decode,
    CHAT,
    chatBody({
      kv_transfer_params: {
        prefill: {
          kv_request_id: "kv-4",
          remote_host: "127.0.0.1",
          remote_port: prefill.sideChannelPort,
        },
      },
    }),
  );
  assert.equal(status, 200);
  assert.equal(decode.requests[0]?.role, "plain");
  assert.equal(decode.requests[0]?.kvTransfer, undefined);
  assert.ok(
    decode.logs.some((l) =>
      l.includes(" WARNING ") &&
      l.includes('Ignoring kv_transfer_params keys "prefill"')
    ),
  );
});

Deno.test("mock vllm offloading refuses a remote_decoder without kv_request_id", async () => {
  await using prefill = await createMockVllm({ kvConnector: "offloading" });
  const { status, body } = await postForJson(
    prefill,
    CHAT,
    chatBody({ kv_transfer_params: { remote_decoder: {} } }),
  );
  assert.equal(status, 400);
  assert.equal(
    (body.error as Record<string, unknown>).message,
    "kv_transfer_params.remote_decoder.kv_request_id must be a non-empty string",
  );
});

Deno.test("mock vllm offloading decode-only request pulls the cached prefix from remote_kv_source", async () => {
  await using source = await createMockVllm({
    name: "source",
    kvConnector: "offloading",
  });
  await using decode = await createMockVllm({
    kvConnector: "offloading",
    promptTokensDetails: true,
  });
  await postForJson(source, CHAT, chatBody());
  const { status, body } = await postForJson(
    decode,
    CHAT,
    chatBody({
      kv_transfer_params: {
        remote_kv_source: {
          kv_request_id: "fresh-1",
          remote_host: "127.0.0.1",
          remote_port: source.sideChannelPort,
        },
      },
    }),
  );
  assert.equal(status, 200);
  assert.equal(cachedTokensOf(body), 9);
  assert.equal(decode.requests[0]?.role, "plain");
  assert.deepEqual(decode.requests[0]?.kvTransfer, {
    connector: "offloading",
    remoteRequestId: "fresh-1",
    remoteHost: "127.0.0.1",
    remotePort: source.sideChannelPort,
    outcome: "pulled",
    numTokens: 9,
  });
});

Deno.test("mock vllm offloading prefill reads its prefix from remote_kv_source, then keeps it for the decoder", async () => {
  const [prefill, decode] = await offloadingPair();
  await using _p = prefill;
  await using _d = decode;
  await using source = await createMockVllm({ kvConnector: "offloading" });
  await postForJson(source, CHAT, chatBody());
  const leg = prefillLeg("kv-5");
  (leg.kv_transfer_params as Record<string, unknown>).remote_kv_source = {
    kv_request_id: "fresh-2",
    remote_host: "127.0.0.1",
    remote_port: source.sideChannelPort,
  };
  const [p, d] = await Promise.all([
    postForJson(prefill, CHAT, leg),
    postForJson(decode, CHAT, decodeLeg(prefill, "kv-5")),
  ]);
  assert.equal(p.status, 200);
  assert.equal(d.status, 200);
  assert.equal(prefill.requests[0]?.kvTransfer?.outcome, "pulled");
  assert.equal(prefill.requests[0]?.kvTransfer?.remoteRequestId, "fresh-2");
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "pulled");
});

Deno.test("mock vllm remote_kv_source without the prompt cached only means computing it", async () => {
  await using source = await createMockVllm({ kvConnector: "offloading" });
  await using decode = await createMockVllm({
    kvConnector: "offloading",
    promptTokensDetails: true,
  });
  const { status, body } = await postForJson(
    decode,
    CHAT,
    chatBody({
      kv_transfer_params: {
        remote_kv_source: {
          kv_request_id: "fresh-3",
          remote_host: "127.0.0.1",
          remote_port: source.sideChannelPort,
        },
      },
    }),
  );
  assert.equal(status, 200);
  assert.equal(cachedTokensOf(body), 0);
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "recomputed");
  assert.equal(
    decode.requests[0]?.kvTransfer?.reason,
    "no cached prefix for this prompt",
  );
});
