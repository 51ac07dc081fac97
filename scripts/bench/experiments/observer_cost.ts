// deno-lint-ignore-file no-console -- a terminal report: printing is its job
/**
 * @module
 * One-off measurement: what a per-chunk observer on the decode body costs the
 * sidecar under step-synchronous streaming (every STEP ms the decoder writes
 * one SSE event to every open stream in the same instant, as one vLLM engine
 * step does). Rows, interleaved per round: direct (client to decoder), and the
 * sidecar with each observer variant. Reports added per-event delay p99 over
 * direct, sidecar CPU per 10,000 events and peak RSS.
 *
 * Run from the repository root:
 *   scripts/deno run -A scripts/bench/experiments/observer_cost.ts [--streams 500] [--step 50] [--events 60] [--rounds 3]
 */

import { parseArgs } from "node:util";
import { rewriteEvents } from "../../../src/connectors/_cached_tokens.ts";
import { PROMPT_TOKENS_DETAILS_PLACE } from "../../../src/protocol/api.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function now(): number {
  return performance.timeOrigin + performance.now();
}

/** The decoder: SSE streams fed in lockstep by one timer. */
function runDecoder(port: number, stepMs: number, events: number): void {
  interface Stream {
    sent: number;
    controller: ReadableStreamDefaultController<Uint8Array>;
  }
  const open = new Set<Stream>();
  setInterval(() => {
    const sent = now();
    for (const stream of open) {
      stream.sent++;
      // The last event carries usage, as a stream with include_usage ends.
      const line = stream.sent > events
        ? 'data: {"choices":[],"usage":{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":8}}}\n\ndata: [DONE]\n\n'
        : `data: {"sent":${sent},"i":${stream.sent},"text":" token"}\n\n`;
      try {
        stream.controller.enqueue(encoder.encode(line));
        if (stream.sent > events) {
          stream.controller.close();
          open.delete(stream);
        }
      } catch {
        open.delete(stream);
      }
    }
  }, stepMs);
  Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, async (req) => {
    await req.text();
    let stream: Stream | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        stream = { sent: 0, controller };
        open.add(stream);
      },
      cancel() {
        if (stream) open.delete(stream);
      },
    });
    return new Response(body, {
      headers: { "content-type": "text/event-stream" },
    });
  });
}

