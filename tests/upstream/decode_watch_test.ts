import assert from "node:assert/strict";
import { within } from "../support/deadline.ts";
import { chatBody, createHarness } from "../support/harness.ts";

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
  const line = await h.nextLog((line) => line.msg === "request handled");
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
