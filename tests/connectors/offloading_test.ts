import assert from "node:assert/strict";
import { p2pPortFor } from "../../src/connectors/_p2p.ts";
import { parseTarget } from "../../src/upstream/target.ts";
import { chatBody } from "../support/harness.ts";
import {
  bodyOf,
  createConnectorHarness,
  jsonResponse,
  kvParamsOf,
  startRecordingUpstream,
} from "./_support.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SOURCE_HEADER = "x-kv-cache-source-host-port";

Deno.test(
  "offloading sends prefill remote_decoder and decode remote_prefiller under one kv_request_id",
  async () => {
    await using h = await createConnectorHarness("offloading", {
      config: { p2pConnectorPort: 7777 },
    });
    const body = chatBody({
      "max_tokens": 50,
      stream: true,
      "kv_transfer_params": { decode: { "kv_request_id": "old-name" } },
    });
    const response = await h.pd("/v1/chat/completions", body);
    assert.equal(response.status, 200);
    await response.text();
    const [prefill] = h.prefill.requests;
    const [decode] = h.decode.requests;
    const params = kvParamsOf(prefill);
    const id = (params.remote_decoder as { kv_request_id: string })
      .kv_request_id;
    assert.match(id, UUID);
    assert.deepEqual(bodyOf(prefill), {
      model: "Qwen/Qwen3-0.6B",
      messages: [{ role: "user", content: "Hello there" }],
      max_tokens: 1,
      stream: false,
      kv_transfer_params: { remote_decoder: { kv_request_id: id } },
      max_completion_tokens: 1,
      min_tokens: 1,
    });
    assert.equal(
      decode?.bodyText,
      body.replace(
        '"kv_transfer_params":{"decode":{"kv_request_id":"old-name"}}',
        `"kv_transfer_params":{"remote_prefiller":${
          JSON.stringify({
            kv_request_id: id,
            remote_host: "127.0.0.1",
            remote_port: 7777,
          })
        }}`,
      ),
    );
  },
);

Deno.test(
  "offloading adds the data-parallel rank of the prefiller's port to the P2P port",
  async () => {
    await using prefiller = startRecordingUpstream(() =>
      jsonResponse({ id: "chatcmpl-p", choices: [] })
    );
    // The prefiller listens where rank 2 of a sidecar laid out like this one would.
    await using h = await createConnectorHarness("offloading", {
      config: {
        port: prefiller.port - 2,
        dataParallelSize: 4,
        p2pConnectorPort: 7777,
      },
      decode: { kvLoadFailurePolicy: "recompute" },
    });
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-prefiller-host-port": prefiller.hostPort,
    });
    assert.equal(response.status, 200);
    await response.text();
    const remote = kvParamsOf(h.decode.requests[0]).remote_prefiller as {
      remote_port: number;
    };
    assert.equal(remote.remote_port, 7779);
  },
);

Deno.test("p2pPortFor reads the rank from the target's port under data parallel", () => {
  const settings = { port: 8000, dataParallelSize: 4, p2pConnectorPort: 7777 };
  const port = (value: string, size = 4) =>
    p2pPortFor(
      { ...settings, dataParallelSize: size },
      parseTarget(value, SOURCE_HEADER),
    );
  assert.equal(port("10.0.0.5:8002"), 7779);
  assert.equal(port("10.0.0.5:8000"), 7777);
  assert.equal(port("10.0.0.5:8003"), 7780);
  assert.equal(port("10.0.0.5:8004"), 7777);
  assert.equal(port("10.0.0.5:7999"), 7777);
  assert.equal(port("http://[fd00::5]:8001"), 7778);
  assert.equal(port("10.0.0.5:8002", 1), 7777);
});

Deno.test(
  "offloading asks the prefiller to pull cached prefix KV from the KV-source peer",
  async () => {
    await using h = await createConnectorHarness("offloading", {
      config: { port: 9000, dataParallelSize: 2, p2pConnectorPort: 7000 },
    });
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      [SOURCE_HEADER]: "10.0.0.9:9001, 10.0.0.8:9000",
    });
    await response.text();
    const prefill = kvParamsOf(h.prefill.requests[0]);
    const source = prefill.remote_kv_source as Record<string, unknown>;
    assert.equal(source.remote_host, "10.0.0.9");
    assert.equal(source.remote_port, 7001);
    assert.match(String(source.kv_request_id), UUID);
    assert.notEqual(
      source.kv_request_id,
      (prefill.remote_decoder as Record<string, unknown>).kv_request_id,
    );
    assert.equal("remote_kv_source" in kvParamsOf(h.decode.requests[0]), false);
    for (const leg of [h.prefill.requests[0], h.decode.requests[0]]) {
      assert.equal(leg?.headers.has(SOURCE_HEADER), false);
    }
  },
);

Deno.test(
  "offloading pulls nothing when the KV source is the prefiller itself",
  async () => {
    await using h = await createConnectorHarness("offloading");
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      [SOURCE_HEADER]: `http://127.0.0.1:${h.prefill.port}`,
    });
    await response.text();
    assert.equal(
      "remote_kv_source" in kvParamsOf(h.prefill.requests[0]),
      false,
    );
  },
);

Deno.test(
  "offloading pulls from another rank on the prefiller's pod: same host, another port",
  async () => {
    await using h = await createConnectorHarness("offloading");
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      [SOURCE_HEADER]: `127.0.0.1:${h.prefill.port + 1}`,
    });
    assert.equal(response.status, 200);
    await response.text();
    const source = kvParamsOf(h.prefill.requests[0]).remote_kv_source;
    assert.equal((source as Record<string, unknown>)?.remote_host, "127.0.0.1");
  },
);

Deno.test(
  "offloading ignores a malformed KV-source header with a warning",
  async () => {
    await using h = await createConnectorHarness("offloading");
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      [SOURCE_HEADER]: "10.0.0.9",
    });
    assert.equal(response.status, 200);
    await response.text();
    assert.equal(
      "remote_kv_source" in kvParamsOf(h.prefill.requests[0]),
      false,
    );
    assert.ok(
      h.logs.some((line) =>
        line.level === "warn" &&
        line.msg === "ignoring malformed KV cache source header"
      ),
    );
  },
);

Deno.test(
  "nixlv2 adds remote_kv_source to its prefill params only with -enable-p2p-pull",
  async () => {
    for (const enableP2pPull of [false, true]) {
      await using h = await createConnectorHarness("nixlv2", {
        config: { enableP2pPull },
      });
      const response = await h.pd("/v1/chat/completions", chatBody(), {
        [SOURCE_HEADER]: "peer.example:8000",
      });
      assert.equal(response.status, 200);
      await response.text();
      const params = kvParamsOf(h.prefill.requests[0]);
      assert.equal(params.do_remote_decode, true);
      if (!enableP2pPull) {
        assert.equal("remote_kv_source" in params, false);
        continue;
      }
      const source = params.remote_kv_source as Record<string, unknown>;
      assert.equal(source.remote_host, "peer.example");
      assert.equal(source.remote_port, h.config.p2pConnectorPort);
      assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
    }
  },
);
