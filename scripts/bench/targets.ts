/**
 * @module
 * The figures a run's targets are judged on, and the verdicts: every target
 * of issue 9 is a difference or a ratio between rows measured in the same
 * run, so a slow minute of the machine moves both sides. Pure.
 */

import { quantile } from "./stats.ts";
import type {
  Scenario,
  StreamSection,
  TargetResult,
  ThroughputRow,
} from "./results.ts";
import type { StreamResult } from "./stream_client.ts";

/** The concurrencies of the non-streaming loads. */
export const LOADS = {
  /** Load 1: one request at a time, the added time to first token. */
  latency: 1,
  /** Load 4 and the base of load 2's shares. */
  throughput: 32,
} as const;

/** The stream section the streaming targets are judged on. */
export const TARGET_STREAMS = "step_500x50";

/** The bounds of issue 9's targets. */
export const BOUNDS = {
  pdAddedP50Ms: 0.3,
  passthroughAddedP50Ms: 0.15,
  burstP99VsNginx: 1.5,
  streamExcessP99Ms: 2,
  streamCpuVsNginx: 1.5,
  streamPeakRssMiB: 150,
  pdVsToyProxy: 10,
} as const;

/** The row of `scenario` at `connections` (closed loop, or open loop at `rate`). */
export function findRow(
  rows: readonly ThroughputRow[],
  scenario: Scenario,
  connections: number,
  rate?: number,
): ThroughputRow | undefined {
  return rows.find((row) =>
    row.scenario === scenario && row.connections === connections &&
    row.rate === rate
  );
}

function ratio(a: number | undefined, b: number | undefined): number | null {
  if (a === undefined || b === undefined || b === 0) return null;
  const value = a / b;
  return Number.isFinite(value) ? value : null;
}

function difference(
  a: number | undefined,
  b: number | undefined,
): number | null {
  if (a === undefined || b === undefined) return null;
  const value = a - b;
  return Number.isFinite(value) ? value : null;
}

/** The median of `values` that are finite; null without any. */
export function medianOf(values: readonly (number | null)[]): number | null {
  const finite = Float64Array.from(
    values.filter((v): v is number => v !== null && Number.isFinite(v)),
  ).sort();
  return finite.length === 0 ? null : quantile(finite, 0.5);
}

/** What the streaming section measured, as added delay and CPU per event. */
export interface StreamFigures {
  /** Median over rounds of (sidecar p99 − direct p99) per event, ms. */
  readonly sidecarAddedP99Ms: number | null;
  /** Median over rounds of (nginx p99 − direct p99), ms. */
  readonly nginxAddedP99Ms: number | null;
  /** Median over rounds of the sidecar's added p99 minus nginx's, same round, ms. */
  readonly excessOverNginxP99Ms: number | null;
  readonly sidecarCpuSPer10kEvents: number | null;
  readonly nginxCpuSPer10kEvents: number | null;
  readonly sidecarPeakRssMiB: number;
  /** Streams through the sidecar that did not end with `[DONE]`, over all rounds. */
  readonly sidecarFailedStreams: number;
  /** The runtime floor's added p99, as the sidecar's; null without its path. */
  readonly floorAddedP99Ms: number | null;
  /** The runtime floor's added p99 minus nginx's, as the sidecar's. */
  readonly floorExcessOverNginxP99Ms: number | null;
  readonly floorCpuSPer10kEvents: number | null;
  readonly floorPeakRssMiB: number | null;
  readonly floorFailedStreams: number | null;
}

type Round = StreamSection["rounds"][number];

/** A proxy's turn in a round: what its client measured and the CPU it used. */
type Turn = { readonly result: StreamResult; readonly cpuS: number };

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** CPU seconds per 10,000 relayed events over the rounds a path ran in; null in none. */
function cpuPer10kEvents(turns: readonly (Turn | undefined)[]): number | null {
  const ran = turns.filter((turn): turn is Turn => turn !== undefined);
  const events = sum(ran.map((turn) => turn.result.events));
  return events === 0
    ? null
    : (sum(ran.map((turn) => turn.cpuS)) / events) * 10_000;
}

/** Streams of the path's rounds that did not end with `[DONE]`; null when it never ran. */
function failedStreams(
  results: readonly (StreamResult | undefined)[],
): number | null {
  const ran = results.filter((r): r is StreamResult => r !== undefined);
  return ran.length === 0
    ? null
    : sum(ran.map((result) => result.streams - result.completed));
}

