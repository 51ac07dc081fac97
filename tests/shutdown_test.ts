import assert from "node:assert/strict";
import { createMockVllm } from "../scripts/mock_vllm/mod.ts";
import { fetchOnOwnConnection, startPlainBundle } from "./support/process.ts";
import { chatBody, jsonHeaders } from "./support/harness.ts";

/** Starts a streamed completion through the sidecar and waits for its headers. */
async function startStream(base: string): Promise<Response> {
  const response = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: jsonHeaders(),
    body: chatBody({ stream: true }),
  });
  assert.equal(response.status, 200);
  return response;
}

Deno.test(
  "SIGTERM drains: /health answers 503 while still accepting, the stream in flight finishes, exit 0",
  async () => {
    await using decode = await createMockVllm({
      name: "decoder",
      interTokenMs: 100,
      outputTokens: 10,
    });
    await using sidecar = startPlainBundle(decode.port, [
      "-shutdown-drain-delay=500ms",
      "-shutdown-grace=10s",
    ]);
    await sidecar.waitForLine((line) => line.msg === "starting");
    const stream = await startStream(sidecar.base);
    sidecar.process.kill("SIGTERM");
    await sidecar.waitForLine((line) =>
      line.msg === "draining: /health answers 503, still accepting"
    );
    // A new connection, as a kubelet probe makes.
    const health = await fetchOnOwnConnection(`${sidecar.base}/health`);
    assert.equal(health.status, 503);
    assert.match(await stream.text(), /data: \[DONE\]/);
    assert.equal(await sidecar.exitCode(), 0);
  },
);

Deno.test(
  "SIGTERM exits 1 when a stream outlasts -shutdown-grace",
  async () => {
    await using decode = await createMockVllm({
      name: "decoder",
      interTokenMs: 1000,
      outputTokens: 30,
    });
    await using sidecar = startPlainBundle(decode.port, [
      "-shutdown-drain-delay=0s",
      "-shutdown-grace=300ms",
    ]);
    await sidecar.waitForLine((line) => line.msg === "starting");
    const stream = await startStream(sidecar.base);
    sidecar.process.kill("SIGTERM");
    assert.equal(await sidecar.exitCode(), 1);
    await sidecar.waitForLine((line) =>
      line.msg === "failed to gracefully shutdown: deadline exceeded"
    );
    await stream.body?.cancel().catch(() => {});
  },
);

Deno.test("a second signal exits at once with 128 + its number", async () => {
  await using decode = await createMockVllm({ name: "decoder" });
  await using sidecar = startPlainBundle(decode.port, [
    "-shutdown-drain-delay=30s",
  ]);
  await sidecar.waitForLine((line) => line.msg === "starting");
  sidecar.process.kill("SIGTERM");
  await sidecar.waitForLine((line) => line.msg === "signal received: draining");
  sidecar.process.kill("SIGINT");
  assert.equal(await sidecar.exitCode(), 130);
});
