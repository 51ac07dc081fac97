/**
 * @module
 * The benchmark's purpose-built load client, run as its own process. A generic
 * load generator cannot chain two requests, so the "prefill direct + decode
 * direct" baseline is measured here (`--mode chain`: a prefill POST, its
 * `kv_transfer_params` read, then the decode POST), and the sidecar is
 * measured with the same client (`--mode single`) so the two compare like for
 * like. `--connections` loops run back to back for `--warmup-s` then
 * `--duration-s`; only requests that start and end inside the measured window
 * count. With `--rate R` the load is open-loop instead: each of the
 * `--connections` loops has a connection of its own (two in chain mode) and
 * sends on a fixed schedule, R requests a second in all, whatever the
 * answers' pace; a request's latency runs from when it was due, so a late
 * answer that delays the next request counts against both (no coordinated
 * omission), and every request due inside the window counts, however late
 * it ends. One runtime is enough here, unlike for the streams: at 2,000
 * requests a second only a few of the connections are busy at any instant.
 * Prints one JSON object (`ClientResult`) on stdout.
 */

import type http from "node:http";
import { parseArgs } from "node:util";
import { createAgent, parseHeaderArgs, post } from "./http1.ts";
import { Samples, summarize, type Summary } from "./stats.ts";

/** What the client measured. */
export interface ClientResult {
  readonly requests: number;
  readonly durationS: number;
  readonly rps: number;
  readonly latencyMs: Summary;
  readonly errors: number;
  readonly non2xx: number;
  readonly firstError?: string;
}

/** What one run does. Plain data, so a worker can be handed it. */
export interface ClientPlan {
  readonly mode: "single" | "chain";
  /** Target of single mode; the decoder in chain mode. */
  readonly url: string;
  /** The prefiller, in chain mode. */
  readonly prefillUrl?: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly connections: number;
  readonly warmupS: number;
  readonly durationS: number;
  /** Total requests per second of an open-loop run; closed loops when absent. */
  readonly rate?: number | undefined;
}

const JSON_HEADERS = { "content-type": "application/json" };
/** A request silent this long is an error, as wrk's `--timeout 10s` counts it; it also bounds a run. */
const REQUEST_TIMEOUT_MS = 10_000;

/** `kv_transfer_params` of a prefill request: the NIXL ask to keep the KV for a remote decode. */
export const PREFILL_KV_TRANSFER_PARAMS = {
  do_remote_decode: true,
  do_remote_prefill: false,
  remote_engine_id: null,
  remote_block_ids: null,
  remote_host: null,
  remote_port: null,
} as const;

/** Body of the prefill leg, as the sidecar's nixlv2 connector builds it. */
export function buildPrefillBody(body: string): string {
  return prefillBodyOf(JSON.parse(body) as Record<string, unknown>);
}

/** `buildPrefillBody` of a request body already parsed. */
export function prefillBodyOf(
  request: Readonly<Record<string, unknown>>,
): string {
  // vLLM rejects stream_options unless stream is true (the sidecar drops it too).
  const { stream_options: _dropped, ...kept } = request;
  return JSON.stringify({
    ...kept,
    stream: false,
    max_tokens: 1,
    max_completion_tokens: 1,
    min_tokens: 1,
    kv_transfer_params: PREFILL_KV_TRANSFER_PARAMS,
  });
}

/** Body of the decode leg: the client's body plus the prefiller's `kv_transfer_params`. */
export function buildDecodeBody(body: string, prefillReply: string): string {
  const reply = JSON.parse(prefillReply) as Record<string, unknown>;
  const params = JSON.stringify(reply.kv_transfer_params ?? null);
  return `${
    body.slice(0, body.lastIndexOf("}"))
  },"kv_transfer_params":${params}}`;
}

/**
 * When each request of loop `loop` of an open-loop run is due, in ms after
 * the run's start: the loops take turns, so the whole run sends at `rate`
 * per second evenly, and each loop every `connections / rate` seconds.
 */
