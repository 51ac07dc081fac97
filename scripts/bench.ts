// deno-lint-ignore-file no-console -- a terminal report: printing is its job
/**
 * @module
 * `deno task bench [--quick]`: measures the sidecar side by side with what it
 * is compared with, in one run on the same upstreams, and prints one table
 * (also written to `scripts/bench/last_run.json`). Every server and client is
 * its own process on 127.0.0.1: fixed-answer prefiller and decoder
 * (`bench/fast_upstream.ts`), the sidecar (`main.ts`), nginx when installed,
 * the mock vLLM for realistic streaming, and the load generators (wrk or
 * autocannon; `bench/pd_client.ts` and `bench/stream_client.ts` for what a
 * generic tool cannot do). All of them are ended on exit, error or Ctrl-C.
 * Linux only: CPU time and memory are read from /proc.
 */

import { parseArgs } from "node:util";
import { SIDECAR_V8_FLAGS } from "./build.ts";
import {
  detectLoadTool,
  type LoadResult,
  type LoadTool,
  type LoadToolName,
} from "./bench/load_tool.ts";
import { nginxVersion, type RunningNginx, startNginx } from "./bench/nginx.ts";
import { headerArgs } from "./bench/http1.ts";
import type { ClientResult } from "./bench/pd_client.ts";
import {
  clockTicksPerSecond,
  cpuSecondsOf,
  createProcessGroup,
  freePort,
  lastJsonLine,
  memoryMiB,
  type ProcessGroup,
  readProcFile,
  runToEnd,
  sidecarArgs,
  sidecarCommand,
  type Started,
  startFastUpstream,
  stopAllAndRemove,
  waitForHttp,
} from "./bench/processes.ts";
import {
  type BenchReport,
  computeRatios,
  formatReport,
  formatRounds,
  judgeTargets,
  type MachineInfo,
  medianRoundByP99,
  type Scenario,
  type StreamingResults,
  type StreamP99Rounds,
  type ThroughputRow,
} from "./bench/report.ts";
import type { StreamResult } from "./bench/stream_client.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const BENCH_DIR = new URL("./bench/", import.meta.url).pathname;
/**
 * Where a run's report goes: one file per engine, so each has its last run to
 * compare with; a run with several workers or other V8 flags than shipped
 * goes beside it.
 */
function outputPath(
  settings: Pick<
    Settings,
    "sidecarEngine" | "sidecarWorkers" | "sidecarV8Flags"
  >,
): string {
  const name = settings.sidecarEngine === "serve"
    ? "last_run"
    : "last_run.wire";
  const workers = settings.sidecarWorkers === 1
    ? ""
    : `.workers${settings.sidecarWorkers}`;
  const flags = settings.sidecarV8Flags === SIDECAR_V8_FLAGS ? "" : ".v8flags";
  return `${BENCH_DIR}${name}${workers}${flags}.json`;
}
const CONCURRENCIES = [1, 32, 256];
const PATH = "/v1/chat/completions";
const PREFILLER_HEADER = "x-prefiller-host-port";

/** Durations and sizes of one run. */
interface Settings {
  readonly quick: boolean;
  readonly durationS: number;
  readonly warmupS: number;
  readonly streams: number;
  readonly chunks: number;
  readonly intervalMs: number;
  readonly rampMs: number;
  /** Measured rounds of the timestamped streams, each path once per round. */
  readonly streamRounds: number;
  readonly nginxWorkers: string;
  /** The sidecar's `-workers`: listener threads sharing its port. */
  readonly sidecarWorkers: number;
  /** The sidecar's `-engine`. */
  readonly sidecarEngine: "serve" | "wire";
  /** `--v8-flags` for the sidecar's runtime: the shipped ones unless told, "" for none. */
  readonly sidecarV8Flags: string;
  readonly mock: boolean;
  /** Force a load generator instead of the first one found. */
  readonly tool?: LoadToolName;
}

