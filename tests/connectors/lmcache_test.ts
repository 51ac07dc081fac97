import assert from "node:assert/strict";
import { chatBody } from "../support/harness.ts";
import { bodyOf, createConnectorHarness } from "./_support.ts";

Deno.test(
  "lmcache sends prefill the client body with token limits of 1 and no kv_transfer_params",
  async () => {
    await using h = await createConnectorHarness("lmcache");
    const response = await h.pd(
      "/v1/chat/completions",
      chatBody({ stream: true, stream_options: { include_usage: true } }),
    );
    assert.equal(response.status, 200);
    await response.text();
    assert.deepEqual(bodyOf(h.prefill.requests[0]), {
      model: "Qwen/Qwen3-0.6B",
      messages: [{ role: "user", content: "Hello there" }],
      max_tokens: 1,
      stream: false,
      max_completion_tokens: 1,
      min_tokens: 1,
    });
  },
);

Deno.test(
  "lmcache sends decode the client's bytes unchanged once the prefill succeeded",
  async () => {
    await using h = await createConnectorHarness("lmcache");
    const body =
      '{ "model": "Qwen/Qwen3-0.6B", "prompt": "Hi", "max_tokens": 3, "top_p": 1.0 }';
    const response = await h.pd("/v1/completions", body);
    assert.equal(response.status, 200);
    assert.equal((await response.json()).object, "text_completion");
    assert.equal(h.decode.requests[0]?.bodyText, body);
  },
);
