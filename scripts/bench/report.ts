/**
 * @module
 * The benchmark's results: their JSON shape (written to `last_run.json` so
 * runs can be compared), the ratios and targets derived from them, and the
 * text table printed at the end. Pure: no I/O.
 */

import { quantile } from "./stats.ts";
import type { StreamResult } from "./stream_client.ts";

/** The machine a run measured. */
export interface MachineInfo {
  readonly nproc: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly deno: string;
  readonly v8: string;
  readonly loadTool: string;
  readonly nginx: string;
}

/** Who is measured in a throughput row. */
export type Scenario =
  | "direct"
  | "passthrough"
  | "nginx"
  | "pd"
  | "chain_baseline"
  | "pd_same_client";

/** One throughput measurement; latencies in milliseconds. */
export interface ThroughputRow {
  readonly scenario: Scenario;
  /** "wrk", "autocannon" or "pd_client". */
  readonly tool: string;
  readonly connections: number;
  readonly requests: number;
  readonly rps: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly errors: number;
  readonly non2xx: number;
  /** CPU seconds of the proxy process(es) per 1,000 requests, when measured. */
  readonly cpuSPer1000?: number;
}

/** Every measured round's per-chunk delay p99, in ms, per path, in run order. */
export interface StreamP99Rounds {
  readonly direct: readonly number[];
  readonly nginx?: readonly number[];
  readonly sidecar: readonly number[];
}

/**
 * The round whose delay p99 is the median of `rounds` (the lower middle one
 * for an even count); a round without a p99 sorts last.
 */
export function medianRoundByP99(
  rounds: readonly StreamResult[],
): StreamResult {
  const key = (round: StreamResult) =>
    Number.isFinite(round.delayMs.p99) ? round.delayMs.p99 : Infinity;
  const sorted = [...rounds].sort((a, b) => key(a) - key(b));
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  if (median === undefined) throw new Error("No stream rounds to choose from");
  return median;
}

/** Streaming measurements. */
export interface StreamingResults {
  /** Timestamped fast decoder: direct P/D chain by the client, the same through nginx, and P/D through the sidecar; each its median round. */
  readonly timestamped?: {
    readonly direct: StreamResult;
    /** Absent when nginx is not on the machine. */
    readonly nginx?: StreamResult;
    readonly sidecar: StreamResult;
    /** Absent in runs written before rounds were measured. */
    readonly p99Rounds?: StreamP99Rounds;
  };
  /** Mock vLLM prefiller and decoder: direct chain and through a sidecar. */
  readonly mock?: {
    readonly direct: StreamResult;
    readonly sidecar: StreamResult;
  };
  readonly settings: {
    readonly streams: number;
    readonly chunks: number;
    readonly intervalMs: number;
    readonly rampMs: number;
    /** Measured rounds of the fast-decoder streams (1 when absent). */
    readonly rounds?: number;
  };
}

/** A target of the issue, judged on this run. */
export interface TargetResult {
  readonly name: string;
  readonly value: number | null;
  readonly unit: string;
  /** e.g. ">= 0.5" */
  readonly threshold: string;
  readonly pass: boolean | null;
}

/** Everything one run produced. */
export interface BenchReport {
  readonly schema: 1;
  readonly startedAt: string;
  readonly quick: boolean;
  readonly wallS: number;
  readonly machine: MachineInfo;
  readonly settings: {
    readonly durationS: number;
    readonly warmupS: number;
    readonly concurrencies: number[];
    /** The sidecar's `-engine` and `-workers` (absent in runs before they existed). */
    readonly sidecarEngine?: string;
    readonly sidecarWorkers?: number;
    /** The sidecar runtime's `--v8-flags` ("" for none; absent in runs before the option). */
    readonly sidecarV8Flags?: string;
  };
  readonly throughput: ThroughputRow[];
  readonly streaming: StreamingResults;
  /** Peak resident memory (VmHWM) of the sidecar processes, MiB. */
  readonly sidecarPeakRssMiB: {
    /** After every throughput run (c up to 256). */
    readonly throughput: number;
    /** A fresh sidecar after the timestamped streams. */
    readonly streaming: number;
    /** A fresh sidecar after the mock vLLM streams. */
    readonly streamingMock: number | null;
  };
  readonly ratios: Record<string, number | null>;
  readonly targets: TargetResult[];
  readonly notes: string[];
}

