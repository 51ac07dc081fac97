// deno-lint-ignore-file no-console -- a terminal report: printing is its job
/**
 * @module
 * `deno task bench [--quick]`: measures the sidecar side by side with what it
 * is compared with, in one run on the same upstreams, and judges issue 9's
 * four targets on it, each a difference or ratio between rows of the run:
 * (1) added time to first token at c=1, (2) a burst of 2,000 connections,
 * (3) streams as vLLM writes them, one step for all, (4) non-streaming P/D
 * throughput against vLLM's own example proxy. Prints the tables and a
 * PASS/FAIL line per target, and writes the run to
 * `scripts/bench/last_run.json`. Every server and client is its own process
 * on 127.0.0.1: fixed-answer prefiller and decoder (`bench/fast_upstream.ts`),
 * the sidecar (`main.ts`), the runtime floor (`bench/floor_proxy.ts`, the
 * least a P/D proxy on `Deno.serve` + `fetch` costs, its figures printed
 * beside the sidecar's), nginx, vLLM's toy proxy, and the load generators
 * (wrk, else autocannon; `bench/pd_client.ts` and `bench/stream_client.ts`
 * for what a generic tool cannot do). Missing tools are installed with
 * apt-get where allowed (`bench/setup.ts`). All processes are ended on exit,
 * error or Ctrl-C. Linux only: CPU time and memory are read from /proc.
 * The method and the history of the figures: `scripts/bench/README.md`.
 */

import { parseArgs } from "node:util";
import { SIDECAR_V8_FLAGS } from "./build.ts";
import {
  detectLoadTool,
  type LoadTool,
  type LoadToolName,
} from "./bench/load_tool.ts";
import {
  type Bench,
  measureWithClient,
  measureWithTool,
  PREFILLER_HEADER,
  requestBody,
  type SidecarOptions,
  startFloorProxy,
  startSidecar,
  urlOf,
} from "./bench/measure.ts";
import { type RunningNginx, startNginx } from "./bench/nginx.ts";
import { profileSidecar } from "./bench/profile.ts";
import {
  clockTicksPerSecond,
  createProcessGroup,
  freePort,
  memoryMiB,
  type ProcessGroup,
  readProcFile,
  startFastUpstream,
  stopAllAndRemove,
} from "./bench/processes.ts";
import { formatReport } from "./bench/report.ts";
import type {
  BenchReport,
  MachineInfo,
  StreamSection,
  ThroughputRow,
} from "./bench/results.ts";
import { ensureOpenFiles, ensureTools, type Tools } from "./bench/setup.ts";
import {
  measureStreamSection,
  type StreamSectionPlan,
} from "./bench/streaming.ts";
import { computeFigures, judgeTargets, LOADS } from "./bench/targets.ts";
import {
  obtainToyProxy,
  startToyProxy,
  toyProxyLabel,
  type ToyProxySource,
} from "./bench/toy_proxy.ts";

const BENCH_DIR = new URL("./bench/", import.meta.url).pathname;
/** File descriptors a 2,000-connection row needs in one process, with room to spare. */
const OPEN_FILES_NEEDED = 8192;

/** Durations and sizes of one run. */
interface Settings {
  readonly quick: boolean;
  readonly durationS: number;
  readonly warmupS: number;
  readonly burstConnections: number;
  readonly openLoopRate: number;
  readonly streamSections: readonly StreamSectionPlan[];
  readonly nginxWorkers: string;
  /** The sidecar's `-workers`: listener threads sharing its port. */
  readonly sidecarWorkers: number;
  /** `--v8-flags` for the sidecar's runtime: the shipped ones unless told, "" for none. */
  readonly sidecarV8Flags: string;
  readonly install: boolean;
  /** A local copy of vLLM's toy_proxy_server.py, used instead of downloading it. */
  readonly toyProxyFile?: string;
  readonly cpuProf: boolean;
  /** Force a load generator instead of the first one found. */
  readonly tool?: LoadToolName;
}

