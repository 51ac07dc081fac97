import assert from "node:assert/strict";
import {
  createFastHandler,
  createStepStream,
} from "../../scripts/bench/fast_upstream.ts";
import { SseResponseReader } from "../../scripts/bench/sse_response.ts";
import {
  createStepScheduler,
  type StepClock,
  type TimerHandle,
} from "../../scripts/bench/step_scheduler.ts";
import {
  mergeStreams,
  type RawStreams,
  runStreams,
  runStreamsSharded,
} from "../../scripts/bench/stream_client.ts";
import { startScriptedServer } from "../support/stub_upstream.ts";

const encoder = new TextEncoder();

const EVENTS = [
  'data: {"n":1,"text":"caf\u00e9 \u{1F600}"}',
  'data: {"n":2,"bench_sent_ms":1750000000000.125}',
  "data: [DONE]",
];
const SSE = EVENTS.map((event) => `${event}\n\n`).join("");

function chunkedBody(text: string, sizes: readonly number[]): string {
  const bytes = encoder.encode(text);
  let out = "";
  let at = 0;
  for (const size of sizes) {
    const part = bytes.subarray(at, at + size);
    if (part.length === 0) break;
    // Latin-1 keeps one char per byte, so the test can split anywhere.
    out += `${part.length.toString(16)};ext=1\r\n${
      String.fromCharCode(...part)
    }\r\n`;
    at += part.length;
  }
  if (at < bytes.length) {
    out += `${(bytes.length - at).toString(16)}\r\n${
      String.fromCharCode(...bytes.subarray(at))
    }\r\n`;
  }
  return `${out}0\r\ntrailer: x\r\n\r\n`;
}

function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0));
}

/** Feeds `wire` to a reader in pieces ending at each of `cuts`, returning the events and the reader. */
function feed(wire: Uint8Array, cuts: readonly number[]) {
  const events: string[] = [];
  const reader = new SseResponseReader((event) => events.push(event));
  let at = 0;
  for (const cut of [...cuts, wire.length]) {
    reader.push(wire.subarray(at, cut));
    at = cut;
  }
  return { reader, events };
}

Deno.test("bench SSE reader de-chunks a response cut at every byte", () => {
  const wire = latin1(
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n" +
      `Transfer-Encoding: chunked\r\n\r\n${chunkedBody(SSE, [7, 30, 1, 45])}`,
  );
  for (let cut = 1; cut < wire.length; cut++) {
    const { reader, events } = feed(wire, [cut]);
    assert.deepEqual(events, EVENTS, `cut at byte ${cut}`);
    assert.equal(reader.status, 200);
    assert.equal(reader.complete, true, `cut at byte ${cut}`);
  }
  // And one byte at a time.
  const { events } = feed(wire, Array.from(wire.keys()).slice(1));
  assert.deepEqual(events, EVENTS);
});

Deno.test("bench SSE reader reads Content-Length and close-delimited bodies", () => {
  const body = encoder.encode(SSE);
  const head = `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`;
  const wire = new Uint8Array([...encoder.encode(head), ...body]);
  const sized = feed(wire, [head.length + 3, head.length + 40]);
  assert.deepEqual(sized.events, EVENTS);
  assert.equal(sized.reader.complete, true);

  const untilClose = feed(
    new Uint8Array([
      ...encoder.encode("HTTP/1.0 200 OK\r\n\r\n"),
      ...encoder.encode('data: {"n":1}\n\ndata: {"n":2}\n\ndata: {"n":3}'),
    ]),
    [25],
  );
  assert.deepEqual(untilClose.events, ['data: {"n":1}', 'data: {"n":2}']);
  assert.equal(untilClose.reader.complete, false);
  assert.equal(untilClose.reader.end(), true);
  // The last event has no blank line after it: dropped, as SSE says.
  assert.deepEqual(untilClose.events, ['data: {"n":1}', 'data: {"n":2}']);
});