const LABELS: Readonly<Record<Scenario, string>> = {
  direct: "decoder direct",
  passthrough: "sidecar passthrough",
  nginx: "nginx passthrough",
  pd: "sidecar P/D",
  "chain_baseline": "prefill+decode direct",
  "pd_same_client": "sidecar P/D",
};

function find(
  rows: readonly ThroughputRow[],
  scenario: Scenario,
  connections: number,
): ThroughputRow | undefined {
  return rows.find((row) =>
    row.scenario === scenario && row.connections === connections
  );
}

function ratio(a: number | undefined, b: number | undefined): number | null {
  return a === undefined || b === undefined || b === 0 ||
      !Number.isFinite(a / b)
    ? null
    : a / b;
}

function difference(
  a: number | undefined,
  b: number | undefined,
): number | null {
  return a === undefined || b === undefined || !Number.isFinite(a - b)
    ? null
    : a - b;
}

/** Ratios and deltas between the rows, keyed by a readable name. */
export function computeRatios(
  rows: readonly ThroughputRow[],
  options: {
    readonly concurrencies: readonly number[];
    readonly streaming?: StreamingResults | undefined;
  },
): Record<string, number | null> {
  const { concurrencies } = options;
  const out: Record<string, number | null> = {};
  for (const c of concurrencies) {
    const rps = (s: Scenario) => find(rows, s, c)?.rps;
    out[`passthrough_vs_direct_rps_c${c}`] = ratio(
      rps("passthrough"),
      rps("direct"),
    );
    out[`passthrough_vs_nginx_rps_c${c}`] = ratio(
      rps("passthrough"),
      rps("nginx"),
    );
    out[`nginx_vs_direct_rps_c${c}`] = ratio(rps("nginx"), rps("direct"));
    out[`pd_vs_own_passthrough_rps_c${c}`] = ratio(
      rps("pd"),
      rps("passthrough"),
    );
    out[`pd_vs_nginx_passthrough_rps_c${c}`] = ratio(rps("pd"), rps("nginx"));
    out[`pd_vs_chain_baseline_rps_c${c}`] = ratio(
      rps("pd_same_client"),
      rps("chain_baseline"),
    );
  }
  out.pd_minus_chain_baseline_p50_ms_c1 = difference(
    find(rows, "pd_same_client", 1)?.p50,
    find(rows, "chain_baseline", 1)?.p50,
  );
  out.passthrough_minus_direct_p50_ms_c1 = difference(
    find(rows, "passthrough", 1)?.p50,
    find(rows, "direct", 1)?.p50,
  );
  // The part of the per-chunk delay the sidecar adds over the harness's own floor.
  const streams = options.streaming?.timestamped;
  out.stream_delay_p50_sidecar_minus_direct_ms = difference(
    streams?.sidecar.delayMs.p50 ?? undefined,
    streams?.direct.delayMs.p50 ?? undefined,
  );
  // Differences taken round by round (the paths took turns within a round),
  // then their median; a run without rounds counts its kept rows as one.
  const rounds: StreamP99Rounds | undefined = streams?.p99Rounds ??
    (streams && {
      direct: [streams.direct.delayMs.p99],
      ...(streams.nginx ? { nginx: [streams.nginx.delayMs.p99] } : {}),
      sidecar: [streams.sidecar.delayMs.p99],
    });
  out.stream_delay_p99_sidecar_minus_direct_ms = medianDifference(
    rounds?.sidecar ?? [],
    rounds?.direct ?? [],
  );
  // What a C proxy adds on the same machine, in the same minutes.
  out.stream_delay_p99_nginx_minus_direct_ms = medianDifference(
    rounds?.nginx ?? [],
    rounds?.direct ?? [],
  );
  return out;
}

