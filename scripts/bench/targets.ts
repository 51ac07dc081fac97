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
}

/** The figures of one stream section. */
export function streamFigures(section: StreamSection): StreamFigures {
  const p99 = (result: { delayMs: { p99: number } } | undefined) =>
    result?.delayMs.p99;
  const perRound = (
    of: (round: StreamSection["rounds"][number]) => number | null,
  ) => medianOf(section.rounds.map(of));
  const cpuPer10k = (seconds: number, events: number) =>
    events === 0 ? null : (seconds / events) * 10_000;
  const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);
  const withNginx = section.rounds.filter((round) => round.nginx);
  return {
    sidecarAddedP99Ms: perRound((r) =>
      difference(p99(r.sidecar), p99(r.direct))
    ),
    nginxAddedP99Ms: perRound((r) => difference(p99(r.nginx), p99(r.direct))),
    // Added delays over the same round's direct: the direct p99 cancels out.
    excessOverNginxP99Ms: perRound((r) =>
      difference(p99(r.sidecar), p99(r.nginx))
    ),
    sidecarCpuSPer10kEvents: cpuPer10k(
      sum(section.rounds.map((r) => r.sidecarCpuS)),
      sum(section.rounds.map((r) => r.sidecar.events)),
    ),
    nginxCpuSPer10kEvents: withNginx.length === 0 ? null : cpuPer10k(
      sum(withNginx.map((r) => r.nginxCpuS ?? 0)),
      sum(withNginx.map((r) => r.nginx?.events ?? 0)),
    ),
    sidecarPeakRssMiB: section.sidecarPeakRssMiB,
    sidecarFailedStreams: sum(
      section.rounds.map((r) => r.sidecar.streams - r.sidecar.completed),
    ),
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
  const { latency, throughput } = LOADS;
  const burst = options.burstConnections;
  const at = (scenario: Scenario, connections: number, rate?: number) =>
    findRow(rows, scenario, connections, rate);
  const share = (scenario: Scenario) =>
    ratio(at(scenario, burst)?.rps, at(scenario, throughput)?.rps);
  const burstRows = [
    at("pd", throughput),
    at("pd", burst),
    at("pd_same_client", burst, options.openLoopRate),
  ];
  const out: Record<string, number | null> = {
    "ttft_pd_added_p50_ms": difference(
      at("pd_same_client", latency)?.p50,
      at("chain_baseline", latency)?.p50,
    ),
    "ttft_floor_pd_added_p50_ms": difference(
      at("floor_pd_same_client", latency)?.p50,
      at("chain_baseline", latency)?.p50,
    ),
    "ttft_passthrough_added_p50_ms": difference(
      at("passthrough", latency)?.p50,
      at("direct", latency)?.p50,
    ),
    "ttft_nginx_added_p50_ms": difference(
      at("nginx", latency)?.p50,
      at("direct", latency)?.p50,
    ),
    "c32_pd_vs_toy_proxy": ratio(
      at("pd", throughput)?.rps,
      at("toy_pd", throughput)?.rps,
    ),
    "c32_floor_pd_vs_toy_proxy": ratio(
      at("floor_pd", throughput)?.rps,
      at("toy_pd", throughput)?.rps,
    ),
    "c32_toy_proxy_vs_nginx": ratio(
      at("toy_pd", throughput)?.rps,
      at("nginx", throughput)?.rps,
    ),
    "c32_pd_vs_nginx": ratio(
      at("pd", throughput)?.rps,
      at("nginx", throughput)?.rps,
    ),
    "c32_passthrough_vs_nginx": ratio(
      at("passthrough", throughput)?.rps,
      at("nginx", throughput)?.rps,
    ),
    "c32_pd_vs_chain_baseline": ratio(
      at("pd", throughput)?.rps,
      at("chain_baseline", throughput)?.rps,
    ),
    "burst_pd_share": share("pd"),
    "burst_floor_pd_share": share("floor_pd"),
    "burst_nginx_share": share("nginx"),
    "burst_passthrough_share": share("passthrough"),
    "burst_pd_p99_vs_nginx_p99": ratio(
      at("pd", burst)?.p99,
      at("nginx", burst)?.p99,
    ),
    "burst_floor_pd_p99_vs_nginx_p99": ratio(
      at("floor_pd", burst)?.p99,
      at("nginx", burst)?.p99,
    ),
    "burst_pd_errors": burstRows.some((row) => row === undefined)
      ? null
      : burstRows.reduce(
        (n, row) => n + (row?.errors ?? 0) + (row?.non2xx ?? 0),
        0,
      ),
    "open_loop_pd_minus_chain_p99_ms": difference(
      at("pd_same_client", burst, options.openLoopRate)?.p99,
      at("chain_baseline", burst, options.openLoopRate)?.p99,
    ),
  };
  for (const section of options.streaming) {
    const f = streamFigures(section);
    const key = (name: string) => `${section.name}_${name}`;
    out[key("sidecar_added_p99_ms")] = f.sidecarAddedP99Ms;
    out[key("nginx_added_p99_ms")] = f.nginxAddedP99Ms;
    out[key("excess_over_nginx_p99_ms")] = f.excessOverNginxP99Ms;
    out[key("sidecar_cpu_s_per_10k_events")] = f.sidecarCpuSPer10kEvents;
    out[key("nginx_cpu_s_per_10k_events")] = f.nginxCpuSPer10kEvents;
    out[key("cpu_vs_nginx")] = ratio(
      f.sidecarCpuSPer10kEvents ?? undefined,
      f.nginxCpuSPer10kEvents ?? undefined,
    );
    out[key("sidecar_peak_rss_mib")] = f.sidecarPeakRssMiB;
    out[key("sidecar_failed_streams")] = f.sidecarFailedStreams;
  }
  return out;
}

