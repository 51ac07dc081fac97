import assert from "node:assert/strict";
import {
  chatBody,
  createHarness,
  jsonHeaders,
  readSseData,
} from "../support/harness.ts";
import { closedPort, startStubUpstream } from "../support/stub_upstream.ts";

const PREFILL_PARAMS = {
  "do_remote_decode": true,
  "do_remote_prefill": false,
  "remote_engine_id": null,
  "remote_block_ids": null,
  "remote_host": null,
  "remote_port": null,
};

Deno.test(
  "nixlv2 sends stream=false, no stream_options, token limits of 1 and kv_transfer_params to prefill",
  async () => {
    await using h = await createHarness();
    const response = await h.request("/v1/chat/completions", {
      method: "POST",
      headers: jsonHeaders({ "x-prefiller-host-port": h.prefillerHeader }),
      body: chatBody({
        stream: true,
        stream_options: { include_usage: true },
        temperature: 0.5,
      }),
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(h.prefill.requests.length, 1);
    const [prefill] = h.prefill.requests;
    assert.equal(prefill?.path, "/v1/chat/completions");
    assert.deepEqual(prefill?.body, {
      model: "Qwen/Qwen3-0.6B",
      messages: [{ role: "user", content: "Hello there" }],
      max_tokens: 1,
      stream: false,
      temperature: 0.5,
      max_completion_tokens: 1,
      min_tokens: 1,
      kv_transfer_params: PREFILL_PARAMS,
    });
  },
);

Deno.test(
  "nixlv2 sends decode the client body unchanged plus the prefiller's kv_transfer_params",
  async () => {
    await using h = await createHarness();
    const body =
      '{"model":"Qwen/Qwen3-0.6B","prompt":"The capital of France is","max_tokens":5,"seed":12345678901234567890,"top_p":1.0}';
    const response = await h.pd("/v1/completions", body);
    assert.equal(response.status, 200);
    const answer = await response.json();
    assert.equal(answer.object, "text_completion");
    const [decode] = h.decode.requests;
    assert.ok(decode);
    const prefix = body.slice(0, -1);
    assert.ok(
      decode.bodyText.startsWith(`${prefix},"kv_transfer_params":{`),
      decode.bodyText,
    );
    const params =
      (decode.body as { kv_transfer_params: Record<string, unknown> })
        .kv_transfer_params;
    assert.equal(params.do_remote_prefill, true);
    assert.equal(params.remote_engine_id, h.prefill.engineId);
    assert.equal(params.remote_port, h.prefill.port);
    assert.equal(decode.kvTransfer?.outcome, "pulled");
    assert.equal(
      h.prefill.requests[0]?.body &&
        (h.prefill.requests[0].body as Record<string, unknown>).max_tokens,
      1,
    );
  },
);

Deno.test(
  "nixlv2 caps max_output_tokens on the Responses API",
  async () => {
    await using h = await createHarness();
    const response = await h.request("/v1/responses", {
      method: "POST",
      headers: jsonHeaders({ "x-prefiller-host-port": h.prefillerHeader }),
      body: JSON.stringify({
        model: "Qwen/Qwen3-0.6B",
        input: "Hi",
        max_output_tokens: 20,
      }),
    });
    assert.equal(response.status, 200);
    assert.equal((await response.json()).object, "response");
    const prefill = h.prefill.requests[0]?.body as Record<string, unknown>;
    assert.equal(prefill.max_output_tokens, 1);
    assert.equal("max_tokens" in prefill, false);
    assert.equal(
      (h.decode.requests[0]?.body as Record<string, unknown>).max_output_tokens,
      20,
    );
    assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
  },
);

Deno.test(
  "nixlv2 mints one x-request-id and sends it on both legs",
  async () => {
    await using h = await createHarness();
    const response = await h.pd("/v1/chat/completions", chatBody());
    const answer = await response.json();
    const prefillId = h.prefill.requests[0]?.headers.get("x-request-id");
    const decodeId = h.decode.requests[0]?.headers.get("x-request-id");
    assert.match(prefillId ?? "", /^[0-9a-f-]{36}$/);
    assert.equal(decodeId, prefillId);
    assert.equal(answer.id, `chatcmpl-${prefillId}`);
  },
);

Deno.test(
  "nixlv2 keeps the client's x-request-id, one value on each leg",
  async () => {
    await using h = await createHarness();
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-request-id": "client-id-1",
    });
    await response.body?.cancel();
    assert.equal(
      h.prefill.requests[0]?.headers.get("x-request-id"),
      "client-id-1",
    );
    assert.equal(
      h.decode.requests[0]?.headers.get("x-request-id"),
      "client-id-1",
    );
  },
);