const USAGE =
  `Usage: deno task bench [--quick] [--nginx-workers=1|auto] [--sidecar-workers=N]
                       [--sidecar-engine=serve|wire] [--sidecar-v8-flags=FLAGS]
                       [--no-mock]

Measures the sidecar against direct upstream access and nginx, prints a table
and writes it to scripts/bench/last_run.json (last_run.wire.json with
--sidecar-engine=wire). The sidecar runs with the V8 flags it ships with
(scripts/build.ts); --sidecar-v8-flags replaces them ("none": no flags). A run
with other flags or several workers is written beside the kept one, with
".v8flags" or ".workersN" before ".json". A full run takes about 3 minutes,
--quick about 1.`;

function parseSettings(args: string[]): Settings | undefined {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      "nginx-workers": { type: "string", default: "1" },
      "sidecar-workers": { type: "string", default: "1" },
      "sidecar-engine": { type: "string", default: "serve" },
      "sidecar-v8-flags": { type: "string", default: SIDECAR_V8_FLAGS },
      tool: { type: "string" },
      "no-mock": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return undefined;
  const engine = values["sidecar-engine"];
  if (engine !== "serve" && engine !== "wire") {
    throw new Error(`--sidecar-engine must be serve or wire, not "${engine}"`);
  }
  const quick = values.quick;
  return {
    quick,
    durationS: quick ? 2 : 7,
    warmupS: quick ? 0.5 : 1,
    streams: 1000,
    chunks: quick ? 20 : 40,
    intervalMs: 50,
    rampMs: 1000,
    streamRounds: quick ? 1 : 3,
    nginxWorkers: values["nginx-workers"],
    sidecarWorkers: Math.max(1, Number(values["sidecar-workers"]) || 1),
    sidecarEngine: engine,
    sidecarV8Flags: values["sidecar-v8-flags"] === "none"
      ? ""
      : values["sidecar-v8-flags"],
    mock: !values["no-mock"],
    ...(values.tool === "wrk" || values.tool === "autocannon"
      ? { tool: values.tool }
      : {}),
  };
}

/** The request every run sends: a small chat completion, as clients send them. */
function requestBody(options: { stream: boolean; maxTokens: number }): string {
  return JSON.stringify({
    model: "Qwen/Qwen3-0.6B",
    messages: [
      { role: "system", content: "You are a helpful assistant." },
      {
        role: "user",
        content: "Name the capital of France and one river that crosses it.",
      },
    ],
    max_tokens: options.maxTokens,
    temperature: 0.7,
    stream: options.stream,
    ...(options.stream ? { stream_options: { include_usage: false } } : {}),
  });
}

async function describeMachine(
  tool: LoadTool,
  nginx: string | undefined,
): Promise<MachineInfo> {
  const read = readProcFile;
  const cpuinfo = await read("/proc/cpuinfo");
  const memoryKiB = Number(
    /^MemTotal:\s+(\d+)/m.exec(await read("/proc/meminfo"))?.[1] ?? 0,
  );
  return {
    nproc: navigator.hardwareConcurrency,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ??
      "unknown",
    memoryGiB: memoryKiB / 2 ** 20,
    kernel: (await read("/proc/sys/kernel/osrelease")).trim(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    loadTool: tool.version,
    nginx: nginx === undefined ? "not available" : `nginx ${nginx}`,
  };
}

async function startSidecar(
  group: ProcessGroup,
  decoderPort: number,
  settings: Pick<
    Settings,
    "sidecarWorkers" | "sidecarEngine" | "sidecarV8Flags"
  >,
): Promise<{ process: Started; port: number }> {
  const workers = settings.sidecarWorkers;
  const port = freePort();
  // Run from the repository so deno.json (its "unstable" list) applies, as `deno task start` does.
  const process = group.start("sidecar", {
    ...sidecarCommand(
      sidecarArgs(port, decoderPort, [
        `-workers=${workers}`,
        `-engine=${settings.sidecarEngine}`,
      ]),
      settings.sidecarV8Flags,
    ),
    cwd: ROOT,
  });
  // Every listener thread logs its own "starting" line.
  let listening = 0;
  await process.waitForLine(
    (line) =>
      line.includes('"msg":"starting"') && ++listening === workers
        ? true
        : undefined,
    30_000,
  );
  return { process, port };
}

async function startMock(
  group: ProcessGroup,
  name: string,
  flags: string[],
): Promise<{ port: number }> {
  const port = freePort();
  const process = group.start(`mock ${name}`, {
    cmd: Deno.execPath(),
    cwd: ROOT,
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "scripts/mock_vllm.ts",
      "--port",
      String(port),
      "--name",
      name,
      ...flags,
    ],
  });
  await Promise.race([
    waitForHttp(`http://127.0.0.1:${port}/health`, 30_000),
    process.status.then((s) => {
      throw new Error(
        `mock ${name} exited with code ${s.code}:\n${process.tail.join("\n")}`,
      );
    }),
  ]);
  return { port };
}

