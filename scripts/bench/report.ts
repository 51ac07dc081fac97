/**
 * @module
 * The text report of a run: the machine, one table per load, the figures
 * and a PASS/FAIL line per target. Pure: no I/O.
 */

import type {
  BenchReport,
  Scenario,
  StreamResultPath,
  StreamRound,
  StreamSection,
  TargetResult,
  ThroughputRow,
} from "./results.ts";
import { LOADS, streamFigures } from "./targets.ts";

const LABELS: Readonly<Record<Scenario, string>> = {
  direct: "decoder direct",
  passthrough: "sidecar passthrough",
  nginx: "nginx passthrough",
  pd: "sidecar P/D",
  "chain_baseline": "prefill direct + decode direct",
  "pd_same_client": "sidecar P/D",
  "toy_pd": "toy proxy P/D",
  "floor_pd": "runtime floor P/D",
  "floor_pd_same_client": "runtime floor P/D",
  "floor_passthrough": "runtime floor passthrough",
};

/** Where a target line's name starts: after "  PASS  1a  ". */
const TARGET_NAME_COLUMN = 12;

function fixed(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined || !Number.isFinite(value)
    ? "-"
    : value.toFixed(digits);
}

/** A text table: first column left-aligned, the others right-aligned. */
export function table(header: readonly string[], rows: string[][]): string {
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => (row[i] ?? "").length))
  );
  const line = (cells: readonly string[]) =>
    cells.map((cell, i) =>
      i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)
    ).join("  ").trimEnd();
  return [
    line(header),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...rows.map(line),
  ].join("\n");
}

function rowLabel(row: ThroughputRow, toyLabel: string): string {
  if (row.scenario === "toy_pd") return toyLabel;
  const loop = row.rate === undefined ? "" : `, open loop ${row.rate}/s`;
  return `${LABELS[row.scenario]} (${row.tool}${loop})`;
}

function throughputTable(
  rows: readonly ThroughputRow[],
  toyLabel: string,
): string {
  return table(
    [
      "row",
      "conns",
      "req/s",
      "p50 ms",
      "p90 ms",
      "p99 ms",
      "errors",
      "cpu s/1k",
    ],
    rows.map((row) => [
      rowLabel(row, toyLabel),
      String(row.connections),
      row.rps.toFixed(0),
      fixed(row.p50, 3),
      fixed(row.p90, 3),
      fixed(row.p99, 3),
      String(row.errors + row.non2xx),
      fixed(row.cpuSPer1000, 3),
    ]),
  );
}

/** "500 streams x 40 events, one step every 50 ms" and the like. */
export function describeShape(section: StreamSection): string {
  const s = section.shape;
  const how = s.mode === "step"
    ? `one event to every open stream each ${s.intervalMs} ms step`
    : `each stream an event every ${s.intervalMs} ms from its own start`;
  return `${s.streams} streams x ${s.chunks} events, ${how}, streams started over ${s.rampMs} ms`;
}

function streamTable(section: StreamSection): string {
  const paths: { label: string; path: StreamResultPath }[] = [
    { label: "client chain direct", path: "direct" },
    { label: "client chain via nginx", path: "nginx" },
    { label: "through the sidecar", path: "sidecar" },
    { label: "through the runtime floor", path: "floor" },
  ];
  const cpuOf: Readonly<
    Record<StreamResultPath, (round: StreamRound) => number | undefined>
  > = {
    direct: () => undefined,
    nginx: (round) => round.nginxCpuS,
    sidecar: (round) => round.sidecarCpuS,
    floor: (round) => round.floorCpuS,
  };
  const rows = section.rounds.flatMap((round, index) =>
    paths.flatMap(({ label, path }) => {
      const result = round[path];
      if (result === undefined) return [];
      const added = path === "direct"
        ? "-"
        : fixed(result.delayMs.p99 - round.direct.delayMs.p99, 2);
      const cpu = cpuOf[path](round);
      return [[
        `round ${index + 1}: ${label}`,
        `${result.completed}/${result.streams}`,
        fixed(result.delayMs.p50, 2),
        fixed(result.delayMs.p99, 2),
        added,
        cpu === undefined || result.events === 0
          ? "-"
          : fixed((cpu / result.events) * 10_000, 3),
      ]];
    })
  );
  return table(
    [
      "path",
      "done",
      "delay p50",
      "delay p99",
      "added p99",
      "cpu s/10k ev",
    ],
    rows,
  );
}