const USAGE =
  `Usage: deno task bench [--quick] [--cpu-prof] [--no-install] [--toy-proxy=FILE]
                       [--nginx-workers=1|auto] [--sidecar-workers=N]
                       [--sidecar-v8-flags=FLAGS] [--tool=wrk|autocannon]

Measures the sidecar against direct upstream access, nginx and vLLM's example
P/D proxy, judges issue 9's four targets (PASS/FAIL) and writes the run to
scripts/bench/last_run.json (a --quick run, or one with other V8 flags or
several workers, goes beside it, with ".quick", ".v8flags" or ".workersN"
before ".json"). Missing nginx, wrk
and Python FastAPI/httpx/uvicorn are installed with apt-get when run as root,
unless --no-install. vLLM's toy_proxy_server.py is downloaded at a pinned
commit, or read from --toy-proxy=FILE; when neither works an equivalent proxy
of the same design runs, and its row says so. --cpu-prof profiles the sidecar
under loads 2 and 3 and prints the top functions instead (no targets).
A full run takes 6-8 minutes, --quick 1-2. Method and history:
scripts/bench/README.md.`;

/** The stream sections of a run: the target's shape, then (full runs) a heavier one and the evenly spread mode. */
export function streamSectionPlans(quick: boolean): StreamSectionPlan[] {
  const rampMs = quick ? 500 : 1000;
  // Streams last long enough that all of them are open at once for most of a run.
  const seconds = quick ? 1.5 : 5;
  const shape = (
    mode: "step" | "spread",
    streams: number,
    intervalMs: number,
  ) => ({
    mode,
    streams,
    intervalMs,
    chunks: Math.round((seconds * 1000) / intervalMs),
    rampMs,
  });
  const target: StreamSectionPlan = {
    name: "step_500x50",
    shape: shape("step", 500, 50),
    rounds: quick ? 1 : 3,
    warmUp: true,
  };
  // The sections without a target only in full runs: --quick stays short on a busy machine.
  if (quick) return [target];
  return [
    target,
    {
      name: "step_1000x25",
      shape: shape("step", 1000, 25),
      rounds: 1,
      warmUp: true,
    },
    {
      name: "spread_500x50",
      shape: shape("spread", 500, 50),
      rounds: 1,
      warmUp: true,
    },
  ];
}

function parseSettings(args: string[]): Settings | undefined {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      "cpu-prof": { type: "boolean", default: false },
      "no-install": { type: "boolean", default: false },
      "toy-proxy": { type: "string" },
      "nginx-workers": { type: "string", default: "1" },
      "sidecar-workers": { type: "string", default: "1" },
      "sidecar-v8-flags": { type: "string", default: SIDECAR_V8_FLAGS },
      tool: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return undefined;
  const quick = values.quick;
  const tool = values.tool;
  if (tool !== undefined && tool !== "wrk" && tool !== "autocannon") {
    throw new Error(`--tool must be wrk or autocannon, not "${tool}"`);
  }
  return {
    quick,
    durationS: quick ? 2 : 7,
    warmupS: quick ? 0.5 : 1,
    burstConnections: 2000,
    openLoopRate: 2000,
    streamSections: streamSectionPlans(quick),
    nginxWorkers: values["nginx-workers"],
    sidecarWorkers: Math.max(1, Number(values["sidecar-workers"]) || 1),
    sidecarV8Flags: values["sidecar-v8-flags"] === "none"
      ? ""
      : values["sidecar-v8-flags"],
    install: !values["no-install"],
    cpuProf: values["cpu-prof"],
    ...(values["toy-proxy"] === undefined
      ? {}
      : { toyProxyFile: values["toy-proxy"] }),
    ...(tool === undefined ? {} : { tool }),
  };
}

/**
 * Where a run's report goes: a quick run, or one with several workers or
 * other V8 flags than shipped, goes beside the kept full run.
 */
function outputPath(settings: Settings): string {
  const workers = settings.sidecarWorkers === 1
    ? ""
    : `.workers${settings.sidecarWorkers}`;
  const flags = settings.sidecarV8Flags === SIDECAR_V8_FLAGS ? "" : ".v8flags";
  const quick = settings.quick ? ".quick" : "";
  return `${BENCH_DIR}last_run${workers}${flags}${quick}.json`;
}

function sidecarOptions(settings: Settings): SidecarOptions {
  return {
    workers: settings.sidecarWorkers,
    v8Flags: settings.sidecarV8Flags,
  };
}

const STARTED = performance.now();