/** Everything the measuring steps share. */
interface Bench {
  readonly group: ProcessGroup;
  readonly settings: Settings;
  readonly tool: LoadTool;
  readonly ticks: number;
}

/** A table row from what a load generator or the chain client measured. */
function toRow(
  result: LoadResult | ClientResult,
  label: Pick<ThroughputRow, "scenario" | "tool" | "connections">,
): ThroughputRow {
  return {
    ...label,
    requests: result.requests,
    rps: result.rps,
    p50: result.latencyMs.p50,
    p90: result.latencyMs.p90,
    p99: result.latencyMs.p99,
    errors: result.errors,
    non2xx: result.non2xx,
  };
}

async function measureWithTool(
  bench: Bench,
  scenario: Scenario,
  run: {
    url: string;
    headers: Record<string, string>;
    connections: number;
    /** Processes whose CPU time is charged to the proxy. */
    cpuPids?: number[];
  },
): Promise<ThroughputRow> {
  const cpu = () => cpuSecondsOf(run.cpuPids ?? [], bench.ticks);
  const before = await cpu();
  const result = await bench.tool.run({
    url: run.url,
    headers: run.headers,
    body: requestBody({ stream: false, maxTokens: 16 }),
    connections: run.connections,
    durationS: bench.settings.durationS,
  }, bench.group);
  const spent = (await cpu()) - before;
  return {
    ...toRow(result, {
      scenario,
      tool: bench.tool.name,
      connections: run.connections,
    }),
    ...(run.cpuPids === undefined
      ? {}
      : { cpuSPer1000: (spent / result.requests) * 1000 }),
  };
}

async function measureWithClient(
  bench: Bench,
  scenario: Scenario,
  run: {
    url: string;
    prefillUrl?: string;
    headers: Record<string, string>;
    connections: number;
  },
): Promise<ThroughputRow> {
  const { settings } = bench;
  const args = [
    "run",
    "--allow-net",
    `${BENCH_DIR}pd_client.ts`,
    "--mode",
    run.prefillUrl === undefined ? "single" : "chain",
    "--url",
    run.url,
    ...(run.prefillUrl === undefined ? [] : ["--prefill-url", run.prefillUrl]),
    ...headerArgs(run.headers),
    "--body",
    requestBody({ stream: false, maxTokens: 16 }),
    "--connections",
    String(run.connections),
    "--warmup-s",
    String(settings.warmupS),
    "--duration-s",
    String(settings.durationS),
  ];
  const output = await runToEnd(bench.group, "pd_client", {
    cmd: Deno.execPath(),
    args,
    timeoutS: settings.warmupS + settings.durationS + 60,
  });
  const result = lastJsonLine<ClientResult>(output, "pd_client");
  return toRow(result, {
    scenario,
    tool: "pd_client",
    connections: run.connections,
  });
}

