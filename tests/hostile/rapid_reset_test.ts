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
import { createMetrics } from "../../src/metrics.ts";
import { createHarness } from "../support/harness.ts";
import { scrape, total } from "../support/prometheus.ts";
import { createWaiters, withDeadline } from "../support/deadline.ts";
import { connectH2c, type RawH2Client } from "../support/h2_frames.ts";
import { startScriptedServer } from "../support/stub_upstream.ts";
import {
  type RecordingUpstream,
  startRecordingUpstream,
} from "./_upstreams.ts";

const MAX_RESETS = 20;
const STREAMS = 200;
const WARNING = "closing a client connection that cancels too many requests";

/**
 * Plays the attacker: opens a stream, waits for the decoder to have its
 * request, cancels it, and again, until GOAWAY (or the connection's end)
 * or `streams` were sent; returns how many were sent.
 */
async function cancelEachOnceAtDecoder(
  client: RawH2Client,
  decoder: RecordingUpstream,
  streams: number,
): Promise<number> {
  let goaway = false;
  client.goaway.then(() => goaway = true);
  const ended = Promise.race([client.goaway, client.closed]);
  let sent = 0;
  while (sent < streams && !goaway) {
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
  return sent;
}

Deno.test(
  "h2c: a client cancelling every request once the decoder has it gets GOAWAY and its later requests never reach the decoder",
  async () => {
    await using decoder = startRecordingUpstream();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port, maxClientResets: MAX_RESETS },
    });
    const port = Number(new URL(h.listen()).port);
    await using client = await connectH2c(port);
    const sent = await cancelEachOnceAtDecoder(client, decoder, STREAMS);
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
    const line = await h.nextLog((l) => l.msg === WARNING);
    assert.ok(Number(line.resets) >= MAX_RESETS);
  },
);

Deno.test(
  "h2c: a client that cancels its streams after their answers began (users stopping generations) keeps its connection",
  async () => {
    await using decoder = startRecordingUpstream({ answerOnHead: true });
    await using h = await createHarness({
      config: { modelServerPort: decoder.port, maxClientResets: MAX_RESETS },
    });
    const port = Number(new URL(h.listen()).port);
    await using client = await connectH2c(port);
    const answers = createWaiters();
    const streams = 3 * MAX_RESETS;
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
      // Every user stops: all of them, and far more than the limit.
      for (let i = 0; i < streams; i++) client.cancel(2 * i + 1);
      await client.flush();
      // The sidecar drops the upstream request of each cancelled stream.
      let dropped = 0;
      for (const seen of decoder.connections) seen.closed.then(() => dropped++);
      await answers.until(
        () => dropped >= streams,
        `${streams} upstream requests dropped`,
        { detail: () => `${dropped} dropped` },
      );
      const next = 2 * streams + 1;
      client.get(next, "/v1/models");
      await client.flush();
      await answers.until(
        () => client.answered.has(next),
        "the answer to a request sent after the cancels",
      );
      assert.equal(client.answers.get(next)?.status, 200);
    } finally {
      clearInterval(watch);
    }
    assert.equal(h.logs.some((l) => l.msg === WARNING), false);
  },
);

Deno.test(
  "h2c: a multiplexing client that cancels fewer than half of its streams before their answers keeps its connection",
  async () => {
    // The decoder never answers: every cancel comes before the answer's head.
    await using decoder = startRecordingUpstream();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port, maxClientResets: MAX_RESETS },
    });
    const port = Number(new URL(h.listen()).port);
    await using client = await connectH2c(port);
    const waiters = createWaiters();
    const streams = 150;
    const cancelled = 3 * MAX_RESETS;
    for (let i = 0; i < streams; i++) client.get(2 * i + 1, "/v1/models");
    await client.flush();
    const watch = setInterval(() => waiters.notify(), 5);
    try {
      await waiters.until(
        () => decoder.connections.length === streams,
        `${streams} requests at the decoder`,
        { detail: () => `${decoder.connections.length} there` },
      );
      for (let i = 0; i < cancelled; i++) client.cancel(2 * i + 1);
      await client.flush();
      let dropped = 0;
      for (const seen of decoder.connections) seen.closed.then(() => dropped++);
      await waiters.until(
        () => dropped >= cancelled,
        `${cancelled} upstream requests dropped`,
        { detail: () => `${dropped} dropped` },
      );
      // More cancels than the limit, but not over half: the next request
      // still reaches the decoder.
      client.get(2 * streams + 1, "/v1/models");
      await client.flush();
      await waiters.until(
        () => decoder.connections.length === streams + 1,
        "the request sent after the cancels at the decoder",
        { detail: () => `${decoder.connections.length} there` },
      );
    } finally {
      clearInterval(watch);
    }
    assert.equal(h.logs.some((l) => l.msg === WARNING), false);
  },
);