export function openLoopSchedule(
  options: { readonly rate: number; readonly connections: number },
  loop: number,
): (index: number) => number {
  const gapMs = 1000 / options.rate;
  return (index) => (loop + index * options.connections) * gapMs;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `plan` and measures it. */
export async function runClient(plan: ClientPlan): Promise<ClientResult> {
  const shared = createAgent();
  const agents = [shared];
  const url = new URL(plan.url);
  const prefillUrl = new URL(plan.prefillUrl ?? plan.url);
  const prefillBody = buildPrefillBody(plan.body);
  const headers = { ...JSON_HEADERS, ...plan.headers };
  const samples = new Samples();
  let errors = 0;
  let non2xx = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const windowStart = start + plan.warmupS * 1000;
  const windowEnd = windowStart + plan.durationS * 1000;

  async function iteration(agent: http.Agent): Promise<number> {
    if (plan.mode === "single") {
      return (await post(url, plan.body, {
        agent,
        headers,
        keepBody: false,
        timeoutMs: REQUEST_TIMEOUT_MS,
      })).status;
    }
    const prefill = await post(prefillUrl, prefillBody, {
      agent,
      headers,
      keepBody: true,
      timeoutMs: REQUEST_TIMEOUT_MS,
    });
    if (prefill.status < 200 || prefill.status >= 300) return prefill.status;
    const decodeBody = buildDecodeBody(plan.body, prefill.text);
    return (await post(url, decodeBody, {
      agent,
      headers,
      keepBody: false,
      timeoutMs: REQUEST_TIMEOUT_MS,
    })).status;
  }

  /** Runs one request; its latency counts from `from` when it was due inside the window. */
  async function timed(agent: http.Agent, from: number): Promise<boolean> {
    let status = 0;
    try {
      status = await iteration(agent);
    } catch (error) {
      errors++;
      firstError ??= String(error);
      return false;
    }
    const ended = performance.now();
    const counted = plan.rate === undefined
      ? from >= windowStart && ended <= windowEnd
      : from >= windowStart && from < windowEnd;
    if (!counted) return true;
    if (status < 200 || status >= 300) non2xx++;
    samples.push(ended - from);
    return true;
  }

  async function closedLoop(): Promise<void> {
    while (performance.now() < windowEnd) {
      // A refused connection fails at once; do not spin.
      if (!await timed(shared, performance.now())) await sleep(10);
    }
  }

  async function openLoop(loop: number): Promise<void> {
    // One connection per loop and upstream: the run holds `connections` of them open.
    const agent = createAgent(1);
    agents.push(agent);
    const due = openLoopSchedule(
      { rate: plan.rate as number, connections: plan.connections },
      loop,
    );
    for (let index = 0;; index++) {
      const at = start + due(index);
      if (at >= windowEnd) return;
      if (performance.now() > windowEnd + REQUEST_TIMEOUT_MS) {
        // Too far behind to finish: what is still due in the window counts as timed out.
        for (let late = index; start + due(late) < windowEnd; late++) {
          if (start + due(late) >= windowStart) errors++;
        }
        firstError ??=
          `The target fell over ${REQUEST_TIMEOUT_MS} ms behind the schedule`;
        return;
      }
      const wait = at - performance.now();
      if (wait > 0) await sleep(wait);
      await timed(agent, at);
    }
  }

  await Promise.all(
    Array.from(
      { length: plan.connections },
      (_, loop) => plan.rate === undefined ? closedLoop() : openLoop(loop),
    ),
  );
  for (const agent of agents) agent.destroy();
  const latencyMs = summarize(samples.values());
  return {
    requests: latencyMs.count,
    durationS: plan.durationS,
    rps: latencyMs.count / plan.durationS,
    latencyMs,
    errors,
    non2xx,
    ...(firstError === undefined ? {} : { firstError }),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      mode: { type: "string", default: "single" },
      url: { type: "string" },
      "prefill-url": { type: "string" },
      header: { type: "string", multiple: true, default: [] },
      body: { type: "string" },
      connections: { type: "string", default: "1" },
      "warmup-s": { type: "string", default: "1" },
      "duration-s": { type: "string", default: "5" },
      rate: { type: "string" },
    },
  });
  const plan: ClientPlan = {
    mode: values.mode === "chain" ? "chain" : "single",
    url: new URL(values.url ?? "").href,
    prefillUrl: values["prefill-url"],
    headers: parseHeaderArgs(values.header),
    body: values.body ?? "{}",
    connections: Number(values.connections),
    warmupS: Number(values["warmup-s"]),
    durationS: Number(values["duration-s"]),
    rate: values.rate === undefined ? undefined : Number(values.rate),
  };
  // Bounded even if an upstream stalls: give up well after the window.
  const guard = setTimeout(
    () => Deno.exit(3),
    (plan.warmupS + plan.durationS + 30) * 1000,
  );
  const result = await runClient(plan);
  clearTimeout(guard);
  Deno.stdout.writeSync(
    new TextEncoder().encode(`${JSON.stringify(result)}\n`),
  );
  Deno.exit(0);
}
