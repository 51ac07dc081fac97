import assert from "node:assert/strict";
import {
  createEngineCache,
  queryBootstrap,
} from "../../src/connectors/mooncake_bootstrap.ts";
import { createUpstreamClient } from "../../src/upstream/client.ts";
import { chatBody } from "../support/harness.ts";
import { closedPort, startHangingUpstream } from "../support/stub_upstream.ts";
import {
  bodyOf,
  createConnectorHarness,
  kvParamsOf,
  startBootstrapStub,
  within,
} from "./_support.ts";

const TRANSFER_ID =
  /^xfer-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/;

Deno.test(
  "mooncake sends prefill its transfer id and rank, and decode the engine and bootstrap address",
  async () => {
    await using h = await createConnectorHarness("mooncake");
    const body = chatBody({
      "max_tokens": 50,
      "max_completion_tokens": 100,
      stream: true,
      "stream_options": { "include_usage": true },
      "kv_transfer_params": { client: "value" },
    });
    const response = await h.pd("/v1/chat/completions", body);
    assert.equal(response.status, 200);
    await response.text();
    const [prefill] = h.prefill.requests;
    const [decode] = h.decode.requests;
    const transferId = kvParamsOf(prefill).transfer_id;
    assert.match(String(transferId), TRANSFER_ID);
    assert.deepEqual(bodyOf(prefill), {
      model: "Qwen/Qwen3-0.6B",
      messages: [{ role: "user", content: "Hello there" }],
      max_tokens: 1,
      max_completion_tokens: 1,
      stream: false,
      kv_transfer_params: {
        do_remote_decode: true,
        do_remote_prefill: false,
        transfer_id: transferId,
      },
      min_tokens: 1,
    });
    assert.equal(prefill?.headers.get("x-data-parallel-rank"), "0");
    assert.equal(
      decode?.bodyText,
      body.replace(
        '"kv_transfer_params":{"client":"value"}',
        `"kv_transfer_params":${
          JSON.stringify({
            do_remote_decode: false,
            do_remote_prefill: true,
            remote_bootstrap_addr:
              `http://127.0.0.1:${h.prefill.sideChannelPort}`,
            remote_engine_id: h.prefill.engineId,
            transfer_id: transferId,
          })
        }`,
      ),
    );
    assert.equal(decode?.headers.has("x-data-parallel-rank"), false);
  },
);

Deno.test("mooncake picks a rank at random and pins the prefill to it", async () => {
  await using bootstrap = startBootstrapStub({
    "0": { engine_id: "engine-a" },
    "1": { engine_id: "engine-b", extra: true },
    "2": { other: "no engine id" },
  });
  await using h = await createConnectorHarness("mooncake", {
    config: { mooncakeBootstrapPort: bootstrap.port },
    random: () => 0.99,
  });
  const response = await h.pd("/v1/chat/completions", chatBody());
  await response.text();
  assert.equal(h.prefill.requests[0]?.headers.get("x-data-parallel-rank"), "1");
  assert.equal(kvParamsOf(h.decode.requests[0]).remote_engine_id, "engine-b");
});

Deno.test(
  "mooncake pins the prefill to the rank it picked, replacing a client's x-data-parallel-rank",
  async () => {
    await using h = await createConnectorHarness("mooncake", {
      prefill: { dataParallelSize: 2 },
      random: () => 0.99,
    });
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-data-parallel-rank": "0",
    });
    assert.equal(response.status, 200);
    await response.text();
    assert.equal(
      h.prefill.requests[0]?.headers.get("x-data-parallel-rank"),
      "1",
    );
    assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
  },
);

Deno.test(
  "mooncake queries a prefiller's bootstrap server once, and again after a failed leg",
  async () => {
    await using h = await createConnectorHarness("mooncake");
    for (let i = 0; i < 2; i++) {
      const response = await h.pd("/v1/chat/completions", chatBody());
      assert.equal(response.status, 200);
      await response.text();
    }
    const queries = () =>
      h.prefill.kvPulls.filter((pull) => pull.path === "/query").length;
    assert.equal(queries(), 1);
    // The decode waits for its KV, as a real one would after a failed prefill.
    h.prefill.setConfig({ failureRate: 1, failureStatus: 503 });
    h.decode.setConfig({ ttftMs: 60_000 });
    const failed = await h.pd("/v1/chat/completions", chatBody());
    assert.equal(failed.status, 503);
    await failed.text();
    h.prefill.setConfig({ failureRate: 0 });
    h.decode.setConfig({ ttftMs: 0 });
    const after = await h.pd("/v1/chat/completions", chatBody());
    assert.equal(after.status, 200);
    await after.text();
    assert.equal(queries(), 2, "the failed leg dropped the cache");
  },
);

for (
  const [label, start, message] of [
    [
      "cannot be reached",
      () => ({ port: closedPort(), close: () => Promise.resolve() }),
      /^Cannot query Mooncake bootstrap server "http:\/\/127\.0\.0\.1:\d+\/query": connection refused$/,
    ],
    [
      "answers an error",
      () => {
        const stub = startBootstrapStub({ error: "x" }, 500);
        return { port: stub.port, close: () => stub[Symbol.asyncDispose]() };
      },
      /^Mooncake bootstrap server "http:\/\/127\.0\.0\.1:\d+\/query" answered 500$/,
    ],
    [
      "lists no engine",
      () => {
        const stub = startBootstrapStub({ "0": { engine_id: 7 } });
        return { port: stub.port, close: () => stub[Symbol.asyncDispose]() };
      },
      /answered no engine_id: \{"0":\{"engine_id":7\}\}$/,
    ],
    [
      "answers no JSON",
      () => {
        const stub = startBootstrapStub("not json");
        return { port: stub.port, close: () => stub[Symbol.asyncDispose]() };
      },
      /answered no engine_id: not json$/,
    ],
  ] as const
) {
  Deno.test(
    `mooncake answers 502 and sends no leg when the bootstrap server ${label}`,
    async () => {
      const server = start();
      try {
        await using h = await createConnectorHarness("mooncake", {
          config: { mooncakeBootstrapPort: server.port },
        });
        const response = await h.pd("/v1/chat/completions", chatBody());
        assert.equal(response.status, 502);
        assert.match((await response.json()).error.message, message);
        assert.equal(h.prefill.requests.length, 0);
        assert.equal(h.decode.requests.length, 0);
      } finally {
        await server.close();
      }
    },
  );
}

Deno.test("queryBootstrap gives up after its timeout", async () => {
  await using server = startHangingUpstream();
  const upstream = createUpstreamClient();
  try {
    await assert.rejects(
      queryBootstrap(upstream, `http://${server.hostPort}`, {
        signal: new AbortController().signal,
        timeoutMs: 50,
      }),
      /^ProxyError: Cannot query Mooncake bootstrap server ".*\/query": no answer within 50 ms$/,
    );
    await within(server.allClosed(), "the bootstrap query's close");
  } finally {
    upstream.close();
  }
});

