/**
 * @module
 * The benchmark's streaming client, run as its own process: opens `--streams`
 * SSE streams spread evenly over `--ramp-ms`, so they all run at once without
 * a thundering start, and times every event. When an event carries the time
 * the decoder sent it (`bench_sent_ms`, from `fast_upstream.ts`), its delay is
 * the receive time minus that (both processes read the same wall clock). With
 * `--prefill-url` each stream is a client-side P/D chain: the prefill POST,
 * then the decode stream direct. Each stream has a connection of its own,
 * read straight from the socket (`sse_response.ts`). Past 100 streams
 * the work is split over Web Workers (`shards.ts`; `--shards`
 * overrides), so the client's own reads do not fall behind. Prints one JSON
 * object (`StreamResult`).
 */

import { parseArgs } from "node:util";
import { SENT_AT_FIELD } from "./fast_upstream.ts";
import { SseResponseReader } from "./sse_response.ts";
import { createAgent, parseHeaderArgs, post, writeAll } from "./http1.ts";
import { buildDecodeBody, buildPrefillBody } from "./pd_client.ts";
import {
  runInWorkers,
  type Shard,
  shardCount,
  shardIndices,
} from "./shards.ts";
import { Samples, summarize, type Summary } from "./stats.ts";

/** What the streaming client measured; times in milliseconds. */
export interface StreamResult {
  readonly streams: number;
  /** Streams that ended with `data: [DONE]`. */
  readonly completed: number;
  readonly failed: number;
  readonly events: number;
  /** Receive time minus the decoder's send time, per event that carries one. */
  readonly delayMs: Summary;
  /** Time between consecutive events of a stream. */
  readonly gapMs: Summary;
  /** From the start of the stream's work (the prefill, in chain mode) to the first event. */
  readonly firstEventMs: Summary;
  readonly wallS: number;
  readonly firstError?: string;
}

/** What one run does. Plain data, so a worker can be handed it. */
export interface StreamPlan {
  readonly url: string;
  readonly prefillUrl?: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly streams: number;
  readonly rampMs: number;
  /** Epoch ms the ramp starts at, shared by every shard; now when absent. */
  readonly startAtMs?: number;
}

/** One worker's part of a sharded run. */
export interface StreamShardJob {
  readonly plan: StreamPlan;
  readonly shard: Shard;
}

/** What one shard measured: counts and every sample, so shards can be merged. */
export interface RawStreams {
  readonly streams: number;
  readonly completed: number;
  readonly failed: number;
  readonly events: number;
  readonly delay: Float64Array;
  readonly gap: Float64Array;
  readonly firstEvent: Float64Array;
  readonly firstError?: string;
}

const SENT_AT = new RegExp(`"${SENT_AT_FIELD}":([0-9.]+)`);

interface Recorders {
  readonly delay: Samples;
  readonly gap: Samples;
  readonly firstEvent: Samples;
}

function now(): number {
  return performance.timeOrigin + performance.now();
}

const encoder = new TextEncoder();

/** One stream on its own connection, read straight from the socket. */
async function openStream(
  url: URL,
  body: string,
  options: {
    headers: Readonly<Record<string, string>>;
    record: Recorders;
    /** When the stream's work began (before the prefill in chain mode). */
    sentAt: number;
  },
): Promise<{ events: number; done: boolean }> {
  const { record, sentAt } = options;
  const payload = encoder.encode(body);
  const fields = Object.entries(options.headers)
    .map(([name, value]) => `${name}: ${value}\r\n`).join("");
  const head = `POST ${url.pathname}${url.search} HTTP/1.1\r\n` +
    `host: ${url.host}\r\n${fields}content-length: ${payload.length}\r\n` +
    "connection: close\r\n\r\n";
  const conn = await Deno.connect({
    hostname: url.hostname,
    port: Number(url.port || 80),
  });
  try {
    await writeAll(conn, encoder.encode(head));
    await writeAll(conn, payload);
    const buffer = new Uint8Array(16 * 1024);
    let events = 0;
    let done = false;
    let last = 0;
    let received = 0;
    const onEvent = (event: string): void => {
      // An error answer's body is not a stream of chunks to time.
      if (response.status !== 200) return;
      if (event === "data: [DONE]") {
        done = true;
        return;
      }
      if (events === 0) record.firstEvent.push(received - sentAt);
      else record.gap.push(received - last);
      last = received;
      events++;
      const sent = SENT_AT.exec(event)?.[1];
      if (sent !== undefined) record.delay.push(received - Number(sent));
    };
    const response = new SseResponseReader(onEvent);
    while (!response.complete) {
      const read = await conn.read(buffer);
      received = now();
      if (read === null) {
        if (!response.end()) {
          throw new Error("The server closed the stream before it ended");
        }
        break;
      }
      response.push(buffer.subarray(0, read));
    }
    return { events, done: done && response.status === 200 };
  } finally {
    conn.close();
  }
}