Deno.test("bench SSE reader tells a cut-short stream and a bad head", () => {
  const cut = feed(
    latin1("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nda"),
    [],
  );
  assert.equal(cut.reader.end(), false);
  assert.throws(() => feed(latin1("SSH-2.0-OpenSSH\r\n\r\n"), []), /status/);
  const head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
  // parseInt would take each of these; a negative size used to loop forever.
  for (const size of ["-5", "+5", "0x9", "5 junk", ""]) {
    assert.throws(
      () => feed(latin1(`${head}${size}\r\ndata: x\n\n\r\n0\r\n\r\n`), []),
      /Bad chunk size/,
      size,
    );
  }
  // A size one short leaves a byte where the CRLF should be.
  assert.throws(
    () => feed(latin1(`${head}8\r\ndata: x\n\n\r\n0\r\n\r\n`), []),
    /CRLF/,
  );
  assert.throws(
    () =>
      feed(
        latin1("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
        [
          40,
        ],
      ),
    /chunk size/,
  );
});

Deno.test("bench stream client times every chunk of the fast decoder's streams", async () => {
  const handler = createFastHandler("decode", { chunks: 4, intervalMs: 5 });
  const received: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      received.push(request.headers.get("x-probe") ?? "");
      return await handler(request);
    },
  );
  try {
    const result = await runStreams({
      url: `http://127.0.0.1:${server.addr.port}/v1/chat/completions`,
      headers: { "x-probe": "yes" },
      body: '{"stream":true}',
      streams: 3,
      rampMs: 10,
    });
    assert.equal(result.completed, 3, result.firstError);
    assert.equal(result.failed, 0);
    assert.equal(result.events, 12);
    assert.equal(result.delayMs.count, 12);
    assert.ok((result.delayMs.p50 ?? -1) >= 0);
    assert.equal(result.gapMs.count, 9);
    assert.deepEqual(received, ["yes", "yes", "yes"]);
  } finally {
    await server.shutdown();
  }
});

/** Two streams against a server that reads each request, writes `answer` and closes. */
async function streamsAgainst(answer: string) {
  await using server = startScriptedServer(async (conn) => {
    await conn.read(new Uint8Array(4096));
    await conn.write(encoder.encode(answer));
    conn.close();
  });
  return await runStreams({
    url: `http://127.0.0.1:${server.port}/v1/completions`,
    headers: {},
    body: "{}",
    streams: 2,
    rampMs: 0,
  });
}

