// deno-lint-ignore-file no-console -- a terminal report: printing is its job
/**
 * @module
 * Experiment (not shipped): measures `proxy.ts` with every upstream client
 * option, plus the real sidecar, against the same fast upstreams with the same
 * load generator as `deno task bench`: P/D and passthrough at c=32 (req/s) and
 * at c=1 (p50), and the proxy's CPU seconds per 1,000 requests. Writes
 * `experiments/results.json` (with `--only`, merged into the figures there;
 * the figures of 2026-11-25 are in `../README.md`).
 *
 *   deno run --allow-net --allow-read --allow-env --allow-run --allow-write=scripts/bench,/tmp \
 *     scripts/bench/experiments/run.ts [--duration-s 5] [--only fetch-pool,node-http]
 */

import { parseArgs } from "node:util";
import { headerArgs } from "../http1.ts";
import { detectLoadTool, type LoadTool } from "../load_tool.ts";
import {
  clockTicksPerSecond,
  cpuSecondsOf,
  createProcessGroup,
  freePort,
  lastJsonLine,
  type ProcessGroup,
  runToEnd,
  sidecarArgs,
  sidecarCommand,
  type Started,
  startFastUpstream,
  stopAllAndRemove,
} from "../processes.ts";
import type { StreamResult } from "../stream_client.ts";
import { CLIENT_NAMES } from "./clients.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;
const HERE = new URL("./", import.meta.url).pathname;
const PATH = "/v1/chat/completions";
const BODY = JSON.stringify({
  model: "Qwen/Qwen3-0.6B",
  messages: [
    { role: "system", content: "You are a helpful assistant." },
    {
      role: "user",
      content: "Name the capital of France and one river that crosses it.",
    },
  ],
  max_tokens: 16,
  temperature: 0.7,
  stream: false,
});

interface Variant {
  readonly name: string;
  /** Arguments of `deno run` after the permission flags. */
  readonly args: (decoderPort: number, port: number) => string[];
  readonly ready: "port-line" | "sidecar-log";
  /** Processes sharing the port (SO_REUSEPORT); 1 when absent. */
  readonly copies?: number;
}

interface Measured {
  readonly variant: string;
  readonly pdC32: number;
  readonly passC32: number;
  readonly pdP50C1: number;
  readonly passP50C1: number;
  readonly pdCpuSPer1000: number;
  readonly passCpuSPer1000: number;
  readonly errors: number;
  /** 1,000 P/D streams through the proxy: per-chunk delay and the proxy's CPU. */
  readonly streamDelayP50?: number;
  readonly streamDelayP99?: number;
  readonly streamCpuSPer1000Chunks?: number;
  readonly streamsDone?: string;
}

/** Arguments running `proxy.ts` with `client` and `framework` in front of the decoder. */
function proxyArgs(
  options: {
    readonly client: string;
    readonly framework: "hono" | "bare";
    readonly reusePort?: boolean;
  },
  decoder: number,
  port: number,
): string[] {
  return [
    ...(options.reusePort ? ["--unstable-net"] : []),
    `${HERE}proxy.ts`,
    "--client",
    options.client,
    "--framework",
    options.framework,
    ...(options.reusePort ? ["--reuse-port"] : []),
    "--port",
    String(port),
    "--decoder-port",
    String(decoder),
  ];
}

function variants(): Variant[] {
  const list: Variant[] = [{
    name: "sidecar (main.ts)",
    ready: "sidecar-log",
    args: (decoder, port) => sidecarArgs(port, decoder, []),
  }];
  for (const client of CLIENT_NAMES) {
    list.push({
      name: `hono + ${client}`,
      ready: "port-line",
      args: (decoder, port) =>
        proxyArgs({ client, framework: "hono" }, decoder, port),
    });
  }
  list.push({
    name: "2 x bare Deno.serve + fetch-pool",
    ready: "port-line",
    copies: 2,
    args: (decoder, port) =>
      proxyArgs(
        { client: "fetch-pool", framework: "bare", reusePort: true },
        decoder,
        port,
      ),
  });
  for (const client of ["fetch-pool", "node-http"]) {
    list.push({
      name: `bare Deno.serve + ${client}`,
      ready: "port-line",
      args: (decoder, port) =>
        proxyArgs({ client, framework: "bare" }, decoder, port),
    });
  }
  return list;
}