function progress(text: string): void {
  const elapsed = ((performance.now() - STARTED) / 1000).toFixed(0);
  console.error(`[bench +${elapsed}s] ${text}`);
}

async function describeMachine(
  found: {
    readonly tool: LoadTool;
    readonly tools: Tools;
    readonly openFiles: string;
  },
): Promise<MachineInfo> {
  const cpuinfo = await readProcFile("/proc/cpuinfo");
  const memoryKiB = Number(
    /^MemTotal:\s+(\d+)/m.exec(await readProcFile("/proc/meminfo"))?.[1] ?? 0,
  );
  const { tools } = found;
  return {
    nproc: navigator.hardwareConcurrency,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ??
      "unknown",
    memoryGiB: memoryKiB / 2 ** 20,
    kernel: (await readProcFile("/proc/sys/kernel/osrelease")).trim(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    loadTool: found.tool.version,
    nginx: tools.nginx === undefined ? "not available" : tools.nginx,
    python: tools.python === undefined
      ? "not available"
      : `${tools.python.command} ${tools.python.versions}`,
    openFiles: found.openFiles,
  };
}

/** The upstreams, sidecar and nginx the non-streaming loads share. */
interface Upstreams {
  readonly prefillPort: number;
  readonly decodePort: number;
  readonly sidecar: { readonly pid: number; readonly port: number };
  readonly nginx: RunningNginx | undefined;
  /** `--v8-flags` of the sidecar's runtime, which the runtime floor's gets too. */
  readonly v8Flags: string;
}

/** One row maker per scenario of the non-streaming loads. */
function rowMakers(bench: Bench, up: Upstreams) {
  const pd = { [PREFILLER_HEADER]: `127.0.0.1:${up.prefillPort}` };
  const sidecarUrl = urlOf(up.sidecar.port);
  const cpuPids = [up.sidecar.pid];
  const nginx = up.nginx;
  // Long enough for every open-loop connection to be opened before the window.
  const openLoopWarmupS = Math.max(1, bench.warmupS * 2);
  return {
    direct: (connections: number) =>
      measureWithTool(bench, "direct", {
        url: urlOf(up.decodePort),
        headers: {},
        connections,
      }),
    nginx: nginx === undefined
      ? undefined
      : (connections: number) =>
        measureWithTool(bench, "nginx", {
          url: urlOf(nginx.port),
          headers: {},
          connections,
          cpuPids: [nginx.process.pid],
        }),
    passthrough: (connections: number) =>
      measureWithTool(bench, "passthrough", {
        url: sidecarUrl,
        headers: {},
        connections,
        cpuPids,
      }),
    pd: (connections: number) =>
      measureWithTool(bench, "pd", {
        url: sidecarUrl,
        headers: pd,
        connections,
        cpuPids,
      }),
    chainBaseline: (connections: number, rate?: number) =>
      measureWithClient(bench, "chain_baseline", {
        url: urlOf(up.decodePort),
        prefillUrl: urlOf(up.prefillPort),
        headers: {},
        connections,
        ...(rate === undefined ? {} : { rate, warmupS: openLoopWarmupS }),
      }),
    pdSameClient: (connections: number, rate?: number) =>
      measureWithClient(bench, "pd_same_client", {
        url: sidecarUrl,
        headers: pd,
        connections,
        ...(rate === undefined ? {} : { rate, warmupS: openLoopWarmupS }),
      }),
    floorPd: (connections: number) =>
      floorRow(bench, up, "floor_pd", pd, connections),
    floorPassthrough: (connections: number) =>
      floorRow(bench, up, "floor_passthrough", {}, connections),
    floorPdSameClient: (connections: number) =>
      measureFloor(
        bench,
        up,
        (floor) =>
          measureWithClient(bench, "floor_pd_same_client", {
            url: floor.url,
            headers: pd,
            connections,
          }),
      ),
  };
}

/** A row of the runtime floor measured with the load generator, as the sidecar's rows are. */
function floorRow(
  bench: Bench,
  up: Upstreams,
  scenario: "floor_pd" | "floor_passthrough",
  headers: Record<string, string>,
  connections: number,
): Promise<ThroughputRow> {
  return measureFloor(bench, up, (floor) =>
    measureWithTool(bench, scenario, {
      url: floor.url,
      headers,
      connections,
      cpuPids: [floor.pid],
    }));
}

/**
 * The runtime floor, started for one row only (as the toy proxy is): 1 s
 * of passthrough and 1 s of P/D at c=32 to warm it up, then `measure`, then
 * stopped.
 */
async function measureFloor(
  bench: Bench,
  up: Upstreams,
  measure: (
    floor: { readonly url: string; readonly pid: number },
  ) => Promise<ThroughputRow>,
): Promise<ThroughputRow> {
  const proxy = await startFloorProxy(bench.group, up.decodePort, {
    v8Flags: up.v8Flags,
  });
  try {
    const floor = { url: urlOf(proxy.port), pid: proxy.process.pid };
    // Both of its paths, as warmUp does the sidecar's.
    await warmUpPaths(bench, [
      { url: floor.url, headers: {} },
      {
        url: floor.url,
        headers: { [PREFILLER_HEADER]: `127.0.0.1:${up.prefillPort}` },
      },
    ], 1);
    return await measure(floor);
  } finally {
    await bench.group.stop(proxy.process);
  }
}

function logRow(row: ThroughputRow): void {
  const loop = row.rate === undefined ? "" : ` at ${row.rate}/s`;
  progress(
    `${row.scenario} c=${row.connections}${loop}: ${
      row.rps.toFixed(0)
    } req/s, p50 ${row.p50.toFixed(3)} ms, p99 ${row.p99.toFixed(3)} ms${
      row.errors + row.non2xx > 0 ? `, ${row.errors + row.non2xx} errors` : ""
    }`,
  );
}

/** Warm-up: JIT compilation and connection pools are not measured. */
async function warmUp(bench: Bench, up: Upstreams): Promise<void> {
  const pd = { [PREFILLER_HEADER]: `127.0.0.1:${up.prefillPort}` };
  const targets = [
    { url: urlOf(up.sidecar.port), headers: {} },
    { url: urlOf(up.sidecar.port), headers: pd },
    ...(up.nginx === undefined
      ? []
      : [{ url: urlOf(up.nginx.port), headers: {} }]),
  ];
  await warmUpPaths(bench, targets, Math.max(1, Math.round(bench.warmupS * 2)));
}

/** Loads each of `targets` at c=32 for `durationS`, measuring nothing. */
async function warmUpPaths(
  bench: Bench,
  targets: readonly {
    readonly url: string;
    readonly headers: Record<string, string>;
  }[],
  durationS: number,
): Promise<void> {
  for (const target of targets) {
    await bench.tool.run({
      ...target,
      body: requestBody({ stream: false, maxTokens: 16 }),
      connections: LOADS.throughput,
      durationS,
    }, bench.group);
  }
}

/** Loads 1, 4 and 2 on the fast upstreams; the toy proxy runs only for its row. */
async function measureNonStreaming(
  bench: Bench,
  context: {
    readonly settings: Settings;
    readonly up: Upstreams;
    readonly toy: { source: ToyProxySource; python: string } | undefined;
  },
): Promise<ThroughputRow[]> {
  const { settings, up } = context;
  const make = rowMakers(bench, up);
  const rows: ThroughputRow[] = [];
  const add = async (row: Promise<ThroughputRow>) => {
    const done = await row;
    rows.push(done);
    logRow(done);
  };
  await warmUp(bench, up);
  const { latency, throughput } = LOADS;
  // Load 1: the rows of each difference next to each other in time.
  await add(make.direct(latency));
  await add(make.passthrough(latency));
  await add(make.floorPassthrough(latency));
  if (make.nginx) await add(make.nginx(latency));
  await add(make.chainBaseline(latency));
  await add(make.pdSameClient(latency));
  await add(make.floorPdSameClient(latency));
  // Load 4, and the base of load 2's shares.
  await add(make.direct(throughput));
  if (make.nginx) await add(make.nginx(throughput));
  await add(make.passthrough(throughput));
  await add(make.pd(throughput));
  await add(make.floorPd(throughput));
  await add(make.chainBaseline(throughput));
  if (context.toy !== undefined) {
    await add(measureToyProxy(bench, up, context.toy));
  }
  // Load 2.
  const burst = settings.burstConnections;
  if (make.nginx) await add(make.nginx(burst));
  await add(make.pd(burst));
  await add(make.floorPd(burst));
  await add(make.passthrough(burst));
  await add(make.chainBaseline(burst, settings.openLoopRate));
  await add(make.pdSameClient(burst, settings.openLoopRate));
  return rows;
}

/** Load 4's yardstick: the toy proxy on the same upstreams, started for its row only. */
async function measureToyProxy(
  bench: Bench,
  up: Upstreams,
  toy: { readonly source: ToyProxySource; readonly python: string },
): Promise<ThroughputRow> {
  const proxy = await startToyProxy(bench.group, {
    python: toy.python,
    source: toy.source,
    prefill: up.prefillPort,
    decode: up.decodePort,
  });
  try {
    const run = {
      url: urlOf(proxy.port),
      headers: {},
      connections: LOADS.throughput,
      cpuPids: [proxy.process.pid],
    };
    await measureWithTool({ ...bench, durationS: 1 }, "toy_pd", run);
    return await measureWithTool(bench, "toy_pd", run);
  } finally {
    await bench.group.stop(proxy.process);
  }
}

function buildNotes(
  settings: Settings,
  found: {
    readonly machine: MachineInfo;
    readonly installed: readonly string[];
    readonly toy: ToyProxySource | undefined;
  },
): string[] {
  const { machine, toy } = found;
  return [
    ...(found.installed.length > 0
      ? [`installed with apt-get for this run: ${found.installed.join(" ")}`]
      : []),
    ...(toy?.kind === "vllm"
      ? [
        `toy proxy: ${toy.origin}, run with the system's Python through scripts/bench/toy_proxy/launch.py`,
      ]
      : toy?.kind === "equivalent"
      ? [
        `toy proxy: scripts/bench/toy_proxy/equivalent.py, a proxy of the same design, because ${toy.why}`,
      ]
      : []),
    ...(machine.loadTool.startsWith("autocannon")
      ? [
        "autocannon reports latency in whole milliseconds: the c=1 differences need wrk to mean anything",
      ]
      : []),
    "nginx: upstream keepalive 1024, proxy_buffering and proxy_request_buffering off, access_log off",
    "runtime floor: scripts/bench/floor_proxy.ts, bare Deno.serve + one pooled fetch client, prefill read whole, " +
    "decode streamed, nothing of the sidecar's own work; the sidecar's V8 flags, one runtime, started for its rows only " +
    "(for streams: beside each section's fresh sidecar, the two swapping turns from round to round). " +
    "Its figure under a target is how much of that target's gap the runtime alone accounts for",
    "wrk/autocannon rows: one load-generator process (wrk -t1); pd_client rows: the bench's node:http client, " +
    "the chain baseline does prefill then decode per request; open-loop rows: one connection per loop, latency from when each request was due",
    "cpu s/1k: user+system CPU seconds of the proxy process (nginx: master and workers) during the row, per 1,000 requests",
    `streams: the sidecar and the runtime floor do the prefill too; the direct and nginx paths have the client do it (nginx relays only the decode)`,
    `every process shares the machine's ${machine.nproc} cores: load generators, upstreams and proxies compete for CPU`,
    ...(settings.quick
      ? ["--quick: short rows and one stream round; indicative only"]
      : []),
  ];
}

async function run(
  settings: Settings,
  context: { readonly group: ProcessGroup; readonly tempDir: string },
): Promise<BenchReport> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const { group, tempDir } = context;
  const setup = await ensureTools({ install: settings.install, log: progress });
  const openFiles = await ensureOpenFiles(OPEN_FILES_NEEDED);
  progress(openFiles);
  const tool = await detectLoadTool(tempDir, settings.tool);
  const { tools } = setup;
  const toySource = tools.python === undefined
    ? undefined
    : await obtainToyProxy({
      tempDir,
      ...(settings.toyProxyFile === undefined
        ? {}
        : { localFile: settings.toyProxyFile }),
    });
  const machine = await describeMachine({ tool, tools, openFiles });
  progress(
    `load generator ${tool.version}; nginx ${machine.nginx}; python ${machine.python}`,
  );
  const bench: Bench = {
    group,
    tool,
    ticks: await clockTicksPerSecond(),
    durationS: settings.durationS,
    warmupS: settings.warmupS,
  };
  const prefill = await startFastUpstream(group, "prefill");
  const decode = await startFastUpstream(group, "decode");
  const sidecar = await startSidecar(
    group,
    decode.port,
    sidecarOptions(settings),
  );
  const nginxSettings = tools.nginx === undefined
    ? undefined
    : { version: tools.nginx, workers: settings.nginxWorkers };
  const nginx = nginxSettings === undefined ? undefined : await startNginx(
    group,
    {
      prefix: `${tempDir}/nginx`,
      port: freePort(),
      upstreamPort: decode.port,
      ...nginxSettings,
    },
  );
  const up: Upstreams = {
    prefillPort: prefill.port,
    decodePort: decode.port,
    sidecar: { pid: sidecar.process.pid, port: sidecar.port },
    nginx,
    v8Flags: settings.sidecarV8Flags,
  };
  const throughput = await measureNonStreaming(bench, {
    settings,
    up,
    toy: toySource === undefined || tools.python === undefined
      ? undefined
      : { source: toySource, python: tools.python.command },
  });
  const throughputPeakRssMiB = (await memoryMiB(sidecar.process.pid)).peak;
  await group.stop(sidecar.process);
  if (nginx !== undefined) await group.stop(nginx.process);
  await group.stop(decode.process);
  const streaming: StreamSection[] = [];
  for (const plan of settings.streamSections) {
    streaming.push(
      await measureStreamSection({
        bench,
        tempDir,
        prefillPort: prefill.port,
        ...(nginxSettings === undefined ? {} : { nginx: nginxSettings }),
        sidecar: sidecarOptions(settings),
        progress,
      }, plan),
    );
  }
  const toyLabel = toySource === undefined
    ? "toy_proxy_server.py P/D"
    : toyProxyLabel(toySource);
  const figures = computeFigures(throughput, {
    streaming,
    burstConnections: settings.burstConnections,
    openLoopRate: settings.openLoopRate,
  });
  return {
    schema: 4,
    startedAt,
    quick: settings.quick,
    wallS: (performance.now() - started) / 1000,
    machine,
    settings: {
      durationS: settings.durationS,
      warmupS: settings.warmupS,
      burstConnections: settings.burstConnections,
      openLoopRate: settings.openLoopRate,
      sidecarWorkers: settings.sidecarWorkers,
      sidecarV8Flags: settings.sidecarV8Flags,
      nginxWorkers: settings.nginxWorkers,
    },
    toyProxy: toyLabel,
    throughput,
    streaming,
    throughputPeakRssMiB,
    figures,
    targets: judgeTargets(figures, {
      burstConnections: settings.burstConnections,
      toyLabel,
    }),
    notRun: setup.missing,
    notes: buildNotes(settings, {
      machine,
      installed: setup.installed,
      toy: toySource,
    }),
  };
}