Deno.test(
  "nixlv2 removes the routing headers from both legs",
  async () => {
    await using h = await createHarness();
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-prefiller-url": "http://other:1",
      "authorization": "Bearer token",
    });
    await response.body?.cancel();
    for (const leg of [h.prefill.requests[0], h.decode.requests[0]]) {
      assert.equal(leg?.headers.has("x-prefiller-host-port"), false);
      assert.equal(leg?.headers.has("x-prefiller-url"), false);
      assert.equal(leg?.headers.get("authorization"), "Bearer token");
    }
  },
);

Deno.test(
  "nixlv2 streams the decoder's SSE answer to the client",
  async () => {
    await using h = await createHarness();
    const response = await h.pd(
      "/v1/chat/completions",
      chatBody({ stream: true, stream_options: { include_usage: true } }),
    );
    assert.equal(response.status, 200);
    assert.match(
      response.headers.get("content-type") ?? "",
      /^text\/event-stream/,
    );
    const events = await readSseData(response);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1).map((event) => JSON.parse(event));
    assert.deepEqual(chunks[0].choices[0].delta, {
      role: "assistant",
      content: "",
    });
    assert.ok(chunks.at(-1).usage.completion_tokens > 0);
    const decode = h.decode.requests[0]?.body as Record<string, unknown>;
    assert.equal(decode.stream, true);
    assert.deepEqual(decode.stream_options, { include_usage: true });
    assert.equal(decode.max_tokens, 8);
  },
);

Deno.test(
  "nixlv2 relays a prefill 4xx with its status, body and content type",
  async () => {
    await using h = await createHarness();
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-return-error": "429",
    });
    assert.equal(response.status, 429);
    assert.equal(response.headers.get("content-type"), "application/json");
    const body = await response.json();
    assert.equal(body.error.type, "RateLimitError");
    assert.equal(h.decode.requests.length, 0);
  },
);

Deno.test(
  "nixlv2 answers a prefill 5xx with the prefiller's status and a message naming it",
  async () => {
    await using h = await createHarness();
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-return-error": "503",
    });
    assert.equal(response.status, 503);
    const body = await response.json();
    assert.equal(body.error.code, 503);
    assert.match(
      body.error.message,
      new RegExp(
        `Prefill server "${h.prefillerHeader}" answered 503: Simulated error`,
      ),
    );
    assert.equal(h.decode.requests.length, 0);
    // A status outside 500-504 is not one a gateway answers with: 502.
    const odd = await h.pd("/v1/chat/completions", chatBody(), {
      "x-return-error": "507",
    });
    assert.equal(odd.status, 502);
    assert.match(
      (await odd.json()).error.message,
      /answered 507: Simulated error/,
    );
  },
);

Deno.test(
  "nixlv2 answers 502 naming the prefiller when it cannot be reached",
  async () => {
    await using h = await createHarness();
    const target = `127.0.0.1:${closedPort()}`;
    const response = await h.request("/v1/chat/completions", {
      method: "POST",
      headers: jsonHeaders({ "x-prefiller-host-port": target }),
      body: chatBody(),
    });
    assert.equal(response.status, 502);
    assert.equal(response.headers.get("content-type"), "application/json");
    const body = await response.json();
    assert.deepEqual(body, {
      error: {
        message: `Cannot reach prefill server "${target}": connection refused`,
        type: "BadGateway",
        param: null,
        code: 502,
      },
    });
    assert.equal(h.decode.requests.length, 0);
  },
);

