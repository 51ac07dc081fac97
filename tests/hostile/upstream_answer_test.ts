import assert from "node:assert/strict";
import { MAX_ANSWER_BYTES } from "../../src/upstream/client.ts";
import { within } from "../support/deadline.ts";
import { chatBody, createHarness } from "../support/harness.ts";
import { startStubUpstream } from "../support/stub_upstream.ts";

/** A body that never ends: 1 MiB chunks for as long as it is read. */
function endlessBody(): { body: ReadableStream<Uint8Array>; sent(): number } {
  const chunk = new Uint8Array(1024 * 1024).fill(0x20);
  let sent = 0;
  return {
    body: new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += chunk.byteLength;
        controller.enqueue(chunk);
      },
    }, { highWaterMark: 0 }),
    sent: () => sent,
  };
}

Deno.test("a prefiller whose answer never ends gets a 502 once it passes the answer bound, and is read no further", async () => {
  let endless: ReturnType<typeof endlessBody> | undefined;
  await using prefiller = startStubUpstream(() => {
    endless = endlessBody();
    return new Response(endless.body, {
      headers: { "content-type": "application/json" },
    });
  });
  await using h = await createHarness({ config: { verbosity: 0 } });
  const response = await within(
    h.pd("/v1/chat/completions", chatBody(), {
      "x-prefiller-host-port": prefiller.hostPort,
    }),
    10_000,
    "the sidecar's answer",
  );
  assert.equal(response.status, 502);
  assert.match((await response.json()).error.message, /answer larger than/);
  assert.equal(h.decode.requests.length, 0);
  // The sidecar stopped reading near the bound, not at the end of memory.
  assert.ok((endless?.sent() ?? 0) < MAX_ANSWER_BYTES + 8 * 1024 * 1024);
});

Deno.test("a prefiller declaring an answer over the bound gets a 502 without being read", async () => {
  await using prefiller = startStubUpstream(() =>
    new Response(endlessBody().body, {
      headers: {
        "content-type": "application/json",
        "content-length": String(MAX_ANSWER_BYTES + 1),
      },
    })
  );
  await using h = await createHarness({ config: { verbosity: 0 } });
  const response = await within(
    h.pd("/v1/chat/completions", chatBody(), {
      "x-prefiller-host-port": prefiller.hostPort,
    }),
    10_000,
    "the sidecar's answer",
  );
  assert.equal(response.status, 502);
  assert.match((await response.json()).error.message, /answer larger than/);
  assert.equal(h.decode.requests.length, 0);
});
