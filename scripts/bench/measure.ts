/**
 * @module
 * The measuring steps the benchmark's loads share: starting a sidecar,
 * running the load generator or the bench's own clients against a target
 * (each its own process), and turning what they print into table rows.
 */

import { headerArgs } from "./http1.ts";
import type { LoadResult, LoadTool } from "./load_tool.ts";
import type { ClientResult } from "./pd_client.ts";
import {
  cpuSecondsOf,
  freePort,
  lastJsonLine,
  parsePortLine,
  type ProcessGroup,
  runToEnd,
  sidecarArgs,
  sidecarCommand,
  type Started,
} from "./processes.ts";
import type { Scenario, ThroughputRow } from "./results.ts";
import type { StreamResult } from "./stream_client.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const HERE = new URL("./", import.meta.url).pathname;

/** The path every request goes to. */
export const PATH = "/v1/chat/completions";
/** The routing header that makes a request P/D. */
export const PREFILLER_HEADER = "x-prefiller-host-port";

/** What every measuring step needs. */
export interface Bench {
  readonly group: ProcessGroup;
  readonly tool: LoadTool;
  /** Clock ticks per second of /proc's CPU times. */
  readonly ticks: number;
  readonly durationS: number;
  readonly warmupS: number;
}

/** How the sidecar runs. */
export interface SidecarOptions {
  /** `-workers`: listener threads sharing its port; the flag is left out at 1. */
  readonly workers: number;
  /** `--v8-flags` of its runtime ("" for none). */
  readonly v8Flags: string;
  /** More `deno run` flags, e.g. `--cpu-prof`. */
  readonly runtimeFlags?: readonly string[];
}

/** A running sidecar. */
export interface RunningSidecar {
  readonly process: Started;
  readonly port: number;
}

/** `http://127.0.0.1:<port>` plus the bench's path. */
export function urlOf(port: number): string {
  return `http://127.0.0.1:${port}${PATH}`;
}

