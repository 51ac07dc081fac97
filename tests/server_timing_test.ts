import assert from "node:assert/strict";
import { chatBody, createHarness } from "./support/harness.ts";

/** `Server-Timing` metrics by name, with their durations in ms. */
function serverTiming(response: Response): Map<string, number> {
  const value = response.headers.get("server-timing") ?? "";
  const entries = new Map<string, number>();
  for (const entry of value.split(",")) {
    const [name, ...params] = entry.trim().split(";");
    const dur = params.find((param) => param.startsWith("dur="));
    if (name && dur) entries.set(name, Number(dur.slice(4)));
  }
  return entries;
}

Deno.test("a P/D answer says in Server-Timing how long prefill, KV-ready and the decoder's first byte took", async () => {
  await using h = await createHarness({ prefill: { ttftMs: 150 } });
  const response = await h.pd(
    "/v1/chat/completions",
    chatBody({ stream: true }),
  );
  assert.equal(response.status, 200);
  await response.text();
  const timing = serverTiming(response);
  assert.deepEqual([...timing.keys()], ["prefill", "kv_ready", "decode_ttfb"]);
  const prefill = timing.get("prefill") ?? 0;
  assert.ok(prefill >= 150, `prefill ${prefill} ms`);
  assert.ok((timing.get("kv_ready") ?? 0) >= prefill);
  assert.ok((timing.get("decode_ttfb") ?? -1) >= 0);
});

Deno.test("a slow decoder shows in decode_ttfb, not in prefill", async () => {
  // The decoder pulls the prefill's KV, so its first token waits on the transfer.
  await using h = await createHarness({ decode: { kvTransferMs: 200 } });
  const response = await h.pd("/v1/chat/completions", chatBody());
  assert.equal(response.status, 200);
  await response.text();
  const timing = serverTiming(response);
  assert.ok(
    (timing.get("decode_ttfb") ?? 0) >= 200,
    String(timing.get("decode_ttfb")),
  );
  assert.ok((timing.get("prefill") ?? Infinity) < 200);
});

Deno.test("a passthrough answer carries no Server-Timing of the sidecar's", async () => {
  await using h = await createHarness();
  const response = await h.request("/v1/models");
  await response.body?.cancel();
  assert.equal(response.headers.get("server-timing"), null);
});