async function runStreams(
  bench: Bench,
  run: {
    url: string;
    prefillUrl?: string;
    headers: Record<string, string>;
    streams: number;
    rampMs: number;
  },
): Promise<StreamResult> {
  const args = [
    "run",
    "--allow-net",
    `${BENCH_DIR}stream_client.ts`,
    "--url",
    run.url,
    ...(run.prefillUrl === undefined ? [] : ["--prefill-url", run.prefillUrl]),
    ...headerArgs(run.headers),
    "--body",
    requestBody({ stream: true, maxTokens: bench.settings.chunks }),
    "--streams",
    String(run.streams),
    "--ramp-ms",
    String(run.rampMs),
    "--timeout-s",
    "90",
  ];
  const output = await runToEnd(bench.group, "stream_client", {
    cmd: Deno.execPath(),
    args,
    timeoutS: 120,
  });
  return lastJsonLine<StreamResult>(output, "stream_client");
}

interface Upstreams {
  readonly prefillPort: number;
  readonly decodePort: number;
  readonly sidecar: { readonly process: Started; readonly port: number };
  readonly nginx: RunningNginx | undefined;
}

async function measureThroughput(
  bench: Bench,
  up: Upstreams,
): Promise<ThroughputRow[]> {
  const url = (port: number) => `http://127.0.0.1:${port}${PATH}`;
  const prefiller = { [PREFILLER_HEADER]: `127.0.0.1:${up.prefillPort}` };
  const sidecarPid = up.sidecar.process.pid;
  const targets: {
    scenario: Scenario;
    run: (c: number) => Promise<ThroughputRow>;
  }[] = [
    {
      scenario: "direct",
      run: (c) =>
        measureWithTool(bench, "direct", {
          url: url(up.decodePort),
          headers: {},
          connections: c,
        }),
    },
    {
      scenario: "passthrough",
      run: (c) =>
        measureWithTool(bench, "passthrough", {
          url: url(up.sidecar.port),
          headers: {},
          connections: c,
          cpuPids: [sidecarPid],
        }),
    },
    {
      scenario: "pd",
      run: (c) =>
        measureWithTool(bench, "pd", {
          url: url(up.sidecar.port),
          headers: prefiller,
          connections: c,
          cpuPids: [sidecarPid],
        }),
    },
    {
      scenario: "chain_baseline",
      run: (c) =>
        measureWithClient(bench, "chain_baseline", {
          url: url(up.decodePort),
          prefillUrl: url(up.prefillPort),
          headers: {},
          connections: c,
        }),
    },
    {
      scenario: "pd_same_client",
      run: (c) =>
        measureWithClient(bench, "pd_same_client", {
          url: url(up.sidecar.port),
          headers: prefiller,
          connections: c,
        }),
    },
  ];
  const { nginx } = up;
  if (nginx !== undefined) {
    targets.splice(1, 0, {
      scenario: "nginx",
      run: (c) =>
        measureWithTool(bench, "nginx", {
          url: url(nginx.port),
          headers: {},
          connections: c,
          cpuPids: [nginx.process.pid],
        }),
    });
  }
  // One warm-up pass so JIT compilation and connection pools are not measured.
  const warmTargets: { url: string; headers: Record<string, string> }[] = [
    { url: url(up.sidecar.port), headers: {} },
    { url: url(up.sidecar.port), headers: prefiller },
    ...(nginx === undefined ? [] : [{ url: url(nginx.port), headers: {} }]),
  ];
  for (const target of warmTargets) {
    await bench.tool.run({
      ...target,
      body: requestBody({ stream: false, maxTokens: 16 }),
      connections: 32,
      durationS: Math.max(1, Math.round(bench.settings.warmupS * 2)),
    }, bench.group);
  }
  const rows: ThroughputRow[] = [];
  for (const connections of CONCURRENCIES) {
    // Targets interleaved per concurrency, so a slow drift of the machine hits all alike.
    for (const target of targets) {
      const row = await target.run(connections);
      rows.push(row);
      progress(
        `${target.scenario} c=${connections}: ${
          row.rps.toFixed(0)
        } req/s, p50 ${row.p50.toFixed(3)} ms`,
      );
    }
  }
  return rows;
}

