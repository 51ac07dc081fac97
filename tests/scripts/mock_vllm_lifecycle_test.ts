import assert from "node:assert/strict";
import selfsigned from "selfsigned";
import { createMockVllm } from "../../scripts/mock_vllm/mod.ts";
import {
  CHAT,
  chatBody,
  postJson,
  prefillParams,
} from "./_mock_vllm_helpers.ts";

const decoder = new TextDecoder();

Deno.test("mock vllm marks a stream aborted when the client disconnects", async () => {
  await using mock = await createMockVllm();
  const response = await postJson(mock, CHAT, chatBody({ stream: true }), {
    headers: { "x-request-id": "gone", "x-mock-inter-token-ms": "60000" },
  });
  const reader = response.body!.getReader();
  let received = "";
  // Role chunk and first token come right after TTFT; the second token waits 60 s.
  while (!received.includes('"content":"Hello"')) {
    received += decoder.decode((await reader.read()).value);
  }
  await reader.cancel();
  assert.equal(await mock.requests[0]?.finished, "aborted");
  assert.ok(
    mock.logs.some((l) =>
      l.endsWith("[async_llm.py:577] Aborted request chatcmpl-gone.")
    ),
  );
  const metrics = await (await fetch(mock.url + "/metrics")).text();
  assert.ok(metrics.includes("mock_vllm:requests_aborted_total 1.0"));
  assert.ok(
    metrics.includes(
      'vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3-0.6B"} 0.0',
    ),
  );
});

Deno.test("mock vllm aborts a non-streaming request whose client leaves during TTFT", async () => {
  await using mock = await createMockVllm();
  const client = new AbortController();
  const pending = postJson(mock, CHAT, chatBody(), {
    headers: { "x-mock-ttft-ms": "60000" },
    signal: client.signal,
  }).catch((error) => error);
  const recorded = await mock.nextRequest((r) => r.path === CHAT);
  client.abort();
  assert.equal(await recorded.finished, "aborted");
  assert.ok((await pending) instanceof Error);
});

Deno.test("mock vllm breaks the stream after X-Mock-Break-After events", async () => {
  await using mock = await createMockVllm();
  const response = await postJson(mock, CHAT, chatBody({ stream: true }), {
    headers: { "x-mock-break-after": "2" },
  });
  assert.equal(response.status, 200);
  const reader = response.body!.getReader();
  let received = "";
  const error = await (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return undefined;
        received += decoder.decode(value);
      }
    } catch (error) {
      return error;
    }
  })();
  assert.ok(
    error instanceof Error,
    "the body ends with an error, not a clean end",
  );
  assert.equal(received.split("\n\n").filter(Boolean).length, 2);
  assert.equal(await mock.requests[0]?.finished, "failed");
  assert.ok(
    !mock.logs.some((l) => l.includes(" ERROR ")),
    "a deliberate break is not logged as an error",
  );
});

Deno.test("mock vllm nextRequest resolves with a recorded or a future matching request", async () => {
  await using mock = await createMockVllm();
  await (await fetch(mock.url + "/health")).body?.cancel();
  const past = await mock.nextRequest();
  assert.equal(past.path, "/health");
  const future = mock.nextRequest((r) => r.path === "/version");
  await (await fetch(mock.url + "/version")).body?.cancel();
  const arrived = await future;
  assert.equal(arrived.seq, 2);
  assert.equal(arrived.method, "GET");
});

Deno.test("mock vllm close() ends an in-flight slow stream promptly", async () => {
  const mock = await createMockVllm();
  const response = await postJson(mock, CHAT, chatBody({ stream: true }), {
    headers: { "x-mock-inter-token-ms": "60000" },
  });
  const reader = response.body!.getReader();
  await reader.read();
  const started = performance.now();
  await mock.close();
  assert.ok(
    performance.now() - started < 1000,
    "close() does not wait for the 60 s stream",
  );
  const rest = await reader.read().then(() => "ended", () => "broken");
  assert.ok(rest === "ended" || rest === "broken");
  await reader.cancel().catch(() => {});
  assert.equal(await mock.requests[0]?.finished, "aborted");
  await mock.close();
});

Deno.test("mock vllm close() ends a request waiting on its TTFT promptly", async () => {
  const mock = await createMockVllm();
  const pending = postJson(mock, CHAT, chatBody(), {
    headers: { "x-mock-ttft-ms": "60000" },
  })
    .then(async (response) => {
      await response.body?.cancel();
      return response.status;
    }, (error) => error);
  const recorded = await mock.nextRequest();
  await mock.close();
  assert.equal(await recorded.finished, "aborted");
  await pending;
});

Deno.test("mock vllm setConfig changes knobs at runtime and refuses restart-only options", async () => {
  await using mock = await createMockVllm();
  mock.setConfig({ model: "m2", engineId: "engine-2", name: "renamed" });
  assert.equal(mock.engineId, "engine-2");
  assert.equal(mock.name, "renamed");
  const models = await (await fetch(mock.url + "/v1/models")).json();
  assert.equal(models.data[0].id, "m2");
  assert.throws(() => mock.setConfig({ port: 1 }), TypeError);
  assert.throws(() => mock.setConfig({ ttftMs: -1 }), /ttftMs/);
  assert.throws(
    () => mock.setConfig({ kvLoadFailurePolicy: "retry" as "fail" }),
    /kvLoadFailurePolicy/,
  );
});

Deno.test("mock vllm rejects invalid options at creation", async () => {
  await assert.rejects(
    () => createMockVllm({ failureRate: 1.5 }),
    /failureRate/,
  );
  await assert.rejects(
    () => createMockVllm({ outputTokens: 0 }),
    /outputTokens/,
  );
});

Deno.test("mock vllm serves HTTPS and keeps the KV side channel on plain HTTP", async () => {
  const pems = await selfsigned.generate([{
    name: "commonName",
    value: "mock vllm test",
  }], {
    keyType: "ec",
    algorithm: "sha256",
    notAfterDate: new Date(Date.now() + 24 * 3600 * 1000),
    extensions: [
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }] },
    ],
  });
  await using prefill = await createMockVllm({
    tls: { cert: pems.cert, key: pems.private },
  });
  await using decode = await createMockVllm();
  assert.match(prefill.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(prefill.sideChannelPort, prefill.port);
  using client = Deno.createHttpClient({ caCerts: [pems.cert] });
  const response = await fetch(prefill.url + CHAT, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(
      chatBody({
        max_tokens: 1,
        kv_transfer_params: { do_remote_decode: true },
      }),
    ),
    client,
  });
  const params = (await response.json()).kv_transfer_params;
  assert.equal(params.remote_port, prefill.sideChannelPort);
  const decoded = await postJson(
    decode,
    CHAT,
    chatBody({ kv_transfer_params: params }),
  );
  assert.equal(decoded.status, 200);
  await decoded.body?.cancel();
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "pulled");
  const onApiPort = await prefillParams(decode);
  assert.equal(
    onApiPort.remote_port,
    decode.port,
    "without TLS the side channel shares the API port",
  );
});
