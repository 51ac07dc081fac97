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
import { detectLoadTool } from "../load_tool.ts";
import {
  type Bench,
  measureWithTool,
  PREFILLER_HEADER,
  runStreamClient,
  startSidecar,
  urlOf,
} from "../measure.ts";
import {
  clockTicksPerSecond,
  cpuSecondsOf,
  createProcessGroup,
  freePort,
  parsePortLine,
  type ProcessGroup,
  sidecarCommand,
  type Started,
  startFastUpstream,
  stopAllAndRemove,
} from "../processes.ts";
import type { ThroughputRow } from "../results.ts";
import { CLIENT_NAMES } from "./clients.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;
const HERE = new URL("./", import.meta.url).pathname;

/** Processes serving one variant on one port. */
interface Running {
  readonly processes: readonly Started[];
  readonly port: number;
}

interface Variant {
  readonly name: string;
  /** Starts it in front of the decoder; resolves once it listens. */
  readonly start: (
    group: ProcessGroup,
    decoderPort: number,
  ) => Promise<Running>;
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

/** How `proxy.ts` runs: its upstream client and framework. */
interface ProxyOptions {
  readonly client: string;
  readonly framework: "hono" | "bare";
  /** Processes sharing the port (SO_REUSEPORT); 1 when absent. */
  readonly copies?: number;
}

/** Arguments running `proxy.ts` with `client` and `framework` in front of the decoder. */
function proxyArgs(
  options: ProxyOptions,
  decoder: number,
  port: number,
): string[] {
  const reusePort = (options.copies ?? 1) > 1;
  return [
    ...(reusePort ? ["--unstable-net"] : []),
    `${HERE}proxy.ts`,
    "--client",
    options.client,
    "--framework",
    options.framework,
    ...(reusePort ? ["--reuse-port"] : []),
    "--port",
    String(port),
    "--decoder-port",
    String(decoder),
  ];
}

/** Starts `proxy.ts` (every copy on one port); resolves once each printed its port. */
async function startProxy(
  group: ProcessGroup,
  name: string,
  options: ProxyOptions & { readonly decoderPort: number },
): Promise<Running> {
  const port = freePort();
  const processes: Started[] = [];
  for (let copy = 0; copy < (options.copies ?? 1); copy++) {
    const process = group.start(name, {
      // No V8 flags, as the sidecar's row has none.
      ...sidecarCommand(proxyArgs(options, options.decoderPort, port), ""),
      cwd: ROOT,
    });
    processes.push(process);
    await process.waitForLine(parsePortLine, 60_000);
  }
  return { processes, port };
}

function variants(): Variant[] {
  const proxy = (name: string, options: ProxyOptions): Variant => ({
    name,
    start: (group, decoderPort) =>
      startProxy(group, name, { ...options, decoderPort }),
  });
  return [
    {
      name: "sidecar (main.ts)",
      start: async (group, decoderPort) => {
        // No V8 flags: like the bare proxies it is compared with, and the figures recorded before.
        const sidecar = await startSidecar(group, decoderPort, {
          workers: 1,
          v8Flags: "",
        });
        return { processes: [sidecar.process], port: sidecar.port };
      },
    },
    ...CLIENT_NAMES.map((client) =>
      proxy(`hono + ${client}`, { client, framework: "hono" })
    ),
    proxy("2 x bare Deno.serve + fetch-pool", {
      client: "fetch-pool",
      framework: "bare",
      copies: 2,
    }),
    ...["fetch-pool", "node-http"].map((client) =>
      proxy(`bare Deno.serve + ${client}`, { client, framework: "bare" })
    ),
  ];
}

/** One load generator row; errors, which the table only counts, are printed. */
async function measure(
  bench: Bench,
  run: {
    readonly url: string;
    readonly headers: Readonly<Record<string, string>>;
    readonly connections: number;
    readonly pids: readonly number[];
    readonly durationS: number;
  },
): Promise<ThroughputRow> {
  const pd = PREFILLER_HEADER in run.headers;
  const row = await measureWithTool(bench, pd ? "pd" : "passthrough", {
    url: run.url,
    headers: run.headers,
    connections: run.connections,
    cpuPids: run.pids,
    durationS: run.durationS,
  });
  if (row.errors + row.non2xx > 0) {
    console.error(
      `${run.url} c=${run.connections} ${
        pd ? "P/D" : "passthrough"
      }: ${row.errors} socket errors or timeouts, ${row.non2xx} non-2xx`,
    );
  }
  return row;
}

async function measureVariant(
  bench: Bench,
  variant: Variant,
  upstreams: { prefill: number; decode: number },
): Promise<Measured> {
  const proxy = await variant.start(bench.group, upstreams.decode);
  try {
    const url = urlOf(proxy.port);
    const pd = { [PREFILLER_HEADER]: `127.0.0.1:${upstreams.prefill}` };
    const pids = proxy.processes.map((process) => process.pid);
    const row = (
      headers: Readonly<Record<string, string>>,
      connections: number,
      durationS = bench.durationS,
    ) => measure(bench, { url, headers, connections, pids, durationS });
    // Warm-up: JIT and connection pools.
    await row(pd, 32, 2);
    await row({}, 32, 1);
    const pdC32 = await row(pd, 32);
    const passC32 = await row({}, 32);
    const pdC1 = await row(pd, 1);
    const passC1 = await row({}, 1);
    const all = [pdC32, passC32, pdC1, passC1];
    const streams = await measureStreams(bench, { url, headers: pd, pids });
    return {
      variant: variant.name,
      pdC32: pdC32.rps,
      passC32: passC32.rps,
      pdP50C1: pdC1.p50,
      passP50C1: passC1.p50,
      pdCpuSPer1000: pdC32.cpuSPer1000 ?? Number.NaN,
      passCpuSPer1000: passC32.cpuSPer1000 ?? Number.NaN,
      errors: all.reduce((sum, r) => sum + r.errors + r.non2xx, 0),
      ...streams,
    };
  } finally {
    await Promise.all(
      proxy.processes.map((process) => bench.group.stop(process)),
    );
  }
}

async function measureStreams(
  bench: Bench,
  run: {
    url: string;
    headers: Record<string, string>;
    pids: readonly number[];
  },
) {
  const go = (streams: number, rampMs: number) =>
    runStreamClient(bench.group, { ...run, streams, rampMs, chunks: 20 });
  await go(100, 100);
  const before = await cpuSecondsOf(run.pids, bench.ticks);
  const result = await go(1000, 1000);
  const cpu = (await cpuSecondsOf(run.pids, bench.ticks)) - before;
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
    const bench: Bench = {
      group,
      tool,
      ticks: await clockTicksPerSecond(),
      durationS: Number(values["duration-s"]),
      // Read by pd_client rows only; none run here.
      warmupS: 0,
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
      const row = await measureVariant(bench, variant, upstreams);
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