/** The figures of one stream section. */
export function streamFigures(section: StreamSection): StreamFigures {
  const p99 = (result: StreamResult | undefined) => result?.delayMs.p99;
  const perRound = (of: (round: Round) => number | null) =>
    medianOf(section.rounds.map(of));
  // Added delays over the same round's direct: the direct p99 cancels out.
  const added = (path: (round: Round) => StreamResult | undefined) =>
    perRound((r) => difference(p99(path(r)), p99(r.direct)));
  const overNginx = (path: (round: Round) => StreamResult | undefined) =>
    perRound((r) => difference(p99(path(r)), p99(r.nginx)));
  const { rounds } = section;
  return {
    sidecarAddedP99Ms: added((r) => r.sidecar),
    nginxAddedP99Ms: added((r) => r.nginx),
    excessOverNginxP99Ms: overNginx((r) => r.sidecar),
    sidecarCpuSPer10kEvents: cpuPer10kEvents(
      rounds.map((r) => ({ result: r.sidecar, cpuS: r.sidecarCpuS })),
    ),
    nginxCpuSPer10kEvents: cpuPer10kEvents(
      rounds.map((r) =>
        r.nginx === undefined
          ? undefined
          : { result: r.nginx, cpuS: r.nginxCpuS ?? 0 }
      ),
    ),
    sidecarPeakRssMiB: section.sidecarPeakRssMiB,
    sidecarFailedStreams: failedStreams(rounds.map((r) => r.sidecar)) ?? 0,
    floorAddedP99Ms: added((r) => r.floor),
    floorExcessOverNginxP99Ms: overNginx((r) => r.floor),
    floorCpuSPer10kEvents: cpuPer10kEvents(
      rounds.map((r) =>
        r.floor === undefined
          ? undefined
          : { result: r.floor, cpuS: r.floorCpuS ?? 0 }
      ),
    ),
    floorPeakRssMiB: section.floorPeakRssMiB ?? null,
    floorFailedStreams: failedStreams(rounds.map((r) => r.floor)),
  };
}

/** Which rows of the run a figure reads, by their load. */
type Load = "latency" | "throughput" | "burst" | "openLoop";

/** The row of a scenario at a load of this run. */
type RowAt = (scenario: Scenario, load: Load) => ThroughputRow | undefined;

/** How one figure is computed from the run's rows. */
type FigureOf = (at: RowAt) => number | null;

/** A figure comparing one measure of two rows with `combine`. */
function compare(
  combine: (a: number | undefined, b: number | undefined) => number | null,
  measure: "p50" | "p99" | "rps",
  rows: readonly [Scenario, Load, Scenario, Load],
): FigureOf {
  const [a, aLoad, b, bLoad] = rows;
  return (at) => combine(at(a, aLoad)?.[measure], at(b, bLoad)?.[measure]);
}

/** `a`'s p50 minus `b`'s, one request at a time. */
function addedP50(a: Scenario, b: Scenario): FigureOf {
  return compare(difference, "p50", [a, "latency", b, "latency"]);
}

/** `a`'s req/s over `b`'s at the throughput load. */
function throughputRatio(a: Scenario, b: Scenario): FigureOf {
  return compare(ratio, "rps", [a, "throughput", b, "throughput"]);
}

/** The share of its throughput-load req/s a scenario keeps in the burst. */
function burstShare(scenario: Scenario): FigureOf {
  return compare(ratio, "rps", [scenario, "burst", scenario, "throughput"]);
}

/** `a`'s p99 over `b`'s in the burst. */
function burstP99Ratio(a: Scenario, b: Scenario): FigureOf {
  return compare(ratio, "p99", [a, "burst", b, "burst"]);
}

/** `a`'s p99 minus `b`'s in the open loop. */
function openLoopAddedP99(a: Scenario, b: Scenario): FigureOf {
  return compare(difference, "p99", [a, "openLoop", b, "openLoop"]);
}

/** Errors and non-2xx answers of the P/D rows target 2c reads; null when one did not run. */
function pdErrors(at: RowAt): number | null {
  const rows = [
    at("pd", "throughput"),
    at("pd", "burst"),
    at("pd_same_client", "openLoop"),
  ];
  return rows.some((row) => row === undefined)
    ? null
    : rows.reduce((n, row) => n + (row?.errors ?? 0) + (row?.non2xx ?? 0), 0);
}