function judged(
  target: Omit<TargetResult, "pass">,
  pass: (value: number) => boolean,
  options: { readonly failedAnyway?: boolean } = {},
): TargetResult {
  if (options.failedAnyway) return { ...target, pass: false };
  return {
    ...target,
    pass: target.value === null ? null : pass(target.value),
  };
}

function fixed(value: number | null, digits: number): string {
  return value === null ? "-" : value.toFixed(digits);
}

/**
 * Issue 9's targets, judged on `figures` (from `computeFigures`). Those that
 * read P/D rows (1a, 2a, 2b, 4) carry the runtime floor's figure, unjudged.
 */
export function judgeTargets(
  figures: Readonly<Record<string, number | null>>,
  options: { readonly burstConnections: number; readonly toyLabel: string },
): TargetResult[] {
  const f = (key: string) => figures[key] ?? null;
  const nginxShare = f("burst_nginx_share");
  const streams = (name: string) => f(`${TARGET_STREAMS}_${name}`);
  // A stream the sidecar broke fails the streaming targets whatever the others' delays.
  const broken = { failedAnyway: (streams("sidecar_failed_streams") ?? 0) > 0 };
  const c = options.burstConnections;
  return [
    judged({
      id: "1a",
      name: "c=1: P/D p50 - (prefill direct + decode direct) p50",
      value: f("ttft_pd_added_p50_ms"),
      unit: "ms",
      threshold: `<= ${BOUNDS.pdAddedP50Ms}`,
      floor: f("ttft_floor_pd_added_p50_ms"),
    }, (v) => v <= BOUNDS.pdAddedP50Ms),
    judged({
      id: "1b",
      name: "c=1: passthrough p50 - direct p50",
      value: f("ttft_passthrough_added_p50_ms"),
      unit: "ms",
      threshold: `<= ${BOUNDS.passthroughAddedP50Ms}`,
    }, (v) => v <= BOUNDS.passthroughAddedP50Ms),
    {
      id: "2a",
      name: `c=${c}: P/D req/s as a share of its c=32 req/s`,
      value: f("burst_pd_share"),
      unit: "x",
      threshold: `>= ${fixed(nginxShare, 2)} (nginx passthrough's share)`,
      floor: f("burst_floor_pd_share"),
      pass: f("burst_pd_share") === null || nginxShare === null
        ? null
        : (f("burst_pd_share") as number) >= nginxShare,
    },
    judged(
      {
        id: "2b",
        name: `c=${c}: P/D p99 / nginx passthrough p99`,
        value: f("burst_pd_p99_vs_nginx_p99"),
        unit: "x",
        threshold: `<= ${BOUNDS.burstP99VsNginx}`,
        floor: f("burst_floor_pd_p99_vs_nginx_p99"),
      },
      (v) => v <= BOUNDS.burstP99VsNginx,
      {
        // A row that answered nothing has its length as its p99, which can sit
        // under nginx's p99 times the bound in a 2 s --quick row.
        failedAnyway: f("burst_pd_share") === 0,
      },
    ),
    judged({
      id: "2c",
      name: `P/D errors at c=32, c=${c} and open loop`,
      value: f("burst_pd_errors"),
      unit: "",
      threshold: "= 0",
    }, (v) => v === 0),
    judged(
      {
        id: "3a",
        name: "500 streams, 50 ms steps: added p99 - nginx's added p99",
        value: streams("excess_over_nginx_p99_ms"),
        unit: "ms",
        threshold: `<= ${BOUNDS.streamExcessP99Ms}`,
      },
      (v) => v <= BOUNDS.streamExcessP99Ms,
      broken,
    ),
    judged(
      {
        id: "3b",
        name: "500 streams, 50 ms steps: CPU per event / nginx's",
        value: streams("cpu_vs_nginx"),
        unit: "x",
        threshold: `<= ${BOUNDS.streamCpuVsNginx}`,
      },
      (v) => v <= BOUNDS.streamCpuVsNginx,
      broken,
    ),
    judged({
      id: "3c",
      name: "500 streams, 50 ms steps: sidecar peak RSS",
      value: streams("sidecar_peak_rss_mib"),
      unit: "MiB",
      threshold: `< ${BOUNDS.streamPeakRssMiB}`,
    }, (v) => v < BOUNDS.streamPeakRssMiB),
    judged({
      id: "4",
      name: `c=32: P/D req/s / ${options.toyLabel} req/s`,
      value: f("c32_pd_vs_toy_proxy"),
      unit: "x",
      threshold: `>= ${BOUNDS.pdVsToyProxy}`,
      floor: f("c32_floor_pd_vs_toy_proxy"),
    }, (v) => v >= BOUNDS.pdVsToyProxy),
  ];
}