async function startVariant(
  group: ProcessGroup,
  variant: Variant,
  decoderPort: number,
): Promise<{ processes: Started[]; port: number }> {
  const port = freePort();
  const processes: Started[] = [];
  for (let copy = 0; copy < (variant.copies ?? 1); copy++) {
    const process = group.start(variant.name, {
      // No V8 flags: like the bare proxies it is compared with, and the figures recorded before.
      ...sidecarCommand(variant.args(decoderPort, port), ""),
      cwd: ROOT,
    });
    processes.push(process);
    await process.waitForLine(
      (line) =>
        (variant.ready === "port-line"
            ? line.startsWith('{"port"')
            : line.includes('"msg":"starting"'))
          ? true
          : undefined,
      60_000,
    );
  }
  return { processes, port };
}

async function measure(
  context: {
    group: ProcessGroup;
    tool: LoadTool;
    ticks: number;
    durationS: number;
  },
  run: {
    url: string;
    headers: Record<string, string>;
    connections: number;
    pids: readonly number[];
  },
) {
  const before = await cpuSecondsOf(run.pids, context.ticks);
  const result = await context.tool.run({
    url: run.url,
    headers: run.headers,
    body: BODY,
    connections: run.connections,
    durationS: context.durationS,
  }, context.group);
  const cpu = (await cpuSecondsOf(run.pids, context.ticks)) - before;
  if (result.errors + result.non2xx > 0) {
    console.error(
      `${run.url} c=${run.connections} ${
        run.headers["x-prefiller-host-port"] ? "P/D" : "passthrough"
      }: ${result.errors} socket errors or timeouts, ${result.non2xx} non-2xx`,
    );
  }
  return { ...result, cpuSPer1000: (cpu / result.requests) * 1000 };
}

async function measureVariant(
  context: {
    group: ProcessGroup;
    tool: LoadTool;
    ticks: number;
    durationS: number;
  },
  variant: Variant,
  upstreams: { prefill: number; decode: number },
): Promise<Measured> {
  const proxy = await startVariant(context.group, variant, upstreams.decode);
  try {
    const url = `http://127.0.0.1:${proxy.port}${PATH}`;
    const pd = { "x-prefiller-host-port": `127.0.0.1:${upstreams.prefill}` };
    const pids = proxy.processes.map((process) => process.pid);
    // Warm-up: JIT and connection pools.
    await measure({ ...context, durationS: 2 }, {
      url,
      headers: pd,
      connections: 32,
      pids,
    });
    await measure({ ...context, durationS: 1 }, {
      url,
      headers: {},
      connections: 32,
      pids,
    });
    const pdC32 = await measure(context, {
      url,
      headers: pd,
      connections: 32,
      pids,
    });
    const passC32 = await measure(context, {
      url,
      headers: {},
      connections: 32,
      pids,
    });
    const pdC1 = await measure(context, {
      url,
      headers: pd,
      connections: 1,
      pids,
    });
    const passC1 = await measure(context, {
      url,
      headers: {},
      connections: 1,
      pids,
    });
    const all = [pdC32, passC32, pdC1, passC1];
    const streams = await measureStreams(context, { url, headers: pd, pids });
    return {
      variant: variant.name,
      pdC32: pdC32.rps,
      passC32: passC32.rps,
      pdP50C1: pdC1.latencyMs.p50,
      passP50C1: passC1.latencyMs.p50,
      pdCpuSPer1000: pdC32.cpuSPer1000,
      passCpuSPer1000: passC32.cpuSPer1000,
      errors: all.reduce((sum, r) => sum + r.errors + r.non2xx, 0),
      ...streams,
    };
  } finally {
    await Promise.all(
      proxy.processes.map((process) => context.group.stop(process)),
    );
  }
}