/** Streams from the timestamping decoder, direct and through a fresh sidecar (so its peak RSS is the streams'). */
interface StreamComparison {
  /** Each path's median round by delay p99. */
  readonly direct: StreamResult;
  /** The same decode streams through nginx, when it runs: what a C proxy adds on this machine. */
  readonly nginx?: StreamResult;
  readonly sidecar: StreamResult;
  /** Every measured round's delay p99, per path. */
  readonly p99Rounds: StreamP99Rounds;
  readonly peakRssMiB: number;
}

/**
 * Runs the same streams against the decoder directly, through nginx when
 * given, and through a fresh sidecar: `rounds` times, the paths alternating,
 * so a slow minute of the machine falls on all of them alike.
 */
async function compareStreams(
  bench: Bench,
  plan: {
    readonly prefill: number;
    readonly decode: number;
    readonly nginx?: number | undefined;
    readonly rounds: number;
  },
): Promise<StreamComparison> {
  const { rounds, ...ports } = plan;
  const { group, settings } = bench;
  const sidecar = await startSidecar(group, ports.decode, settings);
  const direct = {
    url: `http://127.0.0.1:${ports.decode}${PATH}`,
    prefillUrl: `http://127.0.0.1:${ports.prefill}${PATH}`,
    headers: {},
  };
  const paths = [
    { name: "direct", plan: direct },
    ...(ports.nginx === undefined ? [] : [{
      name: "nginx",
      plan: { ...direct, url: `http://127.0.0.1:${ports.nginx}${PATH}` },
    }]),
    {
      name: "sidecar",
      plan: {
        url: `http://127.0.0.1:${sidecar.port}${PATH}`,
        headers: { [PREFILLER_HEADER]: `127.0.0.1:${ports.prefill}` },
      },
    },
  ] as const;
  // Warm-ups at full size: a path's first run at 1,000 streams often measured
  // twice the p99 of its next one, up to 5x (new connections, heap growth,
  // JIT), and with 100-stream warm-ups the first measured path paid for all.
  const shape = { streams: settings.streams, rampMs: settings.rampMs };
  for (const path of paths) await runStreams(bench, { ...path.plan, ...shape });
  const results: Record<string, StreamResult[]> = Object.fromEntries(
    paths.map((path) => [path.name, []]),
  );
  for (let round = 0; round < rounds; round++) {
    for (const path of paths) {
      results[path.name]?.push(
        await runStreams(bench, { ...path.plan, ...shape }),
      );
    }
  }
  const peakRssMiB = (await memoryMiB(sidecar.process.pid)).peak;
  await group.stop(sidecar.process);
  const { direct: directRounds = [], nginx, sidecar: sidecarRounds = [] } =
    results;
  const p99s = (of: StreamResult[]) => of.map((r) => r.delayMs.p99);
  return {
    direct: medianRoundByP99(directRounds),
    ...(nginx === undefined ? {} : { nginx: medianRoundByP99(nginx) }),
    sidecar: medianRoundByP99(sidecarRounds),
    p99Rounds: {
      direct: p99s(directRounds),
      ...(nginx === undefined ? {} : { nginx: p99s(nginx) }),
      sidecar: p99s(sidecarRounds),
    },
    peakRssMiB,
  };
}

async function measureTimestampedStreams(
  bench: Bench,
  up: Upstreams,
): Promise<StreamComparison> {
  const result = await compareStreams(bench, {
    prefill: up.prefillPort,
    decode: up.decodePort,
    nginx: up.nginx?.port,
    rounds: bench.settings.streamRounds,
  });
  const rounds = result.p99Rounds;
  progress(
    `streams, delay p99 per round: direct ${
      formatRounds(rounds.direct)
    } ms, nginx ${formatRounds(rounds.nginx)} ms, sidecar ${
      formatRounds(rounds.sidecar)
    } ms; ` +
      `sidecar peak RSS ${result.peakRssMiB.toFixed(1)} MiB`,
  );
  return result;
}