/** The median of `a[i] - b[i]` over the rounds both have; null without any. */
function medianDifference(
  a: readonly number[],
  b: readonly number[],
): number | null {
  const differences = Float64Array.from(
    a.slice(0, b.length).map((value, i) => value - (b[i] as number))
      .filter(Number.isFinite),
  ).sort();
  return differences.length === 0 ? null : quantile(differences, 0.5);
}

function atLeast(
  name: string,
  value: number | null,
  min: number,
  unit = "x",
): TargetResult {
  return {
    name,
    value,
    unit,
    threshold: `>= ${min}`,
    pass: value === null ? null : value >= min,
  };
}

function below(
  name: string,
  value: number | null,
  max: number,
  unit: string,
): TargetResult {
  return {
    name,
    value,
    unit,
    threshold: `< ${max}`,
    pass: value === null ? null : value < max,
  };
}

/** The targets, judged on `ratios` and the streaming and memory figures. */
export function judgeTargets(
  ratios: Readonly<Record<string, number | null>>,
  extra: {
    readonly streamDelayP99Ms: number | null;
    readonly peakRssMiB: number | null;
  },
): TargetResult[] {
  const r = (key: string) => ratios[key] ?? null;
  return [
    atLeast(
      "passthrough >= 0.5x nginx throughput (c=32)",
      r("passthrough_vs_nginx_rps_c32"),
      0.5,
    ),
    atLeast(
      "passthrough >= 0.5x nginx throughput (c=256)",
      r("passthrough_vs_nginx_rps_c256"),
      0.5,
    ),
    atLeast(
      "P/D c=32 >= 0.6x own passthrough",
      r("pd_vs_own_passthrough_rps_c32"),
      0.6,
    ),
    atLeast(
      "P/D c=32 >= 0.3x nginx passthrough",
      r("pd_vs_nginx_passthrough_rps_c32"),
      0.3,
    ),
    below(
      "P/D p50 - (prefill+decode direct) p50, c=1",
      r("pd_minus_chain_baseline_p50_ms_c1"),
      0.3,
      "ms",
    ),
    below(
      "passthrough p50 - direct p50, c=1",
      r("passthrough_minus_direct_p50_ms_c1"),
      0.15,
      "ms",
    ),
    below(
      "streaming added delay per chunk p99",
      extra.streamDelayP99Ms,
      1,
      "ms",
    ),
    below("sidecar peak RSS", extra.peakRssMiB, 150, "MiB"),
  ];
}

function fixed(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined || !Number.isFinite(value)
    ? "-"
    : value.toFixed(digits);
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => (row[i] ?? "").length))
  );
  const line = (cells: string[]) =>
    cells.map((cell, i) =>
      i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)
    ).join("  ");
  return [
    line(header),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...rows.map(line),
  ].join("\n");
}

function streamRow(
  label: string,
  result: StreamResult | undefined,
  intervalMs: number,
): string[] {
  if (result === undefined) return [label, "-", "-", "-", "-", "-", "-", "-"];
  return [
    label,
    `${result.completed}/${result.streams}`,
    fixed(result.delayMs.p50, 3),
    fixed(result.delayMs.p99, 3),
    fixed(result.gapMs.p50 - intervalMs, 2),
    fixed(result.gapMs.p99 - intervalMs, 2),
    fixed(result.firstEventMs.p50, 1),
    fixed(result.firstEventMs.p99, 1),
  ];
}

/** Each round's p99 of one path, "a / b / c" in ms; "-" for a path that did not run. */
export function formatRounds(values: readonly number[] | undefined): string {
  return values?.map((value) => fixed(value, 1)).join(" / ") ?? "-";
}

/** The per-round p99 line under the streaming table, when there were several rounds. */
function roundsLine(rounds: StreamP99Rounds | undefined): string[] {
  if (rounds === undefined || rounds.direct.length < 2) return [];
  return [
    `fast decoder delay p99 per round, ms (the rows above are each path's median round): ` +
    `direct ${formatRounds(rounds.direct)}; nginx ${
      formatRounds(rounds.nginx)
    }; sidecar ${formatRounds(rounds.sidecar)}`,
  ];
}

