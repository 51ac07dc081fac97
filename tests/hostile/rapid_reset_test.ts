/**
 * HTTP/2 rapid reset (CVE-2023-44487) on h2c: a client that cancels each
 * request once it is under way has the sidecar start requests to the
 * decoder without bound. The runtime's own guard (h2's limit of 20 streams
 * reset before they are accepted) misses a reset that comes after the
 * stream was taken in, so each stream here is cancelled only once the
 * decoder has its request. The client writes frames itself:
 * `node:http2` under Deno sends no RST_STREAM for a stream closed after its
 * END_STREAM HEADERS (seen on the wire).
 */

import assert from "node:assert/strict";
import { createHarness } from "../support/harness.ts";
import { createWaiters, withDeadline } from "../support/deadline.ts";
import { connectH2c } from "../support/h2_frames.ts";
import { startRecordingUpstream } from "./_upstreams.ts";

const MAX_RESETS = 20;
const STREAMS = 200;

Deno.test(
  "h2c: a client cancelling every request once the decoder has it gets GOAWAY and its later requests never reach the decoder",
  async () => {
    await using decoder = startRecordingUpstream();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port, maxClientResets: MAX_RESETS },
    });
    const port = Number(new URL(h.listen()).port);
    await using client = await connectH2c(port);
    let goaway = false;
    client.goaway.then(() => goaway = true);
    const ended = Promise.race([client.goaway, client.closed]);
    let sent = 0;
    while (sent < STREAMS && !goaway) {
      const id = 2 * sent + 1;
      client.get(id, "/v1/models");
      await client.flush();
      sent++;
      const arrived = await Promise.race([
        withDeadline(
          (async () => {
            while (decoder.connections.length < sent) {
              await new Promise((resolve) => setTimeout(resolve, 1));
            }
            return true;
          })(),
          2_000,
          `request ${sent} at the decoder`,
        ),
        ended.then(() => false),
      ]);
      if (!arrived) break;
      client.cancel(id);
      await client.flush().catch(() => {});
    }
    await withDeadline(client.goaway, 5_000, "GOAWAY");
    const reached = decoder.connections.length;
    assert.ok(
      reached < 3 * MAX_RESETS,
      `${reached} of ${sent} requests reached the decoder`,
    );
    // A client that ignores GOAWAY (and its PING) keeps sending: refused.
    const later = Array.from({ length: 10 }, (_, i) => 2 * (sent + i) + 1);
    for (const id of later) client.get(id, "/v1/models");
    await client.flush();
    const answers = createWaiters();
    const watch = setInterval(() => answers.notify(), 5);
    try {
      await answers.until(
        () => later.every((id) => client.answered.has(id)),
        "answers to the streams sent after GOAWAY",
      );
    } finally {
      clearInterval(watch);
    }
    assert.equal(decoder.connections.length, reached);
    const line = await h.nextLog((l) =>
      l.msg === "closing a client connection that cancels too many requests"
    );
    assert.ok(Number(line.resets) >= MAX_RESETS);
  },
);

Deno.test(
  "h2c: a multiplexing client that cancels fewer than half of its streams keeps its connection",
  async () => {
    await using decoder = startRecordingUpstream({ answerOnHead: true });
    await using h = await createHarness({
      config: { modelServerPort: decoder.port, maxClientResets: MAX_RESETS },
    });
    const port = Number(new URL(h.listen()).port);
    await using client = await connectH2c(port);
    const answers = createWaiters();
    const streams = 150;
    const cancelled = 3 * MAX_RESETS;
    for (let i = 0; i < streams; i++) client.get(2 * i + 1, "/v1/models");
    await client.flush();
    // Answers stream in and never end, as generations do.
    const watch = setInterval(() => answers.notify(), 5);
    try {
      await answers.until(
        () => client.answered.size === streams,
        `${streams} answers`,
        { detail: () => `${client.answered.size} answered` },
      );
      // Users stop some generations mid-answer.
      for (let i = 0; i < cancelled; i++) client.cancel(2 * i + 1);
      await client.flush();
      // The sidecar drops the upstream request of each cancelled stream.
      let dropped = 0;
      for (const seen of decoder.connections) seen.closed.then(() => dropped++);
      await answers.until(
        () => dropped >= cancelled,
        `${cancelled} upstream requests dropped`,
        { detail: () => `${dropped} dropped` },
      );
      const next = 2 * streams + 1;
      client.get(next, "/v1/models");
      await client.flush();
      await answers.until(
        () => client.answered.has(next),
        "the answer to a request sent after the cancels",
      );
    } finally {
      clearInterval(watch);
    }
    assert.equal(
      h.logs.some((l) =>
        l.msg === "closing a client connection that cancels too many requests"
      ),
      false,
    );
    let goaway = false;
    client.goaway.then(() => goaway = true);
    await Promise.resolve();
    assert.equal(goaway, false);
  },
);