async function measureMockStreams(bench: Bench): Promise<StreamComparison> {
  const { group, settings } = bench;
  const prefiller = await startMock(group, "prefiller", ["--ttft-ms", "20"]);
  const decoder = await startMock(group, "decoder", [
    "--inter-token-ms",
    String(settings.intervalMs),
    "--kv-transfer-ms",
    "10",
    "--output-tokens",
    String(settings.chunks),
  ]);
  const result = await compareStreams(bench, {
    prefill: prefiller.port,
    decode: decoder.port,
    // One round: the mock's rows show its own limits, not a comparison.
    rounds: 1,
  });
  progress(
    `mock streams: ${result.sidecar.completed}/${result.sidecar.streams} done, sidecar peak RSS ${
      result.peakRssMiB.toFixed(1)
    } MiB`,
  );
  return result;
}

function progress(text: string): void {
  console.error(`[bench] ${text}`);
}

function buildNotes(
  settings: Settings,
  found: { machine: MachineInfo; streaming: StreamingResults },
): string[] {
  const { machine } = found;
  const mockLag = found.streaming.mock?.direct.gapMs.p50;
  const mockNote = mockLag !== undefined && mockLag - settings.intervalMs > 5
    ? [
      `the mock vLLM decoder cannot hold ${settings.streams} streams at its ${settings.intervalMs} ms ITL on this machine ` +
      `(gap p50 ${
        mockLag.toFixed(1)
      } ms even direct): its rows show the mock's limits; the fast-decoder rows are the measurement`,
    ]
    : [];
  const toolNote = machine.loadTool.startsWith("autocannon")
    ? [
      "autocannon reports latency in whole milliseconds: the c=1 passthrough p50 delta needs wrk to be meaningful",
    ]
    : [];
  return [
    ...mockNote,
    ...toolNote,
    `nginx: ${machine.nginx}, worker_processes ${settings.nginxWorkers}, sidecar -workers=${settings.sidecarWorkers} -engine=${settings.sidecarEngine}${
      settings.sidecarV8Flags === ""
        ? " (no V8 flags)"
        : ` --v8-flags=${settings.sidecarV8Flags}`
    }, ` +
    "upstream keepalive 1024, proxy_buffering and proxy_request_buffering off, access_log off",
    "wrk/autocannon rows: one load-generator process; " +
    "pd_client rows: bench/pd_client.ts (node:http keep-alive under Deno); the chain baseline does prefill then decode per iteration",
    "cpu s/1k: user+system CPU seconds of the proxy process (nginx: master and workers) during the run, per 1,000 requests",
    "streaming delay includes the client's and the decoder's own event-loop lag; the 'client chain direct' rows show that floor, " +
    "and the 'via nginx' row what a C proxy adds to it on this machine (each stream: its own connection, read from the raw socket)",
    "all processes share the machine's cores: load generator, upstreams and proxy compete for CPU as they would on a 2-core node",
  ];
}

/** Starts the fast upstreams, the sidecar and nginx, and runs the non-streaming measurements; nginx is left running for the streams. */
async function runThroughput(
  bench: Bench,
  options: { readonly tempDir: string; readonly nginx: string | undefined },
): Promise<{ rows: ThroughputRow[]; peakRssMiB: number; up: Upstreams }> {
  const { group, settings } = bench;
  const prefill = await startFastUpstream(group, "prefill", settings);
  const decode = await startFastUpstream(group, "decode", settings);
  const sidecar = await startSidecar(group, decode.port, settings);
  const nginx = options.nginx === undefined
    ? undefined
    : await startNginx(group, {
      prefix: options.tempDir,
      port: freePort(),
      upstreamPort: decode.port,
      workers: settings.nginxWorkers,
      version: options.nginx,
    });
  const up: Upstreams = {
    prefillPort: prefill.port,
    decodePort: decode.port,
    sidecar,
    nginx,
  };
  const rows = await measureThroughput(bench, up);
  const peakRssMiB = (await memoryMiB(sidecar.process.pid)).peak;
  await group.stop(sidecar.process);
  return { rows, peakRssMiB, up };
}