/** Runs the streams of `shard` (all of them when absent) and keeps every sample. */
export async function collectStreams(
  plan: StreamPlan,
  shard: Shard = { index: 0, count: 1 },
): Promise<RawStreams> {
  const agent = createAgent();
  const headers = { "content-type": "application/json", ...plan.headers };
  const record: Recorders = {
    delay: new Samples(),
    gap: new Samples(),
    firstEvent: new Samples(),
  };
  const url = new URL(plan.url);
  const prefillUrl = plan.prefillUrl === undefined
    ? undefined
    : new URL(plan.prefillUrl);
  const prefillBody = buildPrefillBody(plan.body);
  const startAt = plan.startAtMs ?? now();
  const indices = shardIndices(plan.streams, shard);
  let completed = 0;
  let failed = 0;
  let events = 0;
  let firstError: string | undefined;

  async function one(index: number): Promise<void> {
    const due = startAt + (index * plan.rampMs) / plan.streams;
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, due - now()))
    );
    try {
      const sentAt = now();
      let body = plan.body;
      if (prefillUrl !== undefined) {
        const prefill = await post(prefillUrl, prefillBody, {
          agent,
          headers,
          keepBody: true,
        });
        if (prefill.status !== 200) {
          throw new Error(
            `Prefill answered ${prefill.status}: ${prefill.text.slice(0, 200)}`,
          );
        }
        body = buildDecodeBody(plan.body, prefill.text);
      }
      const result = await openStream(url, body, {
        headers,
        record,
        sentAt,
      });
      events += result.events;
      if (result.done) completed++;
      else failed++;
    } catch (error) {
      failed++;
      firstError ??= String(error);
    }
  }

  await Promise.all(indices.map(one));
  agent.destroy();
  return {
    streams: indices.length,
    completed,
    failed,
    events,
    delay: record.delay.values().slice(),
    gap: record.gap.values().slice(),
    firstEvent: record.firstEvent.values().slice(),
    ...(firstError === undefined ? {} : { firstError }),
  };
}

/** One result from the shards' raw samples. */
export function mergeStreams(
  parts: readonly RawStreams[],
  wallS: number,
): StreamResult {
  const join = (pick: (part: RawStreams) => Float64Array) => {
    const out = new Samples();
    for (const part of parts) for (const value of pick(part)) out.push(value);
    return summarize(out.values());
  };
  const sum = (pick: (part: RawStreams) => number) =>
    parts.reduce((total, part) => total + pick(part), 0);
  const firstError = parts.find((part) => part.firstError)?.firstError;
  return {
    streams: sum((p) => p.streams),
    completed: sum((p) => p.completed),
    failed: sum((p) => p.failed),
    events: sum((p) => p.events),
    delayMs: join((p) => p.delay),
    gapMs: join((p) => p.gap),
    firstEventMs: join((p) => p.firstEvent),
    wallS,
    ...(firstError === undefined ? {} : { firstError }),
  };
}

/** Runs `plan` in this runtime and measures it. */
export async function runStreams(plan: StreamPlan): Promise<StreamResult> {
  const started = performance.now();
  const raw = await collectStreams(plan);
  return mergeStreams([raw], (performance.now() - started) / 1000);
}

/** Runs `plan` split over `shards` workers (`shards.ts`) and measures it. */
export async function runStreamsSharded(
  plan: StreamPlan,
  shards: number,
): Promise<StreamResult> {
  const started = performance.now();
  // Every shard ramps from the same instant, a little ahead so all workers are up.
  const shared = { ...plan, startAtMs: now() + 200 };
  const parts = await runInWorkers<StreamShardJob, RawStreams>(
    Array.from({ length: shards }, (_, index) => ({
      plan: shared,
      shard: { index, count: shards },
    })),
  );
  return mergeStreams(parts, (performance.now() - started) / 1000);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      url: { type: "string" },
      "prefill-url": { type: "string" },
      header: { type: "string", multiple: true, default: [] },
      body: { type: "string" },
      streams: { type: "string", default: "1000" },
      "ramp-ms": { type: "string", default: "1000" },
      "timeout-s": { type: "string", default: "60" },
      shards: { type: "string" },
    },
  });
  const guard = setTimeout(
    () => Deno.exit(3),
    Number(values["timeout-s"]) * 1000,
  );
  const plan: StreamPlan = {
    url: new URL(values.url ?? "").href,
    prefillUrl: values["prefill-url"],
    headers: parseHeaderArgs(values.header),
    body: values.body ?? "{}",
    streams: Number(values.streams),
    rampMs: Number(values["ramp-ms"]),
  };
  const shards = values.shards === undefined
    ? shardCount(plan.streams)
    : Math.max(1, Number(values.shards));
  const result = shards === 1
    ? await runStreams(plan)
    : await runStreamsSharded(plan, shards);
  clearTimeout(guard);
  Deno.stdout.writeSync(
    new TextEncoder().encode(`${JSON.stringify(result)}\n`),
  );
  Deno.exit(0);
}