/** The figures of the non-streaming rows, in the order they are kept and printed. */
const THROUGHPUT_FIGURES: Readonly<Record<string, FigureOf>> = {
  "ttft_pd_added_p50_ms": addedP50("pd_same_client", "chain_baseline"),
  "ttft_floor_pd_added_p50_ms": addedP50(
    "floor_pd_same_client",
    "chain_baseline",
  ),
  "ttft_passthrough_added_p50_ms": addedP50("passthrough", "direct"),
  "ttft_floor_passthrough_added_p50_ms": addedP50(
    "floor_passthrough",
    "direct",
  ),
  "ttft_nginx_added_p50_ms": addedP50("nginx", "direct"),
  "c32_pd_vs_toy_proxy": throughputRatio("pd", "toy_pd"),
  "c32_floor_pd_vs_toy_proxy": throughputRatio("floor_pd", "toy_pd"),
  "c32_toy_proxy_vs_nginx": throughputRatio("toy_pd", "nginx"),
  "c32_pd_vs_nginx": throughputRatio("pd", "nginx"),
  "c32_passthrough_vs_nginx": throughputRatio("passthrough", "nginx"),
  "c32_pd_vs_chain_baseline": throughputRatio("pd", "chain_baseline"),
  "burst_pd_share": burstShare("pd"),
  "burst_floor_pd_share": burstShare("floor_pd"),
  "burst_nginx_share": burstShare("nginx"),
  "burst_passthrough_share": burstShare("passthrough"),
  "burst_pd_p99_vs_nginx_p99": burstP99Ratio("pd", "nginx"),
  "burst_floor_pd_p99_vs_nginx_p99": burstP99Ratio("floor_pd", "nginx"),
  "burst_pd_errors": pdErrors,
  "open_loop_pd_minus_chain_p99_ms": openLoopAddedP99(
    "pd_same_client",
    "chain_baseline",
  ),
};

/** A stream section's figures, each kept as "<section>_<name>". */
function sectionFigures(section: StreamSection): Record<string, number | null> {
  const f = streamFigures(section);
  const nginxCpu = f.nginxCpuSPer10kEvents ?? undefined;
  return {
    "sidecar_added_p99_ms": f.sidecarAddedP99Ms,
    "floor_added_p99_ms": f.floorAddedP99Ms,
    "nginx_added_p99_ms": f.nginxAddedP99Ms,
    "excess_over_nginx_p99_ms": f.excessOverNginxP99Ms,
    "floor_excess_over_nginx_p99_ms": f.floorExcessOverNginxP99Ms,
    "sidecar_cpu_s_per_10k_events": f.sidecarCpuSPer10kEvents,
    "floor_cpu_s_per_10k_events": f.floorCpuSPer10kEvents,
    "nginx_cpu_s_per_10k_events": f.nginxCpuSPer10kEvents,
    "cpu_vs_nginx": ratio(f.sidecarCpuSPer10kEvents ?? undefined, nginxCpu),
    "floor_cpu_vs_nginx": ratio(f.floorCpuSPer10kEvents ?? undefined, nginxCpu),
    "sidecar_peak_rss_mib": f.sidecarPeakRssMiB,
    "floor_peak_rss_mib": f.floorPeakRssMiB,
    "sidecar_failed_streams": f.sidecarFailedStreams,
    "floor_failed_streams": f.floorFailedStreams,
  };
}

/** The run's figures by name: what the targets read, and what is reported without one. */
export function computeFigures(
  rows: readonly ThroughputRow[],
  options: {
    readonly streaming: readonly StreamSection[];
    readonly burstConnections: number;
    readonly openLoopRate: number;
  },
): Record<string, number | null> {
  const loads: Readonly<Record<Load, readonly [number, number?]>> = {
    latency: [LOADS.latency],
    throughput: [LOADS.throughput],
    burst: [options.burstConnections],
    openLoop: [options.burstConnections, options.openLoopRate],
  };
  const at: RowAt = (scenario, load) => findRow(rows, scenario, ...loads[load]);
  const out: Record<string, number | null> = {};
  for (const [key, figure] of Object.entries(THROUGHPUT_FIGURES)) {
    out[key] = figure(at);
  }
  for (const section of options.streaming) {
    for (const [name, value] of Object.entries(sectionFigures(section))) {
      out[`${section.name}_${name}`] = value;
    }
  }
  return out;
}

/** What a target's figure must be: a bound of issue 9, or a figure of the same run. */
interface Bound {
  readonly op: "<=" | "<" | ">=" | "=";
  /** null when the figure it is taken from did not run. */
  readonly limit: number | null;
  /** As printed after the figure, e.g. "<= 0.3". */
  readonly threshold: string;
}

const MEETS: Readonly<
  Record<Bound["op"], (value: number, limit: number) => boolean>
> = {
  "<=": (value, limit) => value <= limit,
  "<": (value, limit) => value < limit,
  ">=": (value, limit) => value >= limit,
  "=": (value, limit) => value === limit,
};

/** A fixed bound, printed as it reads ("<= 0.3"). */
function bound(op: Bound["op"], limit: number): Bound {
  return { op, limit, threshold: `${op} ${limit}` };
}

/** A target of issue 9: the figure it reads and how that figure is judged. */
interface TargetSpec {
  readonly id: string;
  readonly name: string;
  /** Key of its value in the run's figures. */
  readonly figure: string;
  readonly unit: string;
  readonly bound: Bound;
  /** Key of the runtime floor's figure, on targets that read P/D rows or streams. */
  readonly floor?: string;
  /** Fails whatever its figure: the run broke what the figure assumes. */
  readonly failedAnyway?: boolean;
}

