import assert from "node:assert/strict";
import { chatBody } from "../support/harness.ts";
import {
  bodyOf,
  createConnectorHarness,
  jsonResponse,
  startRecordingUpstream,
} from "./_support.ts";

const REMOTE = {
  "remote_block_ids": [1, 2, 3],
  "remote_engine_id": "engine-p",
  "remote_host": "10.0.0.5",
  "remote_port": 5600,
};

Deno.test(
  "nixl sends prefill top-level do_remote_decode, stream false and token limits of 1",
  async () => {
    await using h = await createConnectorHarness("nixl");
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
      do_remote_decode: true,
    });
  },
);

Deno.test(
  "nixl sends decode the prefiller's top-level remote fields with do_remote_prefill",
  async () => {
    await using prefiller = startRecordingUpstream(() =>
      jsonResponse({ id: "cmpl-p", choices: [], ...REMOTE })
    );
    // No blocks to pull at 10.0.0.5: the decoder computes the prompt itself.
    await using h = await createConnectorHarness("nixl", {
      decode: { kvLoadFailurePolicy: "recompute" },
    });
    const body =
      '{"model":"Qwen/Qwen3-0.6B","prompt":"Hi","max_tokens":5,"do_remote_decode":true,"seed":12345678901234567890}';
    const response = await h.pd("/v1/completions", body, {
      "x-prefiller-host-port": prefiller.hostPort,
    });
    assert.equal(response.status, 200);
    await response.text();
    const [decode] = h.decode.requests;
    // The client's body, its own do_remote_decode dropped, the handshake added.
    assert.equal(
      decode?.bodyText,
      '{"model":"Qwen/Qwen3-0.6B","prompt":"Hi","max_tokens":5,"seed":12345678901234567890,' +
        '"do_remote_prefill":true,"remote_block_ids":[1,2,3],"remote_engine_id":"engine-p",' +
        '"remote_host":"10.0.0.5","remote_port":5600}',
    );
  },
);

Deno.test(
  "nixl decodes with null remote fields and warns when the prefiller sent none",
  async () => {
    await using prefiller = startRecordingUpstream(() =>
      jsonResponse({ id: "cmpl-p", choices: [], remote_engine_id: "e" })
    );
    await using h = await createConnectorHarness("nixl");
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-prefiller-host-port": prefiller.hostPort,
    });
    assert.equal(response.status, 200);
    await response.text();
    const decode = bodyOf(h.decode.requests[0]);
    assert.equal(decode.do_remote_prefill, true);
    assert.equal(decode.remote_engine_id, "e");
    assert.equal(decode.remote_block_ids, null);
    assert.equal(decode.remote_port, null);
    const warnings = h.logs.filter((line) => line.level === "warn").map((
      line,
    ) => line.msg);
    assert.deepEqual(warnings, [
      "missing 'remote_block_ids' field in prefiller response",
      "missing 'remote_host' field in prefiller response",
      "missing 'remote_port' field in prefiller response",
    ]);
  },
);

Deno.test("nixl answers 502 when the prefiller's 200 is not JSON", async () => {
  await using prefiller = startRecordingUpstream(() => new Response("OK"));
  await using h = await createConnectorHarness("nixl");
  const response = await h.pd("/v1/chat/completions", chatBody(), {
    "x-prefiller-host-port": prefiller.hostPort,
  });
  assert.equal(response.status, 502);
  assert.match(
    (await response.json()).error.message,
    /answered 200 without a JSON object body: OK/,
  );
  assert.equal(h.decode.requests.length, 0);
});
