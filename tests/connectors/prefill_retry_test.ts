import assert from "node:assert/strict";
import { within } from "../support/deadline.ts";
import { createMockVllm } from "../../scripts/mock_vllm/mod.ts";
import { chatBody, createHarness, jsonHeaders } from "../support/harness.ts";
import { closedPort, startHangingUpstream } from "../support/stub_upstream.ts";
import { createConnectorHarness } from "./_support.ts";

Deno.test("a prefill answered 503 is retried on the next prefiller the header names", async () => {
  await using failing = await createMockVllm({
    name: "failing",
    failureRate: 1,
    failureStatus: 503,
  });
  await using h = await createHarness({
    config: { prefillMaxRetries: 1, prefillRetryBackoff: 10 },
  });
  const response = await h.request("/v1/chat/completions", {
    method: "POST",
    headers: jsonHeaders({
      "x-prefiller-host-port":
        `127.0.0.1:${failing.port}, ${h.prefillerHeader}`,
    }),
    body: chatBody(),
  });
  assert.equal(response.status, 200);
  await response.text();
  assert.equal(failing.requests.length, 1);
  assert.equal(h.prefill.requests.length, 1);
  assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
  const retry = await h.nextLog((line) =>
    line.msg === "retrying prefill request"
  );
  assert.equal(retry.previous_code, "503");
  assert.equal(retry.target, h.prefillerHeader);
});

Deno.test("an unreachable prefiller is retried on the next one", async () => {
  await using h = await createHarness({
    config: { prefillMaxRetries: 2, prefillRetryBackoff: 10 },
  });
  const response = await h.request("/v1/chat/completions", {
    method: "POST",
    headers: jsonHeaders({
      "x-prefiller-host-port": `127.0.0.1:${closedPort()},${h.prefillerHeader}`,
    }),
    body: chatBody(),
  });
  assert.equal(response.status, 200);
  await response.text();
  assert.equal(h.prefill.requests.length, 1);
});

Deno.test("a prefill failing every attempt answers the last status after 1 + retries attempts, with no decode", async () => {
  await using h = await createHarness({
    config: { prefillMaxRetries: 2, prefillRetryBackoff: 10 },
    prefill: { failureRate: 1, failureStatus: 503 },
  });
  const response = await h.pd("/v1/chat/completions", chatBody());
  assert.equal(response.status, 503);
  const body = await response.json();
  assert.equal(body.error.code, 503);
  assert.equal(h.prefill.requests.length, 3);
  assert.equal(h.decode.requests.length, 0);
  const line = await h.accessLine();
  assert.equal(line.error_code, "prefill_error");
});

Deno.test("a prefill answered 4xx is never retried", async () => {
  await using h = await createHarness({
    config: { prefillMaxRetries: 3, prefillRetryBackoff: 10 },
    prefill: { failureRate: 1, failureStatus: 429 },
  });
  const response = await h.pd("/v1/chat/completions", chatBody());
  assert.equal(response.status, 429);
  await response.text();
  assert.equal(h.prefill.requests.length, 1);
  assert.equal(h.decode.requests.length, 0);
});

Deno.test("-prefill-timeout answers 504 prefill_timeout and aborts a prefiller that never answers", async () => {
  await using h = await createHarness({
    config: {
      prefillTimeout: 300,
      prefillMaxRetries: 5,
      prefillRetryBackoff: 10,
    },
  });
  await using silent = startHangingUpstream();
  const started = performance.now();
  const response = await h.request("/v1/chat/completions", {
    method: "POST",
    headers: jsonHeaders({ "x-prefiller-host-port": silent.hostPort }),
    body: chatBody(),
  });
  const elapsed = performance.now() - started;
  assert.equal(response.status, 504);
  const body = await response.json();
  assert.equal(body.error.code, 504);
  assert.equal(body.error.type, "GatewayTimeout");
  assert.match(body.error.message, /-prefill-timeout/);
  assert.equal(response.headers.get("x-pd-error-code"), "prefill_timeout");
  assert.ok(elapsed < 3000, `answered after ${elapsed} ms`);
  await within(silent.allClosed(), 1000, "prefill not aborted");
  assert.equal(h.decode.requests.length, 0);
  const line = await h.accessLine();
  assert.equal(line.error_code, "prefill_timeout");
});