/** The request every run sends: a small chat completion, as clients send them. */
export function requestBody(
  options: { stream: boolean; maxTokens: number },
): string {
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

/** Starts `main.ts` in front of the decoder on `decoderPort`; resolves once every listener logged "starting". */
export async function startSidecar(
  group: ProcessGroup,
  decoderPort: number,
  options: SidecarOptions,
): Promise<RunningSidecar> {
  const port = freePort();
  const flags = options.workers > 1 ? [`-workers=${options.workers}`] : [];
  // Run from the repository so deno.json (its "unstable" list) applies, as `deno task start` does.
  const process = group.start("sidecar", {
    ...sidecarCommand(
      sidecarArgs(port, decoderPort, flags),
      options.v8Flags,
      options.runtimeFlags,
    ),
    cwd: ROOT,
  });
  let listening = 0;
  await process.waitForLine(
    (line) =>
      line.includes('"msg":"starting"') && ++listening === options.workers
        ? true
        : undefined,
    30_000,
  );
  return { process, port };
}

/**
 * The command running the runtime floor (`floor_proxy.ts`) in front of the
 * decoder as the sidecar runs: same permissions and `v8Flags`, so the two
 * compare like for like. Run from the repository root, as the sidecar is,
 * so deno.json's "unstable" list applies to both.
 */
export function floorProxyCommand(
  decoderPort: number,
  v8Flags: string,
): { cmd: string; args: string[] } {
  return sidecarCommand(
    [`${HERE}floor_proxy.ts`, "--decoder-port", String(decoderPort)],
    v8Flags,
  );
}

/** Starts the runtime floor in front of the decoder; resolves once it printed its port. */
export async function startFloorProxy(
  group: ProcessGroup,
  decoderPort: number,
  options: { readonly v8Flags: string },
): Promise<{ process: Started; port: number }> {
  const process = group.start("runtime floor", {
    ...floorProxyCommand(decoderPort, options.v8Flags),
    cwd: ROOT,
  });
  const port = await process.waitForLine(parsePortLine, 30_000);
  return { process, port };
}

/**
 * A table row from what a load generator or the bench's client measured.
 * A row in which no request completed has no percentiles (wrk prints 0):
 * its latencies are the row's length, the least any of its requests waited,
 * so a target reading them fails instead of passing on zeros.
 */
export function toRow(
  result: LoadResult | ClientResult,
  label: Pick<ThroughputRow, "scenario" | "tool" | "connections"> & {
    readonly rate?: number | undefined;
  },
): ThroughputRow {
  const unanswered = result.requests === 0
    ? result.durationS * 1000
    : undefined;
  return {
    scenario: label.scenario,
    tool: label.tool,
    connections: label.connections,
    ...(label.rate === undefined ? {} : { rate: label.rate }),
    requests: result.requests,
    rps: result.rps,
    p50: unanswered ?? result.latencyMs.p50,
    p90: unanswered ?? result.latencyMs.p90,
    p99: unanswered ?? result.latencyMs.p99,
    errors: result.errors,
    non2xx: result.non2xx,
  };
}

/** One closed-loop row from the load generator; the CPU of `cpuPids` is charged to it. */
export async function measureWithTool(
  bench: Bench,
  scenario: Scenario,
  run: {
    readonly url: string;
    readonly headers: Readonly<Record<string, string>>;
    readonly connections: number;
    readonly cpuPids?: readonly number[];
    readonly durationS?: number;
  },
): Promise<ThroughputRow> {
  const cpu = () => cpuSecondsOf(run.cpuPids ?? [], bench.ticks);
  const before = await cpu();
  const result = await bench.tool.run({
    url: run.url,
    headers: run.headers,
    body: requestBody({ stream: false, maxTokens: 16 }),
    connections: run.connections,
    durationS: run.durationS ?? bench.durationS,
  }, bench.group);
  const spent = (await cpu()) - before;
  return {
    ...toRow(result, {
      scenario,
      tool: bench.tool.name,
      connections: run.connections,
    }),
    ...(run.cpuPids === undefined || result.requests === 0
      ? {}
      : { cpuSPer1000: (spent / result.requests) * 1000 }),
  };
}

/** One row from `pd_client.ts`: the sidecar, or with `prefillUrl` the two legs done by the client itself. */
export async function measureWithClient(
  bench: Bench,
  scenario: Scenario,
  run: {
    readonly url: string;
    readonly prefillUrl?: string;
    readonly headers: Readonly<Record<string, string>>;
    readonly connections: number;
    /** Open loop at this many requests per second in all. */
    readonly rate?: number;
    readonly warmupS?: number;
  },
): Promise<ThroughputRow> {
  const warmupS = run.warmupS ?? bench.warmupS;
  const args = [
    "run",
    "--allow-net",
    `${HERE}pd_client.ts`,
    "--mode",
    run.prefillUrl === undefined ? "single" : "chain",
    "--url",
    run.url,
    ...(run.prefillUrl === undefined ? [] : ["--prefill-url", run.prefillUrl]),
    ...headerArgs({ ...run.headers }),
    "--body",
    requestBody({ stream: false, maxTokens: 16 }),
    "--connections",
    String(run.connections),
    "--warmup-s",
    String(warmupS),
    "--duration-s",
    String(bench.durationS),
    ...(run.rate === undefined ? [] : ["--rate", String(run.rate)]),
  ];
  const output = await runToEnd(bench.group, "pd_client", {
    cmd: Deno.execPath(),
    args,
    timeoutS: warmupS + bench.durationS + 60,
  });
  const result = lastJsonLine<ClientResult>(output, "pd_client");
  return toRow(result, {
    scenario,
    tool: "pd_client",
    connections: run.connections,
    rate: run.rate,
  });
}

/** What `stream_client.ts` runs. */
export interface StreamRun {
  readonly url: string;
  readonly prefillUrl?: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly streams: number;
  readonly rampMs: number;
  /** `max_tokens` of the request (the fast decoder's event count is its own setting). */
  readonly chunks: number;
}

/** Runs `stream_client.ts` once and returns what it measured. */
export async function runStreamClient(
  group: ProcessGroup,
  run: StreamRun,
): Promise<StreamResult> {
  const args = [
    "run",
    "--allow-net",
    // Its workers load their module from disk.
    "--allow-read",
    `${HERE}stream_client.ts`,
    "--url",
    run.url,
    ...(run.prefillUrl === undefined ? [] : ["--prefill-url", run.prefillUrl]),
    ...headerArgs({ ...run.headers }),
    "--body",
    requestBody({ stream: true, maxTokens: run.chunks }),
    "--streams",
    String(run.streams),
    "--ramp-ms",
    String(run.rampMs),
    "--timeout-s",
    "90",
  ];
  const output = await runToEnd(group, "stream_client", {
    cmd: Deno.execPath(),
    args,
    timeoutS: 120,
  });
  return lastJsonLine<StreamResult>(output, "stream_client");
}