Deno.test(
  "h2c: a request on a connection closed for its resets is a 429 too_many_client_resets in vLLM's error shape, with its access line and metric",
  async () => {
    await using decoder = startRecordingUpstream();
    const metrics = createMetrics();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port, maxClientResets: MAX_RESETS },
      metrics,
    });
    const port = Number(new URL(h.listen()).port);
    await using client = await connectH2c(port);
    const sent = await cancelEachOnceAtDecoder(client, decoder, STREAMS);
    await withDeadline(client.goaway, 5_000, "GOAWAY");
    const reached = decoder.connections.length;
    const id = 2 * sent + 1;
    client.get(id, "/v1/models/after-goaway");
    await client.flush();
    const answer = await client.until(
      () => client.answers.get(id)?.ended && client.answers.get(id),
      "the whole answer to the stream sent after GOAWAY",
    );
    assert.equal(answer.status, 429);
    assert.equal(answer.headers.get("content-type"), "application/json");
    assert.equal(
      answer.headers.get("x-pd-error-code"),
      "too_many_client_resets",
    );
    const body: unknown = JSON.parse(answer.body);
    assert.deepEqual(Object.keys(Object(body)), ["error"]);
    const error: unknown = Reflect.get(Object(body), "error");
    assert.deepEqual(Object.keys(Object(error)).sort(), [
      "code",
      "message",
      "param",
      "type",
    ]);
    assert.equal(Reflect.get(Object(error), "code"), 429);
    assert.equal(Reflect.get(Object(error), "param"), null);
    assert.equal(typeof Reflect.get(Object(error), "message"), "string");
    assert.equal(decoder.connections.length, reached);
    const isRefusedLine = (l: Record<string, unknown>) =>
      l.msg === "request handled" && l.path === "/v1/models/after-goaway";
    const line = await h.nextLog(isRefusedLine);
    assert.equal(line.status, 429);
    assert.equal(line.error_code, "too_many_client_resets");
    assert.equal(line.outcome, "error");
    // Its stream has ended, so its one line is written: no second one follows.
    assert.equal(h.logs.filter(isRefusedLine).length, 1);
    // The attacker's last request, whose arrival tripped the check, was
    // refused as well: each refusal has its line, and only refusals count
    // as errors (the cancelled requests count as client_aborted).
    const tripped = 2 * (sent - 1) + 1;
    const trippedAnswer = await client.until(
      () => client.answers.get(tripped)?.ended && client.answers.get(tripped),
      "the answer to the request that tripped the check",
    );
    assert.equal(trippedAnswer.status, 429);
    const refusals = 2;
    const refusedLines = () =>
      h.logs.filter((l) =>
        l.msg === "request handled" &&
        l.error_code === "too_many_client_resets" && l.status === 429
      ).length;
    const written = createWaiters();
    const watch = setInterval(() => written.notify(), 5);
    try {
      await written.until(
        () => refusedLines() === refusals,
        `${refusals} access lines of refused requests`,
        { detail: () => `${refusedLines()} written` },
      );
    } finally {
      clearInterval(watch);
    }
    assert.equal(
      total(await scrape(metrics), "llm_d_sidecar_requests_total", {
        outcome: "error",
      }),
      refusals,
    );
  },
);

