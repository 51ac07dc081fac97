import assert from "node:assert/strict";
import { createMetrics } from "../../src/metrics.ts";
import { within } from "../support/deadline.ts";
import { chatBody, createHarness } from "../support/harness.ts";
import { parseExposition, total } from "../support/prometheus.ts";

Deno.test("-stream-idle-timeout breaks off a decoder that stalls mid-stream and aborts it", async () => {
  await using h = await createHarness({
    config: { streamIdleTimeout: 300 },
    decode: { interTokenMs: 10_000 },
  });
  const response = await h.pd(
    "/v1/chat/completions",
    chatBody({ stream: true }),
  );
  assert.equal(response.status, 200);
  const text = within(
    response.text().then(() => "ended", () => "broken"),
    3000,
    "the stalled stream was not broken off",
  );
  assert.equal(await text, "broken");
  const decode = h.decode.requests[0];
  assert.ok(decode);
  assert.equal(
    await within(decode.finished, 1000, "decode not aborted"),
    "aborted",
  );
  await h.nextLog((line) =>
    line.msg === "decoder stream idle: breaking it off"
  );
});

Deno.test("-stream-idle-timeout does not cut a healthy generation longer than it", async () => {
  await using h = await createHarness({
    config: { streamIdleTimeout: 300, decodeFirstByteTimeout: 300 },
    decode: { interTokenMs: 100, outputTokens: 8 },
  });
  const started = performance.now();
  const response = await h.pd(
    "/v1/chat/completions",
    chatBody({ stream: true }),
  );
  assert.equal(response.status, 200);
  assert.match(await response.text(), /data: \[DONE\]/);
  assert.ok(performance.now() - started > 600);
});

Deno.test("-stream-idle-timeout leaves a steady stream whole for a client that stops reading for longer than it", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({
    metrics,
    config: { streamIdleTimeout: 300, verbosity: 0 },
    // A token every 40 ms, 960 ms in all: the decoder is never silent for long.
    decode: { interTokenMs: 40, outputTokens: 24 },
  });
  const response = await h.pd(
    "/v1/chat/completions",
    chatBody({ stream: true, max_tokens: 24 }),
  );
  assert.equal(response.status, 200);
  assert.ok(response.body);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const first = await within(reader.read(), 2000, "no first chunk");
  let text = decoder.decode(first.value, { stream: true });
  // The client reads nothing more until the decoder has sent its whole
  // answer, which takes far longer than the timeout.
  const decode = h.decode.requests[0];
  assert.ok(decode);
  assert.equal(
    await within(decode.finished, 5000, "decode did not finish"),
    "completed",
  );
  const rest = async () => {
    for (
      let read = await reader.read();
      !read.done;
      read = await reader.read()
    ) {
      text += decoder.decode(read.value, { stream: true });
    }
  };
  await within(rest(), 2000, "the rest of the stream did not arrive");
  assert.match(text, /data: \[DONE\]/);
  assert.equal(text.match(/"delta":\{"content"/g)?.length, 24);
  const families = parseExposition(await metrics.render());
  assert.equal(total(families, "llm_d_sidecar_failures_total"), 0);
  assert.equal(total(families, "llm_d_sidecar_upstream_errors_total"), 0);
});

Deno.test("-stream-idle-timeout leaves the wait for the first byte to -decode-first-byte-timeout", async () => {
  await using h = await createHarness({
    config: { streamIdleTimeout: 200 },
    decode: { kvTransferMs: 500 },
  });
  const response = await h.pd(
    "/v1/chat/completions",
    chatBody({ stream: true }),
  );
  assert.equal(response.status, 200);
  assert.match(await response.text(), /data: \[DONE\]/);
  assert.equal(h.decode.requests.length, 1);
});

Deno.test("-decode-first-byte-timeout answers 504 when a streaming decode sends nothing, and aborts it", async () => {
  await using h = await createHarness({
    config: { decodeFirstByteTimeout: 300 },
    // The decoder waits for the KV transfer, as one whose KV never arrives.
    decode: { kvTransferMs: 10_000 },
  });
  const response = await h.pd(
    "/v1/chat/completions",
    chatBody({ stream: true }),
  );
  assert.equal(response.status, 504);
  const body = await response.json();
  assert.equal(body.error.code, 504);
  assert.match(body.error.message, /-decode-first-byte-timeout/);
  const decode = h.decode.requests[0];
  assert.ok(decode);
  assert.equal(
    await within(decode.finished, 1000, "decode not aborted"),
    "aborted",
  );
  const line = await h.accessLine();
  assert.equal(line.error_code, "decode_first_byte_timeout");
});

Deno.test("-decode-first-byte-timeout leaves a non-streaming decode alone", async () => {
  await using h = await createHarness({
    config: { decodeFirstByteTimeout: 100 },
    decode: { kvTransferMs: 400 },
  });
  const started = performance.now();
  const response = await h.pd("/v1/chat/completions", chatBody());
  assert.equal(response.status, 200);
  await response.json();
  assert.ok(performance.now() - started >= 400);
});