Deno.test("-prefill-timeout does not cut a slow prefill that finishes in time", async () => {
  await using h = await createHarness({
    config: { prefillTimeout: 2000 },
    prefill: { ttftMs: 300 },
  });
  const response = await h.pd("/v1/chat/completions", chatBody());
  assert.equal(response.status, 200);
  await response.text();
});

Deno.test({
  name:
    "-prefill-timeout's timer is cleared when its prefill ends: none is left armed after the answer",
  // The op sanitizer (on by default) is the observer: a timer of ours still
  // armed when the test ends fails it. It does not see AbortSignal.timeout's
  // runtime timer, which tests/deadline_test.ts keeps out of the request path.
  async fn() {
    await using h = await createHarness({
      config: { prefillTimeout: 300_000 },
    });
    for (const stream of [false, true]) {
      const response = await h.pd("/v1/chat/completions", chatBody({ stream }));
      assert.equal(response.status, 200);
      await response.text();
    }
    assert.equal(h.prefill.requests.length, 2);
  },
});

Deno.test("-prefill-failure-policy=decode runs the client's body on the decoder alone and says so", async () => {
  await using h = await createHarness({
    config: { prefillFailurePolicy: "decode" },
  });
  const body = chatBody({ stream: true });
  const response = await h.request("/v1/chat/completions", {
    method: "POST",
    headers: jsonHeaders({
      "x-prefiller-host-port": `127.0.0.1:${closedPort()}`,
    }),
    body,
  });
  assert.equal(response.status, 200);
  assert.equal(
    response.headers.get("x-pd-fallback"),
    "decode-only; cause=prefill_unreachable",
  );
  assert.match(await response.text(), /data: \[DONE\]/);
  assert.equal(h.decode.requests.length, 1);
  assert.equal(h.decode.requests[0]?.bodyText, body);
  await h.nextLog((line) =>
    line.msg === "prefill failed: falling back to decode only" &&
    line.code === "prefill_unreachable"
  );
});

Deno.test("-prefill-failure-policy=decode leaves a prefill's 4xx to the client", async () => {
  await using h = await createHarness({
    config: { prefillFailurePolicy: "decode" },
    prefill: { failureRate: 1, failureStatus: 400 },
  });
  const response = await h.pd("/v1/chat/completions", chatBody());
  assert.equal(response.status, 400);
  assert.equal(response.headers.get("x-pd-fallback"), null);
  await response.text();
  assert.equal(h.decode.requests.length, 0);
});

Deno.test("a concurrent connector never retries its prefill, and falls back under policy decode", async () => {
  await using h = await createConnectorHarness("offloading", {
    config: {
      prefillMaxRetries: 3,
      prefillRetryBackoff: 10,
      prefillFailurePolicy: "decode",
    },
    prefill: { failureRate: 1, failureStatus: 503 },
  });
  const body = chatBody();
  const response = await h.pd("/v1/chat/completions", body);
  assert.equal(response.status, 200);
  assert.equal(
    response.headers.get("x-pd-fallback"),
    "decode-only; cause=prefill_error",
  );
  await response.text();
  assert.equal(h.prefill.requests.length, 1);
  assert.equal(h.decode.requests.at(-1)?.bodyText, body);
});

Deno.test("sglang answers a failed prefill even under policy decode: its decoder cannot serve alone", async () => {
  await using h = await createConnectorHarness("sglang", {
    config: { prefillFailurePolicy: "decode" },
    prefill: { failureRate: 1, failureStatus: 503 },
  });
  const response = await h.pd("/v1/chat/completions", chatBody());
  assert.equal(response.status, 503);
  assert.equal(response.headers.get("x-pd-fallback"), null);
  await response.text();
});