async function measureStreams(
  context: { group: ProcessGroup; ticks: number },
  run: {
    url: string;
    headers: Record<string, string>;
    pids: readonly number[];
  },
) {
  const args = (streams: number, rampMs: number) => [
    "run",
    "--allow-net",
    // The stream client's workers load their module from disk.
    "--allow-read",
    `${HERE}../stream_client.ts`,
    "--url",
    run.url,
    ...headerArgs(run.headers),
    "--body",
    JSON.stringify({ ...JSON.parse(BODY), stream: true, max_tokens: 20 }),
    "--streams",
    String(streams),
    "--ramp-ms",
    String(rampMs),
  ];
  const go = async (streams: number, rampMs: number) => {
    const output = await runToEnd(context.group, "stream_client", {
      cmd: Deno.execPath(),
      args: args(streams, rampMs),
      timeoutS: 120,
    });
    return lastJsonLine<StreamResult>(output, "stream_client");
  };
  await go(100, 100);
  const before = await cpuSecondsOf(run.pids, context.ticks);
  const result = await go(1000, 1000);
  const cpu = (await cpuSecondsOf(run.pids, context.ticks)) - before;
  return {
    streamDelayP50: result.delayMs.p50,
    streamDelayP99: result.delayMs.p99,
    streamCpuSPer1000Chunks: (cpu / result.events) * 1000,
    streamsDone: `${result.completed}/${result.streams}`,
  };
}

function format(rows: readonly Measured[], tool: string): string {
  const header =
    "variant                              P/D c32 req/s  pass c32 req/s  P/D p50 c1  pass p50 c1" +
    "  P/D cpu s/1k  pass cpu s/1k  errors  stream delay p50/p99  stream cpu s/1k chunks";
  const lines = rows.map((r) =>
    [
      r.variant.padEnd(35),
      r.pdC32.toFixed(0).padStart(14),
      r.passC32.toFixed(0).padStart(15),
      r.pdP50C1.toFixed(3).padStart(11),
      r.passP50C1.toFixed(3).padStart(12),
      r.pdCpuSPer1000.toFixed(3).padStart(13),
      r.passCpuSPer1000.toFixed(3).padStart(14),
      String(r.errors).padStart(7),
      `${r.streamDelayP50?.toFixed(2)}/${
        r.streamDelayP99?.toFixed(2)
      } (${r.streamsDone})`.padStart(21),
      (r.streamCpuSPer1000Chunks ?? Number.NaN).toFixed(3).padStart(23),
    ].join(" ")
  );
  return [`load generator: ${tool}; latencies in ms`, header, ...lines].join(
    "\n",
  );
}

const RESULTS = `${HERE}results.json`;

async function readRows(): Promise<Measured[]> {
  try {
    return (JSON.parse(await Deno.readTextFile(RESULTS)) as {
      rows: Measured[];
    }).rows;
  } catch {
    return [];
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "duration-s": { type: "string", default: "5" },
      only: { type: "string" },
    },
  });
  const only = values.only?.split(",");
  const group = createProcessGroup();
  const tempDir = await Deno.makeTempDir({
    dir: "/tmp",
    prefix: "pd-sidecar-exp-",
  });
  const cleanUp = () => stopAllAndRemove(group, tempDir);
  // Deno.exit skips the `finally` below, so the temp dir goes here too.
  const stop = () => void cleanUp().finally(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", stop);
  try {
    const tool = await detectLoadTool(tempDir);
    const context = {
      group,
      tool,
      ticks: await clockTicksPerSecond(),
      durationS: Number(values["duration-s"]),
    };
    const upstreams = {
      prefill: (await startFastUpstream(group, "prefill")).port,
      decode: (await startFastUpstream(group, "decode")).port,
    };
    const rows: Measured[] = [];
    for (const variant of variants()) {
      if (
        only !== undefined && !only.some((name) => variant.name.includes(name))
      ) continue;
      const row = await measureVariant(context, variant, upstreams);
      console.error(JSON.stringify(row));
      rows.push(row);
    }
    console.log(format(rows, tool.version));
    // With --only, the other variants' last figures are kept.
    const previous = only === undefined ? [] : await readRows();
    const merged = [
      ...previous.filter((row) => !rows.some((r) => r.variant === row.variant)),
      ...rows,
    ];
    await Deno.writeTextFile(
      RESULTS,
      `${
        JSON.stringify(
          { at: new Date().toISOString(), tool: tool.version, rows: merged },
          null,
          2,
        )
      }\n`,
    );
    return 0;
  } finally {
    await cleanUp();
  }
}

if (import.meta.main) Deno.exit(await main());