/** The text report: machine, throughput table, streaming, ratios, targets. */
export function formatReport(report: BenchReport): string {
  const m = report.machine;
  const out: string[] = [];
  out.push(
    `pd-sidecar benchmark  ${report.startedAt}${
      report.quick ? "  (--quick)" : ""
    }  wall ${report.wallS.toFixed(0)} s`,
    `machine: ${m.nproc} cores, ${m.cpuModel}, ${
      m.memoryGiB.toFixed(0)
    } GiB, Linux ${m.kernel}`,
    `deno ${m.deno} (V8 ${m.v8}); load generator: ${m.loadTool}; nginx: ${m.nginx}`,
    `runs: ${report.settings.durationS} s each after ${report.settings.warmupS} s warm-up; ` +
      `all servers and clients on 127.0.0.1, each its own process`,
    "",
  );
  const rows = report.throughput.map((row) => [
    LABELS[row.scenario],
    row.tool,
    String(row.connections),
    row.rps.toFixed(0),
    fixed(row.p50, 3),
    fixed(row.p90, 3),
    fixed(row.p99, 3),
    String(row.errors + row.non2xx),
    fixed(row.cpuSPer1000, 3),
  ]);
  out.push(
    table([
      "non-streaming",
      "client",
      "conns",
      "req/s",
      "p50 ms",
      "p90 ms",
      "p99 ms",
      "errors",
      "cpu s/1k",
    ], rows),
  );
  const s = report.streaming.settings;
  const rss = report.sidecarPeakRssMiB;
  const streamCount = s.streams.toLocaleString("en-US");
  out.push(
    "",
    `streaming: ${s.streams} concurrent SSE streams started over ${s.rampMs} ms, ${s.chunks} chunks ${s.intervalMs} ms apart`,
    table(
      [
        "streams (P/D)",
        "done",
        "delay p50",
        "delay p99",
        "gap-ITL p50",
        "gap-ITL p99",
        "1st p50",
        "1st p99",
      ],
      [
        streamRow(
          "fast decoder, client chain direct",
          report.streaming.timestamped?.direct,
          s.intervalMs,
        ),
        streamRow(
          "fast decoder, client chain via nginx",
          report.streaming.timestamped?.nginx,
          s.intervalMs,
        ),
        streamRow(
          "fast decoder, through sidecar",
          report.streaming.timestamped?.sidecar,
          s.intervalMs,
        ),
        streamRow(
          "mock vLLM, client chain direct",
          report.streaming.mock?.direct,
          s.intervalMs,
        ),
        streamRow(
          "mock vLLM, through sidecar",
          report.streaming.mock?.sidecar,
          s.intervalMs,
        ),
      ],
    ),
    "(delay: client receive time - decoder send time per chunk, ms; gap-ITL: time between chunks minus the ITL, ms; " +
      "1st: stream's start (its prefill included) to first chunk, ms)",
    ...roundsLine(report.streaming.timestamped?.p99Rounds),
    `sidecar peak RSS (VmHWM), MiB: ${
      fixed(rss.streaming, 1)
    } (${streamCount} streams, fast decoder, ${
      (s.rounds ?? 1) + 1
    } rounds through one sidecar, warm-up included), ` +
      `${
        fixed(rss.streamingMock, 1)
      } (${streamCount} streams, mock vLLM, 2 rounds), ${
        fixed(rss.throughput, 1)
      } (after all non-streaming runs)`,
    "",
    "ratios:",
  );
  for (const [key, value] of Object.entries(report.ratios)) {
    out.push(`  ${key.padEnd(40)} ${fixed(value, 3)}`);
  }
  out.push("", "targets:");
  for (const target of report.targets) {
    const verdict = target.pass === null
      ? "N/A "
      : target.pass
      ? "PASS"
      : "FAIL";
    out.push(
      `  ${verdict}  ${target.name.padEnd(46)} ${
        fixed(target.value, 3).padStart(8)
      } ${target.unit.padEnd(3)} (${target.threshold})`,
    );
  }
  if (report.notes.length > 0) {
    out.push(
      "",
      "notes:",
      ...report.notes.map((note) => `  - ${note}`),
    );
  }
  return out.join("\n");
}