Deno.test("bench stream client times nothing of an error answer", async () => {
  const body = 'data: {"bench_sent_ms":1}\n\n{"error":"overloaded"}';
  const result = await streamsAgainst(
    `HTTP/1.1 503 Service Unavailable\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
  );
  assert.equal(result.completed, 0);
  assert.equal(result.failed, 2);
  assert.equal(result.events, 0);
  assert.equal(result.firstEventMs.count, 0);
  assert.equal(result.delayMs.count, 0);
});

Deno.test("bench stream client counts a stream the server cuts short as failed", async () => {
  const result = await streamsAgainst(
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" +
      "a\r\ndata: {}\n\n\r\n",
  );
  assert.equal(result.completed, 0);
  assert.equal(result.failed, 2);
  assert.match(result.firstError ?? "", /closed the stream/);
});

/** A clock whose timers run only when the test fires them. */
function createFakeClock(start = 1000) {
  let now = start;
  let nextId = 0;
  const timers = new Map<number, { at: number; callback: () => void }>();
  const clock: StepClock = {
    now: () => now,
    setTimer(callback, delayMs) {
      timers.set(++nextId, { at: now + delayMs, callback });
      return nextId as unknown as TimerHandle;
    },
    clearTimer(handle) {
      timers.delete(handle as unknown as number);
    },
  };
  return {
    clock,
    set now(value: number) {
      now = value;
    },
    get pending(): number[] {
      return [...timers.values()].map((timer) => timer.at);
    },
    /** Runs the earliest timer `lateMs` after it was due; returns when it was due. */
    fire(lateMs = 0): number {
      const [id, timer] = [...timers].sort((a, b) => a[1].at - b[1].at)[0] ??
        [];
      if (id === undefined || timer === undefined) {
        throw new Error("No timer pending");
      }
      timers.delete(id);
      now = timer.at + lateMs;
      timer.callback();
      return timer.at;
    },
  };
}

/** A stream that records the clock's time at each of its `events` steps. */
function recordingStream(
  name: string,
  log: string[],
  clock: { now(): number },
  events = Infinity,
) {
  let left = events;
  return {
    step() {
      log.push(`${clock.now()} ${name}`);
      return --left === 0;
    },
  };
}

Deno.test("bench step decoder writes to every open stream in the same tick, on a fixed grid", () => {
  const fake = createFakeClock(1000);
  const scheduler = createStepScheduler(50, fake.clock);
  const log: string[] = [];
  fake.now = 1010;
  scheduler.join(recordingStream("a", log, fake.clock));
  fake.now = 1030;
  scheduler.join(recordingStream("b", log, fake.clock));
  // One timer for both, at the next grid point.
  assert.deepEqual(fake.pending, [1050]);
  assert.equal(fake.fire(), 1050);
  assert.equal(fake.fire(), 1100);
  assert.deepEqual(log, ["1050 a", "1050 b", "1100 a", "1100 b"]);
});

Deno.test("bench step decoder skips the steps a late timer missed and never ticks twice on one", () => {
  const fake = createFakeClock(0);
  const scheduler = createStepScheduler(50, fake.clock);
  const log: string[] = [];
  scheduler.join(recordingStream("a", log, fake.clock));
  fake.fire(120); // due at 50, ran at 170: like an engine step that ran long
  assert.deepEqual(fake.pending, [200]);
  fake.fire(-0.5); // due at 200, ran a little early
  assert.deepEqual(fake.pending, [250]);
  assert.deepEqual(log, ["170 a", "199.5 a"]);
});

Deno.test("bench step decoder drops finished and departed streams and stops ticking when none is left", () => {
  const fake = createFakeClock(0);
  const scheduler = createStepScheduler(25, fake.clock);
  const log: string[] = [];
  scheduler.join(recordingStream("two", log, fake.clock, 2));
  const leave = scheduler.join(recordingStream("left", log, fake.clock));
  fake.fire();
  leave();
  fake.fire();
  assert.equal(scheduler.size, 0);
  assert.deepEqual(fake.pending, []);
  assert.deepEqual(log, ["25 two", "25 left", "50 two"]);
  // A stream whose reader is gone (its write throws) is dropped too.
  scheduler.join({
    step() {
      throw new TypeError("The stream controller cannot close or enqueue");
    },
  });
  fake.fire();
  assert.equal(scheduler.size, 0);
  assert.deepEqual(fake.pending, []);
});

Deno.test("bench step stream writes one timestamped event per tick and [DONE] with the last", async () => {
  const fake = createFakeClock(0);
  const scheduler = createStepScheduler(50, fake.clock);
  const body = createStepStream(scheduler, 3);
  fake.fire();
  fake.fire();
  fake.fire();
  assert.deepEqual(fake.pending, []);
  const text = await new Response(body).text();
  const events = text.split("\n\n").filter((event) => event !== "");
  assert.equal(events.length, 4);
  events.slice(0, 3).forEach((event, i) => {
    assert.match(event, new RegExp(`"content":" tok${i}"`));
    assert.match(event, /"bench_sent_ms":\d+\.\d{3}\}$/);
  });
  assert.equal(events[3], "data: [DONE]");
});

Deno.test("bench stream client merges its shards' samples into one result", () => {
  const part = (delays: number[], error?: string): RawStreams => ({
    streams: 2,
    completed: 2,
    failed: 0,
    events: delays.length,
    delay: Float64Array.from(delays),
    gap: Float64Array.from([50]),
    firstEvent: Float64Array.from([1]),
    ...(error === undefined ? {} : { firstError: error }),
  });
  const merged = mergeStreams([part([1, 2]), part([3, 4], "late")], 1.5);
  assert.equal(merged.streams, 4);
  assert.equal(merged.events, 4);
  assert.equal(merged.delayMs.count, 4);
  assert.equal(merged.delayMs.max, 4);
  assert.equal(merged.delayMs.p50, 2);
  assert.equal(merged.gapMs.count, 2);
  assert.equal(merged.firstError, "late");
  assert.equal(merged.wallS, 1.5);
});

Deno.test("bench stream client split over workers reads every stream of a step decoder", async () => {
  const handler = createFastHandler("decode", {
    chunks: 3,
    intervalMs: 5,
    stepMs: 5,
  });
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    handler,
  );
  const result = await runStreamsSharded({
    url: `http://127.0.0.1:${server.addr.port}/v1/chat/completions`,
    headers: {},
    body: '{"stream":true}',
    streams: 5,
    rampMs: 10,
  }, 2);
  assert.equal(result.streams, 5);
  assert.equal(result.completed, 5, result.firstError);
  assert.equal(result.events, 15);
  assert.equal(result.delayMs.count, 15);
});