Deno.test("mooncake brackets an IPv6 prefiller in the bootstrap address", async () => {
  const server = Deno.serve(
    { hostname: "::1", port: 0, onListen() {} },
    () => Response.json({ "0": { engine_id: "engine-v6" } }),
  );
  try {
    await using h = await createConnectorHarness("mooncake", {
      prefill: { hostname: "::1" },
      config: { mooncakeBootstrapPort: server.addr.port },
    });
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-prefiller-host-port": `[::1]:${h.prefill.port}`,
    });
    assert.equal(response.status, 200);
    await response.text();
    assert.deepEqual(
      [
        kvParamsOf(h.decode.requests[0]).remote_bootstrap_addr,
        kvParamsOf(h.decode.requests[0]).remote_engine_id,
      ],
      [`http://[::1]:${server.addr.port}`, "engine-v6"],
    );
  } finally {
    await server.shutdown();
  }
});

Deno.test("createEngineCache forgets the least recently used server first", () => {
  const cache = createEngineCache(2);
  const engines = [{ dpRank: "0", engineId: "e" }];
  cache.set("a", engines);
  cache.set("b", engines);
  assert.equal(cache.get("a"), engines);
  cache.set("c", engines);
  assert.equal(cache.get("b"), undefined);
  assert.equal(cache.get("a"), engines);
  assert.equal(cache.size, 2);
  cache.delete("a");
  assert.equal(cache.get("a"), undefined);
});