async function runProfiles(
  settings: Settings,
  context: { readonly group: ProcessGroup; readonly tempDir: string },
): Promise<string> {
  const setup = await ensureTools({ install: settings.install, log: progress });
  progress(await ensureOpenFiles(OPEN_FILES_NEEDED));
  const tool = await detectLoadTool(context.tempDir, settings.tool);
  const outDir = await Deno.makeTempDir({
    dir: "/tmp",
    prefix: "pd-sidecar-profiles-",
  });
  const target = settings.streamSections[0];
  if (target === undefined) throw new Error("No stream section to profile");
  progress(`profiling the sidecar; ${setup.missing.join("; ") || "all tools"}`);
  return await profileSidecar({
    group: context.group,
    tool,
    ticks: await clockTicksPerSecond(),
    durationS: settings.durationS,
    warmupS: settings.warmupS,
  }, {
    burstConnections: settings.burstConnections,
    streams: target.shape,
    sidecar: sidecarOptions(settings),
    outDir,
    top: 20,
  });
}

async function main(): Promise<number> {
  const settings = parseSettings(Deno.args);
  if (settings === undefined) {
    console.log(USAGE);
    return 0;
  }
  const group = createProcessGroup();
  // wrk scripts, nginx's configuration and temp paths, the toy proxy's file.
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
    if (settings.cpuProf) {
      console.log(await runProfiles(settings, { group, tempDir }));
      return 0;
    }
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