function streamSummary(section: StreamSection): string {
  const f = streamFigures(section);
  return [
    `median over rounds: added p99 sidecar ${
      fixed(f.sidecarAddedP99Ms, 2)
    } ms, runtime floor ${fixed(f.floorAddedP99Ms, 2)} ms, nginx ${
      fixed(f.nginxAddedP99Ms, 2)
    } ms; minus nginx's: sidecar ${
      fixed(f.excessOverNginxP99Ms, 2)
    } ms, runtime floor ${fixed(f.floorExcessOverNginxP99Ms, 2)} ms`,
    `CPU s per 10k events sidecar ${
      fixed(f.sidecarCpuSPer10kEvents, 3)
    }, runtime floor ${fixed(f.floorCpuSPer10kEvents, 3)}, nginx ${
      fixed(f.nginxCpuSPer10kEvents, 3)
    }; peak RSS sidecar ${fixed(f.sidecarPeakRssMiB, 1)} MiB, runtime floor ${
      fixed(f.floorPeakRssMiB, 1)
    } MiB`,
  ].join("\n");
}

function targetValue(value: number | null, unit: string): string {
  if (value === null) return "-";
  // A count (no unit) reads as a whole number.
  return unit === "" ? String(value) : value.toFixed(3);
}

/**
 * One "PASS  1a  name  value unit (threshold)" line; on a target with a
 * runtime floor, a second line with the floor's figure under the value
 * ("N/A" when its rows did not run), without a verdict.
 */
export function formatTarget(target: TargetResult): string {
  const verdict = target.pass === null ? "N/A " : target.pass ? "PASS" : "FAIL";
  const line = `  ${verdict}  ${target.id.padEnd(3)} ${
    target.name.padEnd(62)
  } ${targetValue(target.value, target.unit).padStart(8)} ${
    target.unit.padEnd(3)
  } (${target.threshold})`;
  if (target.floor === undefined) return line;
  const floor = target.floor === null
    ? "N/A".padStart(8)
    : `${targetValue(target.floor, target.unit).padStart(8)} ${target.unit}`;
  return `${line}\n${" ".repeat(TARGET_NAME_COLUMN)}${
    "runtime floor (bare Deno.serve + fetch), no verdict".padEnd(62)
  } ${floor}`;
}

/** The whole text report. */
export function formatReport(report: BenchReport): string {
  const m = report.machine;
  const s = report.settings;
  const rows = report.throughput;
  const of = (test: (row: ThroughputRow) => boolean) => rows.filter(test);
  const out: string[] = [
    `pd-sidecar benchmark  ${report.startedAt}${
      report.quick ? "  (--quick)" : ""
    }  wall ${report.wallS.toFixed(0)} s`,
    `machine: ${m.nproc} cores, ${m.cpuModel}, ${
      m.memoryGiB.toFixed(0)
    } GiB, Linux ${m.kernel}; ${m.openFiles}`,
    `deno ${m.deno} (V8 ${m.v8}); load generator ${m.loadTool}; nginx ${m.nginx} (worker_processes ${s.nginxWorkers}); python ${m.python}`,
    `sidecar: -workers=${s.sidecarWorkers}, ${
      s.sidecarV8Flags === "" ? "no V8 flags" : `--v8-flags=${s.sidecarV8Flags}`
    }; rows ${s.durationS} s each after a ${s.warmupS} s warm-up; every server and client its own process on 127.0.0.1`,
    "",
    `load 1: added time to first token, one request at a time (c=${LOADS.latency})`,
    throughputTable(
      of((r) => r.connections === LOADS.latency),
      report.toyProxy,
    ),
    "",
    `load 4: non-streaming throughput (c=${LOADS.throughput})`,
    throughputTable(
      of((r) => r.connections === LOADS.throughput),
      report.toyProxy,
    ),
    "",
    `load 2: a burst of ${s.burstConnections} connections, zero-latency upstreams (shares are of the c=${LOADS.throughput} rows above)`,
    throughputTable(
      of((r) => r.connections === s.burstConnections),
      report.toyProxy,
    ),
  ];
  for (const section of report.streaming) {
    out.push(
      "",
      `load 3 (${section.name}): ${describeShape(section)}`,
      streamTable(section),
      streamSummary(section),
    );
  }
  out.push(
    "",
    "(delay: the client's receive time minus the decoder's send time per event, ms; added: minus direct in the same round; " +
      "cpu: the proxy's CPU seconds per 10,000 events it relayed)",
    `sidecar peak RSS after the non-streaming rows: ${
      fixed(report.throughputPeakRssMiB, 1)
    } MiB`,
    "",
    "figures:",
    ...Object.entries(report.figures).map(([key, value]) =>
      `  ${key.padEnd(50)} ${fixed(value, 3)}`
    ),
    "",
    "targets (issue 9):",
    ...report.targets.map(formatTarget),
  );
  if (report.notRun.length > 0) {
    out.push("", "not run:", ...report.notRun.map((line) => `  - ${line}`));
  }
  if (report.notes.length > 0) {
    out.push("", "notes:", ...report.notes.map((note) => `  - ${note}`));
  }
  return out.join("\n");
}