Deno.test(
  "h2c: with -max-client-resets=0 a client cancelling every request keeps its connection and its requests reach the decoder",
  async () => {
    await using decoder = startRecordingUpstream();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port, maxClientResets: 0 },
    });
    const port = Number(new URL(h.listen()).port);
    await using client = await connectH2c(port);
    const cancelled = 3 * MAX_RESETS;
    const sent = await cancelEachOnceAtDecoder(client, decoder, cancelled);
    assert.equal(sent, cancelled);
    const next = 2 * sent + 1;
    client.get(next, "/v1/models");
    await client.flush();
    const seen = createWaiters();
    const watch = setInterval(() => seen.notify(), 5);
    try {
      await seen.until(
        () => decoder.connections.length === cancelled + 1,
        "the request sent after the cancels at the decoder",
        { detail: () => `answered ${client.answers.get(next)?.status}` },
      );
    } finally {
      clearInterval(watch);
    }
    assert.equal(h.logs.some((l) => l.msg === WARNING), false);
    let goaway = false;
    client.goaway.then(() => goaway = true);
    await Promise.resolve();
    assert.equal(goaway, false);
  },
);

Deno.test(
  "h2c: a client connection that drops with more requests in flight than -max-client-resets logs no rapid-reset warning",
  async () => {
    await using decoder = startRecordingUpstream();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port, maxClientResets: MAX_RESETS },
    });
    const port = Number(new URL(h.listen()).port);
    const client = await connectH2c(port);
    const inFlight = 3 * MAX_RESETS;
    for (let i = 0; i < inFlight; i++) client.get(2 * i + 1, `/slow/${i}`);
    await client.flush();
    const seen = createWaiters();
    const watch = setInterval(() => seen.notify(), 5);
    try {
      await seen.until(
        () => decoder.connections.length === inFlight,
        `${inFlight} requests at the decoder`,
        { detail: () => `${decoder.connections.length} arrived` },
      );
      client.close();
      await withDeadline(client.closed, 2_000, "the client's socket closed");
      // The sidecar drops the upstream request of each stream the close cancelled.
      let dropped = 0;
      for (const c of decoder.connections) c.closed.then(() => dropped++);
      await seen.until(
        () => dropped === inFlight,
        `${inFlight} upstream requests dropped`,
        { detail: () => `${dropped} dropped` },
      );
      // Each request's access line follows the sidecar's count of its cancel.
      const aborted = () =>
        h.logs.filter((l) =>
          l.msg === "request handled" && l.outcome === "client_aborted"
        ).length;
      await seen.until(
        () => aborted() === inFlight,
        `${inFlight} access lines of cancelled requests`,
        { detail: () => `${aborted()} written` },
      );
    } finally {
      clearInterval(watch);
    }
    assert.equal(h.logs.some((l) => l.msg === WARNING), false);
  },
);

Deno.test(
  "h2c: answers the sidecar breaks mid-stream (a decoder that dies) are not the client's cancels: the connection stays",
  async () => {
    // Over HTTP/2 the runtime aborts the request's signal when the answer it
    // pipes breaks, as it does for the client's RST_STREAM. This decoder
    // sends a head and one chunk, then drops the connection.
    await using decoder = startScriptedServer(async (conn) => {
      const buffer = new Uint8Array(16 * 1024);
      let head = "";
      while (!head.includes("\r\n\r\n")) {
        const read = await conn.read(buffer).catch(() => null);
        if (read === null) return;
        head += new TextDecoder().decode(buffer.subarray(0, read));
      }
      await conn.write(new TextEncoder().encode(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n" +
          "transfer-encoding: chunked\r\n\r\na\r\ndata: {}\n\n\r\n",
      )).catch(() => 0);
      conn.close();
    });
    await using h = await createHarness({
      config: {
        modelServerPort: decoder.port,
        maxClientResets: MAX_RESETS,
      },
    });
    const base = h.listen();
    using client = Deno.createHttpClient({ http1: false, http2: true });
    const statuses: number[] = [];
    for (let i = 0; i < 3 * MAX_RESETS; i++) {
      const response = await withDeadline(
        fetch(`${base}/v1/models`, { client }),
        5_000,
        `answer ${i}`,
      );
      statuses.push(response.status);
      // Read to the break: a cancel here would be the client's own.
      await withDeadline(
        assert.rejects(response.text()),
        5_000,
        `the break of answer ${i}`,
      );
    }
    assert.deepEqual(new Set(statuses), new Set([200]));
    assert.equal(h.logs.some((line) => line.msg === WARNING), false);
  },
);