function judge(
  spec: TargetSpec,
  figures: Readonly<Record<string, number | null>>,
): TargetResult {
  const value = figures[spec.figure] ?? null;
  const { op, limit, threshold } = spec.bound;
  return {
    id: spec.id,
    name: spec.name,
    value,
    unit: spec.unit,
    threshold,
    ...(spec.floor === undefined ? {} : { floor: figures[spec.floor] ?? null }),
    pass: spec.failedAnyway
      ? false
      : value === null || limit === null
      ? null
      : MEETS[op](value, limit),
  };
}

function fixed(value: number | null, digits: number): string {
  return value === null ? "-" : value.toFixed(digits);
}

/** Issue 9's targets of a run with these figures, in the order they are printed. */
function targetSpecs(
  figures: Readonly<Record<string, number | null>>,
  options: { readonly burstConnections: number; readonly toyLabel: string },
): TargetSpec[] {
  const nginxShare = figures["burst_nginx_share"] ?? null;
  const streams = (name: string) => `${TARGET_STREAMS}_${name}`;
  // A stream the sidecar broke fails the streaming targets whatever the others' delays.
  const broken = (figures[streams("sidecar_failed_streams")] ?? 0) > 0;
  const c = options.burstConnections;
  const steps = "500 streams, 50 ms steps";
  return [{
    id: "1a",
    name: "c=1: P/D p50 - (prefill direct + decode direct) p50",
    figure: "ttft_pd_added_p50_ms",
    unit: "ms",
    bound: bound("<=", BOUNDS.pdAddedP50Ms),
    floor: "ttft_floor_pd_added_p50_ms",
  }, {
    id: "1b",
    name: "c=1: passthrough p50 - direct p50",
    figure: "ttft_passthrough_added_p50_ms",
    unit: "ms",
    bound: bound("<=", BOUNDS.passthroughAddedP50Ms),
    floor: "ttft_floor_passthrough_added_p50_ms",
  }, {
    id: "2a",
    name: `c=${c}: P/D req/s as a share of its c=32 req/s`,
    figure: "burst_pd_share",
    unit: "x",
    bound: {
      op: ">=",
      limit: nginxShare,
      threshold: `>= ${fixed(nginxShare, 2)} (nginx passthrough's share)`,
    },
    floor: "burst_floor_pd_share",
  }, {
    id: "2b",
    name: `c=${c}: P/D p99 / nginx passthrough p99`,
    figure: "burst_pd_p99_vs_nginx_p99",
    unit: "x",
    bound: bound("<=", BOUNDS.burstP99VsNginx),
    floor: "burst_floor_pd_p99_vs_nginx_p99",
    // A row that answered nothing has its length as its p99, which can sit
    // under nginx's p99 times the bound in a 2 s --quick row.
    failedAnyway: figures["burst_pd_share"] === 0,
  }, {
    id: "2c",
    name: `P/D errors at c=32, c=${c} and open loop`,
    figure: "burst_pd_errors",
    unit: "",
    bound: bound("=", 0),
  }, {
    id: "3a",
    name: `${steps}: added p99 - nginx's added p99`,
    figure: streams("excess_over_nginx_p99_ms"),
    unit: "ms",
    bound: bound("<=", BOUNDS.streamExcessP99Ms),
    floor: streams("floor_excess_over_nginx_p99_ms"),
    failedAnyway: broken,
  }, {
    id: "3b",
    name: `${steps}: CPU per event / nginx's`,
    figure: streams("cpu_vs_nginx"),
    unit: "x",
    bound: bound("<=", BOUNDS.streamCpuVsNginx),
    floor: streams("floor_cpu_vs_nginx"),
    failedAnyway: broken,
  }, {
    id: "3c",
    name: `${steps}: sidecar peak RSS`,
    figure: streams("sidecar_peak_rss_mib"),
    unit: "MiB",
    bound: bound("<", BOUNDS.streamPeakRssMiB),
    floor: streams("floor_peak_rss_mib"),
  }, {
    id: "4",
    name: `c=32: P/D req/s / ${options.toyLabel} req/s`,
    figure: "c32_pd_vs_toy_proxy",
    unit: "x",
    bound: bound(">=", BOUNDS.pdVsToyProxy),
    floor: "c32_floor_pd_vs_toy_proxy",
  }];
}

/**
 * Issue 9's targets, judged on `figures` (from `computeFigures`). All but
 * 2c carry the runtime floor's figure, unjudged.
 */
export function judgeTargets(
  figures: Readonly<Record<string, number | null>>,
  options: { readonly burstConnections: number; readonly toyLabel: string },
): TargetResult[] {
  return targetSpecs(figures, options).map((spec) => judge(spec, figures));
}