async function run(
  settings: Settings,
  context: { readonly group: ProcessGroup; readonly tempDir: string },
): Promise<BenchReport> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const tool = await detectLoadTool(context.tempDir, settings.tool);
  const nginx = await nginxVersion();
  const machine = await describeMachine(tool, nginx);
  progress(`load generator ${tool.version}; nginx ${nginx ?? "not available"}`);
  const bench: Bench = {
    group: context.group,
    settings,
    tool,
    ticks: await clockTicksPerSecond(),
  };
  const throughput = await runThroughput(bench, {
    tempDir: context.tempDir,
    nginx,
  });
  const timestamped = await measureTimestampedStreams(bench, throughput.up);
  // nginx stayed up for the streams, which it proxies as a reference.
  if (throughput.up.nginx !== undefined) {
    await context.group.stop(throughput.up.nginx.process);
  }
  const mock = settings.mock ? await measureMockStreams(bench) : undefined;
  const { streams, chunks, intervalMs, rampMs, streamRounds } = settings;
  const streaming: StreamingResults = {
    timestamped: {
      direct: timestamped.direct,
      ...(timestamped.nginx === undefined ? {} : { nginx: timestamped.nginx }),
      sidecar: timestamped.sidecar,
      p99Rounds: timestamped.p99Rounds,
    },
    ...(mock === undefined
      ? {}
      : { mock: { direct: mock.direct, sidecar: mock.sidecar } }),
    settings: { streams, chunks, intervalMs, rampMs, rounds: streamRounds },
  };
  const ratios = computeRatios(throughput.rows, {
    concurrencies: CONCURRENCIES,
    streaming,
  });
  const targets = judgeTargets(ratios, {
    streamDelayP99Ms: timestamped.sidecar.delayMs.p99 ?? null,
    peakRssMiB: Math.max(timestamped.peakRssMiB, mock?.peakRssMiB ?? 0),
  });
  return {
    schema: 1,
    startedAt,
    quick: settings.quick,
    wallS: (performance.now() - started) / 1000,
    machine,
    settings: {
      durationS: settings.durationS,
      warmupS: settings.warmupS,
      concurrencies: CONCURRENCIES,
      sidecarEngine: settings.sidecarEngine,
      sidecarWorkers: settings.sidecarWorkers,
      sidecarV8Flags: settings.sidecarV8Flags,
    },
    throughput: throughput.rows,
    streaming,
    sidecarPeakRssMiB: {
      throughput: throughput.peakRssMiB,
      streaming: timestamped.peakRssMiB,
      streamingMock: mock?.peakRssMiB ?? null,
    },
    ratios,
    targets,
    notes: buildNotes(settings, { machine, streaming }),
  };
}

async function main(): Promise<number> {
  const settings = parseSettings(Deno.args);
  if (settings === undefined) {
    console.log(USAGE);
    return 0;
  }
  const group = createProcessGroup();
  // wrk scripts and nginx's configuration, pid file and temp paths.
  const tempDir = await Deno.makeTempDir({
    dir: "/tmp",
    prefix: "pd-sidecar-bench-",
  });
  const cleanUp = () => stopAllAndRemove(group, tempDir);
  const onSignal = () => {
    progress("interrupted: stopping every process the benchmark started");
    void cleanUp().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const report = await run(settings, { group, tempDir });
    console.log(formatReport(report));
    const output = outputPath(settings);
    await Deno.writeTextFile(output, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nwritten to ${output}`);
    // A report, not a gate: FAIL lines are findings, not a failed run.
    return 0;
  } catch (error) {
    console.error(
      `Benchmark failed: ${error instanceof Error ? error.message : error}`,
    );
    return 1;
  } finally {
    await cleanUp();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exit(await main());
