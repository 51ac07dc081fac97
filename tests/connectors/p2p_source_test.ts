import assert from "node:assert/strict";
import { chatBody, jsonHeaders } from "../support/harness.ts";
import { createConnectorHarness, kvParamsOf, within } from "./_support.ts";

const SOURCE_HEADER = "x-kv-cache-source-host-port";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/;

Deno.test(
  "a decode-only request naming a KV source asks the decoder to pull the prefix from it",
  async () => {
    await using h = await createConnectorHarness("offloading");
    const body = chatBody({ "kv_transfer_params": { client: true } });
    // The peer computed this prompt before: its prefix is cached there.
    const warm = await fetch(`${h.prefill.url}/v1/chat/completions`, {
      method: "POST",
      headers: jsonHeaders(),
      body: chatBody(),
    });
    await warm.text();
    const response = await within(
      h.request("/v1/chat/completions", {
        method: "POST",
        headers: jsonHeaders({ [SOURCE_HEADER]: h.prefillerHeader }),
        body,
      }),
      "the answer",
    );
    assert.equal(response.status, 200);
    await response.text();
    const [decode] = h.decode.requests;
    const source = kvParamsOf(decode).remote_kv_source as Record<
      string,
      unknown
    >;
    assert.match(String(source.kv_request_id), UUID);
    assert.deepEqual(kvParamsOf(decode), {
      remote_kv_source: {
        kv_request_id: source.kv_request_id,
        remote_host: "127.0.0.1",
        remote_port: h.prefill.sideChannelPort,
      },
    });
    assert.equal(decode?.headers.has(SOURCE_HEADER), false);
    assert.equal(decode?.kvTransfer?.outcome, "pulled");
    assert.equal(h.prefill.requests.length, 1, "no prefill leg");
  },
);

Deno.test(
  "a decode-only request naming this listener as KV source is decoded unchanged",
  async () => {
    await using h = await createConnectorHarness("offloading", {
      config: { podIp: "10.0.0.7", port: 8000 },
    });
    const body = chatBody({ "max_tokens": 4 });
    const response = await h.request("/v1/chat/completions", {
      method: "POST",
      headers: jsonHeaders({ [SOURCE_HEADER]: "10.0.0.7:8000" }),
      body,
    });
    assert.equal(response.status, 200);
    await response.text();
    assert.equal(h.decode.requests[0]?.bodyText, body);
  },
);

Deno.test(
  "a KV source is ignored, and the body passed through, when the connector does not pull",
  async () => {
    await using h = await createConnectorHarness("nixlv2");
    const body = chatBody();
    const response = await h.request("/v1/chat/completions", {
      method: "POST",
      headers: jsonHeaders({ [SOURCE_HEADER]: "10.0.0.9:8000" }),
      body,
    });
    assert.equal(response.status, 200);
    await response.text();
    assert.equal(h.decode.requests[0]?.bodyText, body);
    assert.equal(h.decode.requests[0]?.headers.has(SOURCE_HEADER), false);
  },
);
