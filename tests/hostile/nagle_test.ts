import assert from "node:assert/strict";
import { WHOLE_BODY_BYTES } from "../../src/routes/passthrough.ts";
import { statusOf } from "../edge/_http.ts";
import { createHarness } from "../support/harness.ts";
import { withDeadline } from "../support/deadline.ts";
import { sendBody } from "./_client.ts";
import { startTimingUpstream } from "./_upstreams.ts";

const REQUESTS = 12;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

Deno.test(
  "passthrough: a small body of known length reaches the decoder with its head, without the Nagle delay",
  async () => {
    await using decoder = startTimingUpstream();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port },
    });
    const port = Number(new URL(h.listen()).port);
    for (let i = 0; i < REQUESTS; i++) {
      // The body comes a moment after the head, as from a client that writes them apart.
      const sent = await sendBody({
        port,
        path: "/tokenize",
        bodyBytes: 2000,
        chunked: false,
        pauseAt: 0,
        resumeWhen: new Promise((resolve) => setTimeout(resolve, 5)),
      });
      assert.ok(sent.response, "no answer");
      assert.equal(statusOf(sent.response), 200);
    }
    const gaps = decoder.timings.map((timing) => timing.gapMs);
    assert.equal(gaps.length, REQUESTS);
    assert.ok(decoder.timings.every((timing) => !timing.chunked));
    // Nagle's algorithm against a delayed ACK holds a body written after its head ~40 ms.
    assert.ok(
      median(gaps) < 20,
      `head-to-body gaps (ms): ${gaps.map((gap) => gap.toFixed(1))}`,
    );
  },
);

Deno.test(
  "passthrough: a body of known length over the read-whole bound still streams",
  async () => {
    await using decoder = startTimingUpstream();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port },
    });
    const bodyBytes = 4 * WHOLE_BODY_BYTES;
    const sent = await sendBody({
      port: Number(new URL(h.listen()).port),
      path: "/tokenize",
      bodyBytes,
      chunked: false,
      // Half the body is held back until the decoder saw the request's head.
      pauseAt: bodyBytes / 2,
      resumeWhen: withDeadline(
        decoder.firstHead,
        5000,
        "the decoder seeing the head",
      ),
    });
    assert.ok(sent.response, "no answer");
    assert.equal(statusOf(sent.response), 200);
    assert.equal(decoder.timings[0]?.bodyBytes, bodyBytes);
    assert.equal(decoder.timings[0]?.chunked, false);
  },
);