/** Counts, times and watches a body chunk by chunk, in JS: what an observer must do. */
function observeByPull(
  source: ReadableStream<Uint8Array>,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  const seen = { bytes: 0, firstByteAt: 0, broken: false };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (error) {
        seen.broken = true;
        controller.error(error);
        return;
      }
      if (chunk.done) {
        controller.close();
        return;
      }
      if (seen.bytes === 0) seen.firstByteAt = performance.now();
      seen.bytes += chunk.value.byteLength;
      controller.enqueue(chunk.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** The same observer as a pass-through `TransformStream`. */
function observeByTransform(
  source: ReadableStream<Uint8Array>,
): ReadableStream<Uint8Array> {
  const seen = { bytes: 0, firstByteAt: 0, broken: false };
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      if (seen.bytes === 0) seen.firstByteAt = performance.now();
      seen.bytes += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
  source.pipeTo(counter.writable).catch(() => {
    seen.broken = true;
  });
  return counter.readable;
}

const OBSERVERS: Readonly<
  Record<
    string,
    (body: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array>
  >
> = {
  pull: observeByPull,
  transform: observeByTransform,
  // The cached-tokens rewrite of a stream that asked for usage.
  "usage-rewrite": (body) =>
    rewriteEvents(body, { cached: 0, place: PROMPT_TOKENS_DETAILS_PLACE }),
};

/**
 * The sidecar's own app on Deno.serve; with an observer variant, each
 * response body is wrapped on its way out (the relay hands Deno.serve
 * fetch's body as is, which the runtime pipes without JS per chunk).
 */
async function runSidecar(
  port: number,
  decoderPort: number,
  variant: string,
): Promise<void> {
  const { createApp } = await import("../../../src/app.ts");
  const { createLogger } = await import("../../../src/log.ts");
  const { createUpstreamClient } = await import(
    "../../../src/upstream/client.ts"
  );
  const log = createLogger({ verbosity: 0, write: () => {} });
  const { parseCommandLine } = await import("../../../src/config.ts");
  const commandLine = parseCommandLine([
    `-port=${port}`,
    "-listen-host=127.0.0.1",
    `-model-server-port=${decoderPort}`,
    "-secure-proxy=false",
  ], {});
  if (commandLine.kind !== "run") throw new Error("unexpected command line");
  const app = createApp({
    config: commandLine.config,
    log,
    upstream: createUpstreamClient(),
  });
  const observe = OBSERVERS[variant];
  Deno.serve(
    { hostname: "127.0.0.1", port, onListen() {} },
    async (request, info) => {
      const response = await app.fetch(request, info);
      if (observe === undefined || response.body === null) return response;
      return new Response(observe(response.body), response);
    },
  );
}

interface ClientResult {
  events: number;
  completed: number;
  failed: number;
  delays: number[];
}

/** Opens `streams` raw-socket SSE streams and times every event. */
async function runClient(
  port: number,
  streams: number,
  rampMs: number,
): Promise<ClientResult> {
  const body = '{"model":"m","prompt":"hi","stream":true}';
  const request = encoder.encode(
    `POST /v1/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
  );
  const result: ClientResult = {
    events: 0,
    completed: 0,
    failed: 0,
    delays: [],
  };
  const sentPattern = /"sent":([0-9.]+)/g;
  async function one(delay: number): Promise<void> {
    await new Promise((r) => setTimeout(r, delay));
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(request);
      const buffer = new Uint8Array(65536);
      let pending = "";
      for (;;) {
        const read = await conn.read(buffer);
        if (read === null) break;
        const at = now();
        pending += decoder.decode(buffer.subarray(0, read), { stream: true });
        const cut = pending.lastIndexOf("\n\n");
        if (cut === -1) continue;
        const complete = pending.slice(0, cut);
        pending = pending.slice(cut + 2);
        for (const match of complete.matchAll(sentPattern)) {
          result.delays.push(at - Number(match[1]));
          result.events++;
        }
        if (complete.includes("[DONE]")) {
          result.completed++;
          return;
        }
      }
      result.failed++;
    } catch {
      result.failed++;
    } finally {
      conn.close();
    }
  }
  await Promise.all(
    Array.from({ length: streams }, (_, i) => one((i * rampMs) / streams)),
  );
  return result;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

function peakRssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

async function waitListening(port: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`Nothing listens on ${port}`);
}

async function orchestrate(options: {
  streams: number;
  step: number;
  events: number;
  rounds: number;
  variants: string[];
}): Promise<void> {
  const self = new URL(import.meta.url).pathname;
  const exec = Deno.execPath();
  const flags = [
    "run",
    "-A",
    "--v8-flags=--heap-growing-percent=50,--max-semi-space-size=16",
    self,
  ];
  const children: Deno.ChildProcess[] = [];
  function spawn(args: string[], stdout: "piped" | "null" = "null") {
    const child = new Deno.Command(exec, {
      args: [...flags, ...args],
      stdout,
      stderr: "inherit",
    }).spawn();
    children.push(child);
    return child;
  }
  const decoderPort = 19400;
  spawn([
    "--role",
    "decoder",
    "--port",
    `${decoderPort}`,
    "--step",
    `${options.step}`,
    "--events",
    `${options.events}`,
  ]);
  const sidecars = options.variants.map((variant, i) => {
    const port = 19410 + i;
    const child = spawn([
      "--role",
      "sidecar",
      "--port",
      `${port}`,
      "--decoder-port",
      `${decoderPort}`,
      "--variant",
      variant,
    ]);
    return { variant, port, pid: child.pid };
  });
  try {
    await waitListening(decoderPort);
    for (const sidecar of sidecars) await waitListening(sidecar.port);
    const rows = [
      { name: "direct", port: decoderPort, pid: 0 },
      ...sidecars.map((s) => ({ name: s.variant, port: s.port, pid: s.pid })),
    ];
    const totals = new Map<
      string,
      { delays: number[]; events: number; ticks: number; failed: number }
    >();
    for (let round = 0; round < options.rounds; round++) {
      for (const row of rows) {
        const before = row.pid ? cpuTicks(row.pid) : 0;
        const client = spawn([
          "--role",
          "client",
          "--port",
          `${row.port}`,
          "--streams",
          `${options.streams}`,
        ], "piped");
        const output = await client.output();
        const result: ClientResult = JSON.parse(decoder.decode(output.stdout));
        const ticks = row.pid ? cpuTicks(row.pid) - before : 0;
        const total = totals.get(row.name) ??
          { delays: [], events: 0, ticks: 0, failed: 0 };
        total.delays.push(...result.delays);
        total.events += result.events;
        total.ticks += ticks;
        total.failed += result.failed;
        totals.set(row.name, total);
        const sorted = result.delays.sort((a, b) => a - b);
        console.log(
          `round ${round} ${
            row.name.padEnd(10)
          } events ${result.events} failed ${result.failed} p50 ${
            quantile(sorted, 0.5).toFixed(2)
          } p99 ${quantile(sorted, 0.99).toFixed(2)} cpu ${
            (ticks / 100).toFixed(2)
          } s`,
        );
      }
    }
    const direct = totals.get("direct")!;
    const directP99 = quantile(direct.delays.sort((a, b) => a - b), 0.99);
    console.log(`\ndirect p99 ${directP99.toFixed(2)} ms`);
    for (const sidecar of sidecars) {
      const total = totals.get(sidecar.variant)!;
      const sorted = total.delays.sort((a, b) => a - b);
      const p99 = quantile(sorted, 0.99);
      console.log(
        `${sidecar.variant.padEnd(10)} p50 ${
          quantile(sorted, 0.5).toFixed(2)
        } p99 ${p99.toFixed(2)} added p99 ${
          (p99 - directP99).toFixed(2)
        } ms, CPU per 10k events ${
          (total.ticks / 100 / total.events * 10000).toFixed(3)
        } s, peak RSS ${peakRssMiB(sidecar.pid)} MiB, failed ${total.failed}`,
      );
    }
  } finally {
    for (const child of children) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      role: { type: "string", default: "orchestrate" },
      port: { type: "string", default: "0" },
      "decoder-port": { type: "string", default: "0" },
      variant: { type: "string", default: "none" },
      variants: {
        type: "string",
        default: "none,transform,pull,usage-rewrite",
      },
      streams: { type: "string", default: "500" },
      step: { type: "string", default: "50" },
      events: { type: "string", default: "60" },
      rounds: { type: "string", default: "3" },
      ramp: { type: "string", default: "1000" },
    },
  });
  const port = Number(values.port);
  switch (values.role) {
    case "decoder":
      runDecoder(port, Number(values.step), Number(values.events));
      break;
    case "sidecar":
      await runSidecar(port, Number(values["decoder-port"]), values.variant);
      break;
    case "client": {
      const result = await runClient(
        port,
        Number(values.streams),
        Number(values.ramp),
      );
      console.log(JSON.stringify(result));
      Deno.exit(0);
      break;
    }
    default:
      await orchestrate({
        streams: Number(values.streams),
        step: Number(values.step),
        events: Number(values.events),
        rounds: Number(values.rounds),
        variants: values.variants.split(","),
      });
      Deno.exit(0);
  }
}