Deno.test(
  "nixlv2 answers 502 when the prefiller's 200 is not a JSON object",
  async () => {
    await using h = await createHarness();
    await using stub = startStubUpstream(() =>
      new Response("OK", { status: 200 })
    );
    const response = await h.request("/v1/chat/completions", {
      method: "POST",
      headers: jsonHeaders({ "x-prefiller-host-port": stub.hostPort }),
      body: chatBody(),
    });
    assert.equal(response.status, 502);
    const body = await response.json();
    assert.match(
      body.error.message,
      /answered 200 without a JSON object body: OK/,
    );
    assert.equal(h.decode.requests.length, 0);
  },
);

Deno.test(
  "nixlv2 decodes with kv_transfer_params null and warns when the prefiller sent none",
  async () => {
    await using h = await createHarness();
    await using stub = startStubUpstream(() =>
      Response.json({ id: "cmpl-1", choices: [] })
    );
    const response = await h.request("/v1/chat/completions", {
      method: "POST",
      headers: jsonHeaders({ "x-prefiller-host-port": stub.hostPort }),
      body: chatBody(),
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(
      (h.decode.requests[0]?.body as Record<string, unknown>)
        .kv_transfer_params,
      null,
    );
    assert.ok(
      h.logs.some((line) =>
        line.level === "warn" &&
        /missing 'kv_transfer_params'/.test(String(line.msg))
      ),
    );
  },
);

Deno.test("nixlv2 relays a decoder error status as is", async () => {
  await using h = await createHarness({
    decode: { kvLoadFailurePolicy: "fail" },
  });
  // A prefiller that hands out a KV handle the engine it names never issued:
  // the decoder's pull fails and, under policy "fail", vLLM answers 500.
  await using stub = startStubUpstream(() =>
    Response.json({
      id: "chatcmpl-x",
      kv_transfer_params: {
        do_remote_prefill: true,
        do_remote_decode: false,
        remote_block_ids: [[1]],
        remote_engine_id: h.prefill.engineId,
        remote_request_id: "never-issued",
        remote_host: "127.0.0.1",
        remote_port: h.prefill.port,
      },
    })
  );
  const response = await h.pd("/v1/chat/completions", chatBody(), {
    "x-prefiller-host-port": stub.hostPort,
  });
  assert.equal(response.status, 500);
  assert.equal((await response.json()).error.type, "InternalServerError");
  assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "failed");
  assert.equal(h.decode.requests[0]?.kvTransfer?.reason, "unknown handle");
});

Deno.test(
  "nixlv2 reaches a prefiller named by an IPv6 literal",
  async () => {
    await using h = await createHarness({
      prefill: { hostname: "::1" },
    });
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-prefiller-host-port": `[::1]:${h.prefill.port}`,
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(
      h.prefill.requests[0]?.headers.get("host"),
      `[::1]:${h.prefill.port}`,
    );
    assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
  },
);

Deno.test(
  "nixlv2 sends both legs a non-ASCII body whole, with its length in bytes",
  async () => {
    await using h = await createHarness();
    const prompt = "Grüße aus 東京 🚀 — ¿qué tal?";
    const body = JSON.stringify({
      model: "Qwen/Qwen3-0.6B",
      prompt,
      max_tokens: 3,
    });
    const response = await h.pd("/v1/completions", body);
    assert.equal(response.status, 200);
    await response.body?.cancel();
    const [prefill] = h.prefill.requests;
    const [decode] = h.decode.requests;
    assert.equal((prefill?.body as { prompt: string }).prompt, prompt);
    assert.equal(
      Number(prefill?.headers.get("content-length")),
      new TextEncoder().encode(prefill?.bodyText).length,
    );
    assert.ok(decode?.bodyText.startsWith(body.slice(0, -1)), decode?.bodyText);
    assert.equal(
      Number(decode?.headers.get("content-length")),
      new TextEncoder().encode(decode?.bodyText).length,
    );
  },
);
