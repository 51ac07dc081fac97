/**
 * @module
 * The benchmark's streaming client, run as its own process: opens `--streams`
 * SSE streams spread evenly over `--ramp-ms`, so they all run at once without
 * a thundering start, and times every event. When an event carries the time
 * the decoder sent it (`bench_sent_ms`, from `fast_upstream.ts`), its delay is
 * the receive time minus that (both processes read the same wall clock). With
 * `--prefill-url` each stream is a client-side P/D chain: the prefill POST,
 * then the decode stream direct. Prints one JSON object (`StreamResult`).
 */

import http from "node:http";
import { parseArgs } from "node:util";
import { SENT_AT_FIELD } from "./fast_upstream.ts";
import { createAgent, parseHeaderArgs, post } from "./http1.ts";
import { buildDecodeBody, buildPrefillBody } from "./pd_client.ts";
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

/** What one run does. */
export interface StreamPlan {
  readonly url: URL;
  readonly prefillUrl?: URL | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly streams: number;
  readonly rampMs: number;
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

function openStream(
  url: URL,
  body: string,
  options: {
    agent: http.Agent;
    headers: Readonly<Record<string, string>>;
    record: Recorders;
    /** When the stream's work began (before the prefill in chain mode). */
    sentAt: number;
  },
): Promise<{ events: number; done: boolean }> {
  const { promise, resolve, reject } = Promise.withResolvers<
    { events: number; done: boolean }
  >();
  const { record, sentAt } = options;
  const request = http.request({
    agent: options.agent,
    hostname: url.hostname,
    port: url.port,
    path: url.pathname,
    method: "POST",
    headers: {
      ...options.headers,
      "content-length": String(Buffer.byteLength(body)),
    },
  }, (response) => {
    let buffer = "";
    let events = 0;
    let done = false;
    let last = 0;
    response.setEncoding("utf8");
    response.on("data", (chunk: string) => {
      const received = now();
      buffer += chunk;
      let end;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (event === "data: [DONE]") {
          done = true;
          continue;
        }
        if (events === 0) record.firstEvent.push(received - sentAt);
        else record.gap.push(received - last);
        last = received;
        events++;
        const sent = SENT_AT.exec(event)?.[1];
        if (sent !== undefined) record.delay.push(received - Number(sent));
      }
    });
    response.on(
      "end",
      () => resolve({ events, done: done && response.statusCode === 200 }),
    );
    response.on("error", reject);
  });
  request.on("error", reject);
  request.end(body);
  return promise;
}

/** Runs `plan` and measures it. */
export async function runStreams(plan: StreamPlan): Promise<StreamResult> {
  const agent = createAgent();
  const headers = { "content-type": "application/json", ...plan.headers };
  const record: Recorders = {
    delay: new Samples(),
    gap: new Samples(),
    firstEvent: new Samples(),
  };
  const prefillBody = buildPrefillBody(plan.body);
  let completed = 0;
  let failed = 0;
  let events = 0;
  let firstError: string | undefined;
  const started = performance.now();

  async function one(index: number): Promise<void> {
    await new Promise((resolve) =>
      setTimeout(resolve, (index * plan.rampMs) / plan.streams)
    );
    try {
      const sentAt = now();
      let body = plan.body;
      if (plan.prefillUrl !== undefined) {
        const prefill = await post(plan.prefillUrl, prefillBody, {
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
      const result = await openStream(plan.url, body, {
        agent,
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

  await Promise.all(Array.from({ length: plan.streams }, (_, i) => one(i)));
  agent.destroy();
  return {
    streams: plan.streams,
    completed,
    failed,
    events,
    delayMs: summarize(record.delay.values()),
    gapMs: summarize(record.gap.values()),
    firstEventMs: summarize(record.firstEvent.values()),
    wallS: (performance.now() - started) / 1000,
    ...(firstError === undefined ? {} : { firstError }),
  };
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
    },
  });
  const guard = setTimeout(
    () => Deno.exit(3),
    Number(values["timeout-s"]) * 1000,
  );
  const result = await runStreams({
    url: new URL(values.url ?? ""),
    prefillUrl: values["prefill-url"] === undefined
      ? undefined
      : new URL(values["prefill-url"]),
    headers: parseHeaderArgs(values.header),
    body: values.body ?? "{}",
    streams: Number(values.streams),
    rampMs: Number(values["ramp-ms"]),
  });
  clearTimeout(guard);
  Deno.stdout.writeSync(
    new TextEncoder().encode(`${JSON.stringify(result)}\n`),
  );
  Deno.exit(0);
}
