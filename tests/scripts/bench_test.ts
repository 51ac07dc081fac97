import assert from "node:assert/strict";
import {
  placeOf,
  rankFunctions,
  rankPlaces,
  topLines,
} from "../../scripts/bench/cpu_profile.ts";
import { describeProfile } from "../../scripts/bench/profile.ts";
import { buildWrkScript } from "../../scripts/bench/load_tool.ts";
import { buildNginxConfig } from "../../scripts/bench/nginx.ts";
import {
  buildDecodeBody,
  buildPrefillBody,
  openLoopSchedule,
  PREFILL_KV_TRANSFER_PARAMS,
  runClient,
} from "../../scripts/bench/pd_client.ts";
import { floorProxyCommand, toRow } from "../../scripts/bench/measure.ts";
import {
  createFetchClient,
  prefillBody,
  proxy,
} from "../../scripts/bench/floor_proxy.ts";
import { formatReport } from "../../scripts/bench/report.ts";
import type {
  BenchReport,
  StreamRound,
  StreamSection,
  ThroughputRow,
} from "../../scripts/bench/results.ts";
import { SIDECAR_V8_FLAGS } from "../../scripts/build.ts";
import { sidecarArgs, sidecarCommand } from "../../scripts/bench/processes.ts";
import {
  missingTools,
  packagesFor,
  raisedSoftLimit,
} from "../../scripts/bench/setup.ts";
import { shardIndices } from "../../scripts/bench/shards.ts";
import { quantile, summarize } from "../../scripts/bench/stats.ts";
import type { StreamResult } from "../../scripts/bench/stream_client.ts";
import {
  computeFigures,
  judgeTargets,
  streamFigures,
  TARGET_STREAMS,
} from "../../scripts/bench/targets.ts";
import { buildPrefillBody as buildSidecarPrefillBody } from "../../src/protocol/bodies.ts";
import { parseGenerationRequest } from "../../src/protocol/request.ts";
import { withDeadline } from "../support/deadline.ts";
import { tempDir } from "../support/temp.ts";
import {
  obtainToyProxy,
  toyProxyArgs,
  toyProxyLabel,
} from "../../scripts/bench/toy_proxy.ts";

const BURST = { burstConnections: 2000, openLoopRate: 2000 };

function row(
  scenario: ThroughputRow["scenario"],
  connections: number,
  figures: { rps?: number; p50?: number; p99?: number; errors?: number },
  rate?: number,
): ThroughputRow {
  const p50 = figures.p50 ?? 1;
  return {
    scenario,
    tool: "wrk",
    connections,
    ...(rate === undefined ? {} : { rate }),
    requests: figures.rps ?? 1000,
    rps: figures.rps ?? 1000,
    p50,
    p90: p50,
    p99: figures.p99 ?? p50,
    errors: figures.errors ?? 0,
    non2xx: 0,
  };
}

/** A stream result whose delay p99 is `p99` (one sample) with `events` events. */
function streams(p99: number, events = 10_000): StreamResult {
  return {
    streams: 500,
    completed: 500,
    failed: 0,
    events,
    delayMs: summarize([p99]),
    gapMs: summarize([50]),
    firstEventMs: summarize([1]),
    wallS: 5,
  };
}

/** A round; without `floor` it is shaped as a schema-3 report kept it. */
function round(
  p99: { direct: number; nginx?: number; sidecar: number; floor?: number },
  cpu: { sidecar: number; nginx?: number; floor?: number },
): StreamRound {
  return {
    direct: streams(p99.direct),
    ...(p99.nginx === undefined
      ? {}
      : { nginx: streams(p99.nginx), nginxCpuS: cpu.nginx ?? 0 }),
    sidecar: streams(p99.sidecar),
    sidecarCpuS: cpu.sidecar,
    ...(p99.floor === undefined
      ? {}
      : { floor: streams(p99.floor), floorCpuS: cpu.floor ?? 0 }),
  };
}

function section(
  rounds: StreamRound[],
  peakRssMiB = 120,
  name = TARGET_STREAMS,
  floorPeakRssMiB?: number,
): StreamSection {
  return {
    name,
    shape: {
      mode: "step",
      streams: 500,
      intervalMs: 50,
      chunks: 100,
      rampMs: 1000,
    },
    rounds,
    sidecarPeakRssMiB: peakRssMiB,
    ...(floorPeakRssMiB === undefined ? {} : { floorPeakRssMiB }),
  };
}

/** The rows of a run where every target passes. */
function passingRows(): ThroughputRow[] {
  return [
    row("direct", 1, { p50: 0.1 }),
    row("passthrough", 1, { p50: 0.2 }),
    row("chain_baseline", 1, { p50: 0.3 }),
    row("pd_same_client", 1, { p50: 0.5 }),
    row("nginx", 32, { rps: 40_000 }),
    row("pd", 32, { rps: 10_000 }),
    row("toy_pd", 32, { rps: 500 }),
    row("nginx", 2000, { rps: 30_000, p99: 100 }),
    row("pd", 2000, { rps: 8_000, p99: 140 }),
    row("chain_baseline", 2000, { p99: 5 }, 2000),
    row("pd_same_client", 2000, { p99: 7.5 }, 2000),
  ];
}

function verdicts(
  rows: readonly ThroughputRow[],
  sections: readonly StreamSection[],
) {
  const figures = computeFigures(rows, { streaming: sections, ...BURST });
  const targets = judgeTargets(figures, {
    burstConnections: 2000,
    toyLabel: "toy",
  });
  return {
    figures,
    targets,
    of: (id: string) => targets.find((t) => t.id === id),
  };
}

const PASSING_STREAMS = section([
  round({ direct: 5, nginx: 6, sidecar: 7 }, { sidecar: 0.2, nginx: 0.15 }),
]);

Deno.test("bench targets pass on a run within every bound", () => {
  const { targets, figures } = verdicts(passingRows(), [PASSING_STREAMS]);
  assert.deepEqual(
    targets.map((t) => `${t.id} ${t.pass}`),
    ["1a", "1b", "2a", "2b", "2c", "3a", "3b", "3c", "4"].map((id) =>
      `${id} true`
    ),
  );
  assert.ok(Math.abs((figures.ttft_pd_added_p50_ms ?? 0) - 0.2) < 1e-9);
  assert.equal(figures.c32_pd_vs_toy_proxy, 20);
  assert.equal(figures.c32_toy_proxy_vs_nginx, 0.0125);
  assert.equal(figures.burst_pd_share, 0.8);
  assert.equal(figures.burst_nginx_share, 0.75);
  assert.equal(figures.open_loop_pd_minus_chain_p99_ms, 2.5);
});

Deno.test("bench targets fail just past each bound", () => {
  const rows = passingRows().map((r) => {
    const key = `${r.scenario} ${r.connections} ${r.rate ?? ""}`;
    switch (key) {
      case "pd_same_client 1 ":
        return { ...r, p50: 0.61 }; // 0.31 ms over the chain
      case "passthrough 1 ":
        return { ...r, p50: 0.26 }; // 0.16 ms over direct
      case "pd 2000 ":
        return { ...r, rps: 7_400, p99: 151 }; // share 0.74 < 0.75, p99 1.51x
      case "pd_same_client 2000 2000":
        return { ...r, errors: 1 };
      case "toy_pd 32 ":
        return { ...r, rps: 1_001 }; // the sidecar's P/D is 9.99x
      default:
        return r;
    }
  });
  const failing = section([
    round({ direct: 5, nginx: 6, sidecar: 8.01 }, {
      sidecar: 0.226,
      nginx: 0.15,
    }),
  ], 150);
  const { targets, of } = verdicts(rows, [failing]);
  assert.deepEqual(targets.filter((t) => t.pass !== false), []);
  assert.equal(of("2a")?.threshold, ">= 0.75 (nginx passthrough's share)");
  assert.equal(of("2c")?.value, 1);
});

Deno.test("bench targets whose rows did not run are N/A, not failed", () => {
  const withoutNginx = passingRows().filter((r) => r.scenario !== "nginx")
    .filter((r) => r.scenario !== "toy_pd");
  const noNginxStreams = section([round({ direct: 5, sidecar: 7 }, {
    sidecar: 0.2,
  })]);
  const { of } = verdicts(withoutNginx, [noNginxStreams]);
  for (const id of ["2a", "2b", "3a", "3b", "4"]) {
    assert.equal(of(id)?.pass, null, id);
  }
  assert.equal(of("3c")?.pass, true);
  assert.equal(of("1a")?.pass, true);
  // Without the open-loop row the error count is unknown, not zero.
  const noOpenLoop = passingRows().filter((r) => r.rate === undefined);
  assert.equal(verdicts(noOpenLoop, []).of("2c")?.pass, null);
  assert.equal(verdicts(noOpenLoop, []).of("3c")?.pass, null);
});

Deno.test("bench counts a row that answered nothing as slow as the row was long", () => {
  const silent = toRow({
    requests: 0,
    durationS: 2,
    rps: 0,
    latencyMs: { p50: 0, p90: 0, p99: 0, max: 0 },
    errors: 0,
    non2xx: 0,
  }, { scenario: "pd", tool: "wrk", connections: 2000 });
  assert.deepEqual([silent.p50, silent.p90, silent.p99], [2000, 2000, 2000]);
  const rows = passingRows().map((r) =>
    r.scenario === "pd" && r.connections === 2000 ? silent : r
  );
  const { of } = verdicts(rows, [PASSING_STREAMS]);
  assert.equal(of("2a")?.pass, false);
  assert.equal(of("2b")?.pass, false);
  assert.equal(of("2b")?.value, 20);
  // Beside an nginx p99 near the row's length the ratio is under the bound: still a failure.
  const slowNginx = rows.map((r) =>
    r.scenario === "nginx" && r.connections === 2000 ? { ...r, p99: 1500 } : r
  );
  const quick = verdicts(slowNginx, [PASSING_STREAMS]).of("2b");
  assert.ok((quick?.value ?? 0) < 1.5);
  assert.equal(quick?.pass, false);
});

Deno.test("bench streaming targets fail when the sidecar broke a stream", () => {
  const broken = round({ direct: 5, nginx: 6, sidecar: 6.5 }, {
    sidecar: 0.2,
    nginx: 0.15,
  });
  const withBroken = section([{
    ...broken,
    sidecar: { ...broken.sidecar, completed: 499, failed: 1 },
  }]);
  const { of, figures } = verdicts(passingRows(), [withBroken]);
  assert.equal(figures[`${TARGET_STREAMS}_sidecar_failed_streams`], 1);
  assert.equal(of("3a")?.pass, false);
  assert.equal(of("3b")?.pass, false);
  assert.equal(of("3c")?.pass, true);
});

Deno.test("bench stream figures take differences within a round, then the median", () => {
  const figures = streamFigures(section([
    round({ direct: 5, nginx: 6, sidecar: 7 }, { sidecar: 1, nginx: 0.5 }),
    round({ direct: 10, nginx: 9, sidecar: 11 }, { sidecar: 1, nginx: 0.5 }),
    round({ direct: 6, nginx: 7, sidecar: 20 }, { sidecar: 1, nginx: 0.5 }),
  ]));
  // Sidecar added 2, 1, 14; nginx 1, -1, 1; sidecar minus nginx 1, 2, 13.
  assert.equal(figures.sidecarAddedP99Ms, 2);
  assert.equal(figures.nginxAddedP99Ms, 1);
  assert.equal(figures.excessOverNginxP99Ms, 2);
  // 3 CPU seconds over 30,000 events; nginx 1.5 over 30,000.
  assert.equal(figures.sidecarCpuSPer10kEvents, 1);
  assert.equal(figures.nginxCpuSPer10kEvents, 0.5);
});

function reportOf(
  rows: readonly ThroughputRow[],
  sections: readonly StreamSection[],
): BenchReport {
  const { figures, targets } = verdicts(rows, sections);
  return {
    schema: 4,
    startedAt: "2026-01-01T00:00:00.000Z",
    quick: true,
    wallS: 1,
    machine: {
      nproc: 2,
      cpuModel: "cpu",
      memoryGiB: 1,
      kernel: "6",
      deno: "2",
      v8: "1",
      loadTool: "wrk",
      nginx: "1.22.1",
      python: "3.11",
      openFiles: "open files limit: soft 20000",
    },
    settings: {
      durationS: 1,
      warmupS: 1,
      burstConnections: 2000,
      openLoopRate: 2000,
      sidecarWorkers: 1,
      sidecarV8Flags: "",
      nginxWorkers: "1",
    },
    toyProxy: "equivalent of toy_proxy_server.py P/D",
    throughput: rows,
    streaming: sections,
    throughputPeakRssMiB: 100,
    figures,
    targets,
    notRun: ["wrk: autocannon instead"],
    notes: [],
  };
}

Deno.test("bench report prints a verdict line per target and each section's rounds", () => {
  const report = reportOf(passingRows(), [PASSING_STREAMS]);
  const text = formatReport(report);
  assert.match(text, /PASS {2}1a +c=1: P\/D p50/);
  assert.match(text, /PASS {2}4 +c=32: P\/D req\/s \/ toy req\/s +20\.000 x/);
  assert.match(text, /PASS {2}2c .* 0 +\(= 0\)/);
  assert.match(text, /equivalent of toy_proxy_server\.py P\/D +32 +500/);
  assert.match(text, /sidecar P\/D \(wrk, open loop 2000\/s\) +2000 /);
  assert.match(
    text,
    /round 1: client chain via nginx +500\/500 .* 1\.00 +0\.150/,
  );
  assert.match(text, /not run:\n {2}- wrk: autocannon instead/);
  assert.equal(text.match(/^ {2}(PASS|FAIL|N\/A )/gm)?.length, 9);
});

/** The line under target `id`'s verdict line in `report`. */
function lineUnder(report: string, id: string): string {
  const lines = report.split("\n");
  const at = lines.findIndex((line) =>
    /^ {2}(PASS|FAIL|N\/A ) {2}/.test(line) &&
    line.slice(8, 12) === `${id.padEnd(3)} `
  );
  return lines[at + 1] ?? "";
}

/** The runtime floor's rows, each on a side of a P/D target. */
function floorRows(): ThroughputRow[] {
  return [
    { ...row("floor_pd_same_client", 1, { p50: 0.4 }), tool: "pd_client" },
    row("floor_passthrough", 1, { p50: 0.15 }),
    row("floor_pd", 32, { rps: 12_000 }),
    row("floor_pd", 2000, { rps: 9_000, p99: 120 }),
  ];
}

const FLOOR_TARGETS = ["1a", "1b", "2a", "2b", "3a", "3b", "3c", "4"];

Deno.test("bench runtime floor figures sit beside the P/D targets, computed as theirs", () => {
  const { of, figures } = verdicts(
    [...passingRows(), ...floorRows()],
    [PASSING_STREAMS],
  );
  // Against the chain's 0.3 ms; share 9,000 / 12,000; p99 120 / nginx's 100; 12,000 / toy's 500.
  near(of("1a")?.floor, 0.1);
  // Against decoder direct's 0.1 ms.
  near(of("1b")?.floor, 0.05);
  assert.equal(of("2a")?.floor, 0.75);
  assert.equal(of("2b")?.floor, 1.2);
  assert.equal(of("4")?.floor, 24);
  assert.equal(figures.burst_floor_pd_share, 0.75);
  assert.equal(figures.c32_floor_pd_vs_toy_proxy, 24);
  // The sidecar's own figures are still its own.
  assert.equal(of("4")?.value, 20);
  assert.equal(of("2a")?.value, 0.8);
  assert.equal(of("2c")?.floor, undefined);
});

Deno.test("bench runtime floor is not judged: a floor past every bound changes no verdict", () => {
  const slowFloor = [
    { ...row("floor_pd_same_client", 1, { p50: 9 }), tool: "pd_client" },
    row("floor_passthrough", 1, { p50: 9 }),
    row("floor_pd", 32, { rps: 100 }),
    row("floor_pd", 2000, { rps: 1, p99: 5_000, errors: 7 }),
  ];
  const { targets, of } = verdicts(
    [...passingRows(), ...slowFloor],
    [PASSING_STREAMS],
  );
  assert.deepEqual(targets.filter((t) => t.pass !== true), []);
  assert.equal(of("2b")?.floor, 50);
  assert.equal(of("2c")?.value, 0);
});

Deno.test("bench runtime floor figures are null where the floor's rows or their yardstick did not run", () => {
  const withoutFloor = verdicts(passingRows(), [PASSING_STREAMS]);
  for (const id of FLOOR_TARGETS) {
    assert.equal(withoutFloor.of(id)?.floor, null, id);
  }
  const withoutToy = verdicts(
    [...passingRows(), ...floorRows()].filter((r) => r.scenario !== "toy_pd"),
    [PASSING_STREAMS],
  );
  assert.equal(withoutToy.of("4")?.floor, null);
  assert.equal(withoutToy.of("4")?.pass, null);
  assert.ok((withoutToy.of("1a")?.floor ?? null) !== null);
  const withoutNginx = verdicts(
    [...passingRows(), ...floorRows()].filter((r) => r.scenario !== "nginx"),
    [PASSING_STREAMS],
  );
  assert.equal(withoutNginx.of("2b")?.floor, null);
  assert.equal(withoutNginx.of("2a")?.floor, 0.75);
});

Deno.test("bench report prints the runtime floor under each P/D target, N/A without its rows", () => {
  const text = formatReport(
    reportOf([...passingRows(), ...floorRows()], [PASSING_STREAMS]),
  );
  const floor =
    /^ {12}runtime floor \(bare Deno\.serve \+ fetch\), no verdict +/;
  assert.match(lineUnder(text, "1a"), floor);
  assert.match(lineUnder(text, "1a"), / 0\.100 ms$/);
  assert.match(lineUnder(text, "2a"), / 0\.750 x$/);
  assert.match(lineUnder(text, "2b"), / 1\.200 x$/);
  assert.match(lineUnder(text, "4"), / 24\.000 x$/);
  assert.match(lineUnder(text, "1b"), / 0\.050 ms$/);
  assert.doesNotMatch(lineUnder(text, "2c"), floor);
  // The streaming targets' floor lines too, N/A: these stream rounds have no floor path.
  assert.equal(text.match(/^ +runtime floor /gm)?.length, 8);
  assert.match(lineUnder(text, "3a"), / N\/A$/);
  assert.match(text, /runtime floor P\/D \(pd_client\) +1 /);
  assert.match(text, /runtime floor passthrough \(wrk\) +1 /);
  assert.match(text, /runtime floor P\/D \(wrk\) +32 +12000 /);
  assert.match(text, /runtime floor P\/D \(wrk\) +2000 +9000 /);
  // The floor's lines carry no verdict.
  assert.equal(text.match(/^ {2}(PASS|FAIL|N\/A )/gm)?.length, 9);

  const without = formatReport(reportOf(passingRows(), [PASSING_STREAMS]));
  assert.match(lineUnder(without, "1a"), floor);
  assert.match(lineUnder(without, "1a"), / N\/A$/);
  assert.equal(without.match(/^ +runtime floor .* N\/A$/gm)?.length, 8);
  assert.doesNotMatch(without, /runtime floor P\/D/);
});

/** Three rounds of the target section with the runtime floor's turn in each. */
const FLOOR_STREAMS = section(
  [
    round({ direct: 5, nginx: 6, sidecar: 7, floor: 6.5 }, {
      sidecar: 1,
      nginx: 0.5,
      floor: 0.75,
    }),
    round({ direct: 10, nginx: 9, sidecar: 11, floor: 12 }, {
      sidecar: 1,
      nginx: 0.5,
      floor: 0.75,
    }),
    round({ direct: 6, nginx: 7, sidecar: 20, floor: 7.5 }, {
      sidecar: 1,
      nginx: 0.5,
      floor: 0.75,
    }),
  ],
  140,
  TARGET_STREAMS,
  90,
);

function near(actual: number | null | undefined, expected: number): void {
  assert.ok(
    actual !== null && actual !== undefined &&
      Math.abs(actual - expected) < 1e-9,
    `${actual} is not ${expected}`,
  );
}

Deno.test("bench stream floor figures are computed as the sidecar's, from the floor's turn of each round", () => {
  const f = streamFigures(FLOOR_STREAMS);
  // Floor added 1.5, 2, 1.5 over direct; minus nginx's 0.5, 3, 0.5: medians.
  near(f.floorAddedP99Ms, 1.5);
  near(f.floorExcessOverNginxP99Ms, 0.5);
  // 2.25 CPU seconds over 30,000 events.
  near(f.floorCpuSPer10kEvents, 0.75);
  assert.equal(f.floorPeakRssMiB, 90);
  assert.equal(f.floorFailedStreams, 0);
  const { of, figures } = verdicts(passingRows(), [FLOOR_STREAMS]);
  const key = (name: string) => `${TARGET_STREAMS}_${name}`;
  near(figures[key("floor_excess_over_nginx_p99_ms")], 0.5);
  near(figures[key("floor_cpu_vs_nginx")], 1.5);
  near(of("3a")?.floor, 0.5);
  near(of("3b")?.floor, 1.5);
  assert.equal(of("3c")?.floor, 90);
  // The sidecar's own figures and verdicts are still its own.
  assert.equal(of("3a")?.value, 2);
  assert.equal(of("3b")?.value, 2);
  assert.equal(of("3c")?.value, 140);
  assert.deepEqual(
    ["3a", "3b", "3c"].map((id) => of(id)?.pass),
    [true, false, true],
  );
});

Deno.test("bench stream floor figures are null for rounds without the floor's turn, as a schema-3 report kept them", () => {
  const { of, figures } = verdicts(passingRows(), [PASSING_STREAMS]);
  for (const id of ["3a", "3b", "3c"]) {
    assert.equal(of(id)?.floor, null, id);
    assert.equal(of(id)?.pass, true, id);
  }
  for (
    const name of [
      "floor_added_p99_ms",
      "floor_excess_over_nginx_p99_ms",
      "floor_cpu_vs_nginx",
      "floor_peak_rss_mib",
      "floor_failed_streams",
    ]
  ) {
    assert.equal(figures[`${TARGET_STREAMS}_${name}`], null, name);
  }
  // Without nginx the floor's added delay stands; what is taken over nginx's does not.
  const noNginx = section(
    [
      round({ direct: 5, sidecar: 7, floor: 6 }, { sidecar: 1, floor: 0.5 }),
    ],
    120,
    TARGET_STREAMS,
    80,
  );
  const f = streamFigures(noNginx);
  assert.equal(f.floorAddedP99Ms, 1);
  assert.equal(f.floorExcessOverNginxP99Ms, null);
  assert.equal(verdicts(passingRows(), [noNginx]).of("3b")?.floor, null);
});

Deno.test("bench stream floor is not judged: a slow floor, or one that broke streams, changes no verdict", () => {
  const slow = round({ direct: 5, nginx: 6, sidecar: 7, floor: 900 }, {
    sidecar: 0.2,
    nginx: 0.15,
    floor: 50,
  });
  const broken = section(
    [{
      ...slow,
      floor: { ...streams(900), completed: 12, failed: 488 },
    }],
    120,
    TARGET_STREAMS,
    4_000,
  );
  const { of, figures } = verdicts(passingRows(), [broken]);
  assert.deepEqual(
    ["3a", "3b", "3c"].map((id) => of(id)?.pass),
    [true, true, true],
  );
  assert.equal(of("3a")?.floor, 894);
  assert.equal(of("3c")?.floor, 4_000);
  assert.equal(figures[`${TARGET_STREAMS}_floor_failed_streams`], 488);
  assert.equal(figures[`${TARGET_STREAMS}_sidecar_failed_streams`], 0);
});

Deno.test("bench report shows the floor's turn in each stream round and its figures under 3a-3c", () => {
  const text = formatReport(reportOf(passingRows(), [FLOOR_STREAMS]));
  const floor =
    /^ {12}runtime floor \(bare Deno\.serve \+ fetch\), no verdict +/;
  for (const id of ["3a", "3b", "3c"]) {
    assert.match(lineUnder(text, id), floor, id);
  }
  assert.match(lineUnder(text, "3a"), / 0\.500 ms$/);
  assert.match(lineUnder(text, "3b"), / 1\.500 x$/);
  assert.match(lineUnder(text, "3c"), / 90\.000 MiB$/);
  // Round 1's floor: p99 6.5, 1.5 over direct, 0.75 CPU s over 10,000 events.
  assert.match(
    text,
    /round 1: through the runtime floor +500\/500 +6\.50 +6\.50 +1\.50 +0\.750$/m,
  );
  assert.equal(text.match(/: through the runtime floor /g)?.length, 3);
  assert.match(text, /minus nginx's: sidecar 2\.00 ms, runtime floor 0\.50 ms/);
  assert.match(text, /peak RSS sidecar 140\.0 MiB, runtime floor 90\.0 MiB/);

  const schema3 = formatReport({
    ...reportOf(passingRows(), [PASSING_STREAMS]),
    schema: 3,
  });
  assert.doesNotMatch(schema3, /through the runtime floor/);
  assert.match(schema3, /minus nginx's: sidecar 1\.00 ms, runtime floor - ms/);
});

Deno.test("bench runs the runtime floor as it runs the sidecar: same permissions and V8 flags", () => {
  const floor = floorProxyCommand(8200, SIDECAR_V8_FLAGS);
  const sidecar = sidecarCommand(["main.ts"]);
  assert.equal(floor.cmd, sidecar.cmd);
  assert.deepEqual(floor.args.slice(0, -3), sidecar.args.slice(0, -1));
  assert.match(floor.args.at(-3) ?? "", /scripts\/bench\/floor_proxy\.ts$/);
  assert.deepEqual(floor.args.slice(-2), ["--decoder-port", "8200"]);
  const tuned = floorProxyCommand(8200, "--max-semi-space-size=8").args;
  assert.ok(tuned.includes("--v8-flags=--max-semi-space-size=8"));
  assert.equal(
    floorProxyCommand(8200, "").args.some((a) => a.startsWith("--v8-flags")),
    false,
  );
});

Deno.test("bench runtime floor does the prefill, then streams the decode with its kv_transfer_params", async () => {
  const seen: { leg: string; body: string; headers: Headers }[] = [];
  const upstream = (leg: string, answer: string) =>
    Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      async (request) => {
        seen.push({
          leg,
          body: await request.text(),
          headers: request.headers,
        });
        return new Response(answer, {
          headers: { "content-type": "application/json" },
        });
      },
    );
  await using prefiller = upstream(
    "prefill",
    '{"kv_transfer_params":{"remote_block_ids":[7]}}',
  );
  await using decoder = upstream("decode", '{"choices":[]}');
  const httpClient = Deno.createHttpClient({});
  try {
    const client = createFetchClient(httpClient);
    const decoderUrl = `http://127.0.0.1:${decoder.addr.port}`;
    const body = '{"model":"m","max_tokens":9}';
    // Answer and body within a deadline: a floor that hangs fails here.
    const send = (headers: Record<string, string>) =>
      withDeadline(
        proxy(
          client,
          new Request("http://floor/v1/completions", {
            method: "POST",
            headers: { "content-type": "application/json", ...headers },
            body,
          }),
          decoderUrl,
        ).then(async (response) => ({
          status: response.status,
          text: await response.text(),
        })),
        5_000,
        "the floor's answer",
      );
    const pd = await send({
      "x-prefiller-host-port": `127.0.0.1:${prefiller.addr.port}`,
    });
    assert.equal(pd.status, 200);
    assert.equal(pd.text, '{"choices":[]}');
    assert.deepEqual(seen.map((s) => s.leg), ["prefill", "decode"]);
    const [prefill, decode] = seen.map((s) => JSON.parse(s.body));
    assert.equal(prefill.stream, false);
    assert.equal(prefill.max_tokens, 1);
    assert.equal(prefill.kv_transfer_params.do_remote_decode, true);
    assert.deepEqual(decode.kv_transfer_params, { remote_block_ids: [7] });
    assert.equal(decode.max_tokens, 9);
    assert.ok(seen.every((s) => !s.headers.has("x-prefiller-host-port")));

    seen.length = 0;
    const passthrough = await send({});
    assert.equal(passthrough.text, '{"choices":[]}');
    assert.deepEqual(seen.map((s) => [s.leg, s.body]), [["decode", body]]);
  } finally {
    httpClient.close();
  }
});

Deno.test("bench runtime floor sends a streaming request's prefill as the sidecar does and relays each decode event as it comes", async () => {
  const encoder = new TextEncoder();
  const events = [
    'data: {"n":1,"bench_sent_ms":1}\n\n',
    'data: {"n":2,"bench_sent_ms":2}\n\n',
    "data: [DONE]\n\n",
  ];
  const firstSeen = Promise.withResolvers<void>();
  const bodies: Record<string, string> = {};
  await using prefiller = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      bodies.prefill = await request.text();
      return Response.json({ kv_transfer_params: { remote_block_ids: [7] } });
    },
  );
  await using decoder = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      bodies.decode = await request.text();
      let sent = 0;
      // The rest is held back until the client has read the first event: a
      // floor that buffered the answer would never hand it over.
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent === 1) {
            await withDeadline(
              firstSeen.promise,
              5_000,
              "the floor's client to read the first event",
            );
          }
          const event = events[sent++];
          if (event === undefined) controller.close();
          else controller.enqueue(encoder.encode(event));
        },
      });
      return new Response(body, {
        headers: { "content-type": "text/event-stream" },
      });
    },
  );
  const httpClient = Deno.createHttpClient({});
  try {
    const body =
      '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":9,"stream":true,"stream_options":{"include_usage":false}}';
    const response = await withDeadline(
      proxy(
        createFetchClient(httpClient),
        new Request("http://floor/v1/chat/completions", {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "x-prefiller-host-port": `127.0.0.1:${prefiller.addr.port}`,
          },
          body,
        }),
        `http://127.0.0.1:${decoder.addr.port}`,
      ),
      5_000,
      "the floor's answer head",
    );
    assert.equal(response.headers.get("content-type"), "text/event-stream");
    const reader = response.body?.getReader();
    assert.ok(reader);
    const decoded = new TextDecoder();
    const first = await withDeadline(reader.read(), 5_000, "the first event");
    assert.equal(decoded.decode(first.value), events[0]);
    firstSeen.resolve();
    let rest = "";
    for (;;) {
      const next = await withDeadline(reader.read(), 5_000, "the next event");
      if (next.done) break;
      rest += decoded.decode(next.value, { stream: true });
    }
    // The decode's bytes, untouched.
    assert.equal(rest, events.slice(1).join(""));

    // The prefill the sidecar's nixlv2 connector sends for this body.
    const sidecarPrefill = buildSidecarPrefillBody(
      parseGenerationRequest(body),
      {
        api: "chat",
        nonStreaming: true,
        extra: {
          kv_transfer_params: JSON.stringify(PREFILL_KV_TRANSFER_PARAMS),
        },
      },
    );
    const prefill = JSON.parse(bodies.prefill ?? "");
    assert.deepEqual(prefill, JSON.parse(sidecarPrefill));
    assert.equal(prefill.stream_options, undefined);
    const decode = JSON.parse(bodies.decode ?? "");
    assert.equal(decode.stream, true);
    assert.deepEqual(decode.stream_options, { include_usage: false });
    assert.deepEqual(decode.kv_transfer_params, { remote_block_ids: [7] });
  } finally {
    httpClient.close();
  }
});

Deno.test("bench runtime floor's prefill of a non-streaming request is the sidecar's too", () => {
  const body =
    '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":9,"stream":false}';
  const sidecar = buildSidecarPrefillBody(parseGenerationRequest(body), {
    api: "chat",
    nonStreaming: true,
    extra: { kv_transfer_params: JSON.stringify(PREFILL_KV_TRANSFER_PARAMS) },
  });
  assert.deepEqual(
    JSON.parse(prefillBody(body, JSON.parse(body))),
    JSON.parse(sidecar),
  );
});

Deno.test("bench wrk script posts the body and headers and reports JSON from done()", () => {
  const script = buildWrkScript({
    url: "http://127.0.0.1:1/v1/chat/completions",
    headers: { "x-prefiller-host-port": "127.0.0.1:2" },
    body: '{"a":"quote \\" and \\\\ slash"}',
    connections: 1,
    durationS: 1,
  });
  assert.match(script, /wrk\.method = "POST"/);
  assert.match(
    script,
    /wrk\.body = "\{\\"a\\":\\"quote \\\\\\" and \\\\\\\\ slash\\"\}"/,
  );
  assert.match(
    script,
    /wrk\.headers\["x-prefiller-host-port"\] = "127\.0\.0\.1:2"/,
  );
  assert.match(script, /function done\(summary, latency, requests\)/);
});

Deno.test("bench nginx config listens on loopback only and streams both ways", () => {
  const config = buildNginxConfig({
    prefix: "/tmp/x",
    port: 1234,
    upstreamPort: 5678,
    workers: "1",
  });
  assert.match(config, /listen 127\.0\.0\.1:1234;/);
  assert.match(config, /server 127\.0\.0\.1:5678;/);
  assert.match(config, /daemon off;/);
  assert.match(config, /proxy_buffering off;/);
  assert.match(config, /proxy_request_buffering off;/);
});

Deno.test("bench chain client builds the prefill and decode legs as the sidecar does", () => {
  const body =
    '{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":9}';
  const prefill = JSON.parse(buildPrefillBody(body));
  assert.equal(prefill.stream, false);
  assert.equal(prefill.max_tokens, 1);
  assert.equal(prefill.stream_options, undefined);
  assert.equal(prefill.kv_transfer_params.do_remote_decode, true);
  const decode = JSON.parse(
    buildDecodeBody(body, '{"kv_transfer_params":{"remote_block_ids":[1]}}'),
  );
  assert.deepEqual(decode.kv_transfer_params, { remote_block_ids: [1] });
  assert.equal(decode.max_tokens, 9);
});

Deno.test("bench open loop spreads the rate evenly over loops that each keep their pace", () => {
  const plan = { rate: 2000, connections: 2000 };
  // Loop 0 every second, from 0; loop 1 half a millisecond later.
  assert.deepEqual([0, 1, 2].map(openLoopSchedule(plan, 0)), [0, 1000, 2000]);
  assert.equal(openLoopSchedule(plan, 1)(0), 0.5);
  // One second of the run: 2,000 due times, 0.5 ms apart, none twice.
  const second = Array.from(
    { length: 2000 },
    (_, loop) => openLoopSchedule(plan, loop)(0),
  ).sort((a, b) => a - b);
  assert.ok(second.every((at, i) => at === i * 0.5));
  assert.deepEqual(
    [0, 1].map(openLoopSchedule({ rate: 100, connections: 4 }, 3)),
    [30, 70],
  );
});

Deno.test("bench open loop counts every request due in the window, one connection per loop", async () => {
  const connections = new Set<number>();
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request, info) => {
      connections.add(info.remoteAddr.port);
      await request.text();
      return new Response("{}");
    },
  );
  const result = await runClient({
    mode: "single",
    url: `http://127.0.0.1:${server.addr.port}/v1/completions`,
    headers: {},
    body: "{}",
    connections: 4,
    rate: 100,
    warmupS: 0.05,
    durationS: 0.2,
  });
  // Due every 10 ms; 20 of them fall in [50 ms, 250 ms), however fast the answers.
  assert.equal(result.requests, 20);
  assert.equal(result.errors, 0);
  assert.equal(connections.size, 4);
});

Deno.test("bench installs only the packages of missing tools and raises the descriptor limit within the hard one", () => {
  const missing = missingTools({ wrk: "4.1.0" });
  assert.deepEqual(missing, ["nginx", "python"]);
  assert.deepEqual(packagesFor(missing), [
    "nginx",
    "python3-fastapi",
    "python3-httpx",
    "python3-uvicorn",
    "python3-uvloop",
  ]);
  assert.deepEqual(packagesFor([]), []);
  assert.equal(raisedSoftLimit({ soft: 20000, hard: 20000 }, 8192), undefined);
  assert.equal(raisedSoftLimit({ soft: 1024, hard: 524288 }, 8192), 8192);
  assert.equal(raisedSoftLimit({ soft: 1024, hard: 4096 }, 8192), 4096);
  assert.equal(raisedSoftLimit({ soft: 1024, hard: Infinity }, 8192), 8192);
});

Deno.test("bench runs vLLM's toy proxy when it has the file, the labelled equivalent otherwise", async () => {
  await using temp = await tempDir("pd-sidecar-bench-test-");
  const dir = temp.path;
  const toy = `${dir}/toy.py`;
  await Deno.writeTextFile(
    toy,
    "app = FastAPI(lifespan=lifespan)\n\nasync def lifespan(app):\n    yield\n\ndef parse_args():\n    pass\n",
  );
  const found = await obtainToyProxy({ tempDir: dir, localFile: toy });
  assert.equal(found.kind, "vllm");
  assert.equal(toyProxyLabel(found), "vLLM toy_proxy_server.py P/D");
  const args = toyProxyArgs(found, { port: 1, prefill: 2, decode: 3 });
  assert.match(args[0] ?? "", /toy_proxy\/launch\.py$/);
  assert.equal(args[1], `${dir}/toy_proxy_server.py`);
  assert.deepEqual(args.slice(-2), ["--decoder-port", "3"]);

  const missing = await obtainToyProxy({
    tempDir: dir,
    localFile: `${dir}/absent.py`,
  });
  assert.equal(missing.kind, "equivalent");
  assert.equal(
    toyProxyLabel(missing),
    "equivalent of toy_proxy_server.py P/D",
  );
  assert.match(
    toyProxyArgs(missing, { port: 1, prefill: 2, decode: 3 })[0] ?? "",
    /toy_proxy\/equivalent\.py$/,
  );
  const other = `${dir}/other.py`;
  await Deno.writeTextFile(other, "print('hello')\n");
  assert.equal(
    (await obtainToyProxy({ tempDir: dir, localFile: other })).kind,
    "equivalent",
  );
});

Deno.test("bench profile ranking counts self time at the leaf and total time once per function", () => {
  const node = (id: number, name: string, children: number[] = []) => ({
    id,
    callFrame: {
      functionName: name,
      url: `file:///repo/src/${name}.ts`,
      lineNumber: 0,
    },
    children,
  });
  const profile = {
    nodes: [
      node(1, "root", [2, 3]),
      node(2, "relay", [4]),
      node(3, "parse"),
      node(4, "relay", []),
    ],
    samples: [3, 3, 4, 2],
  };
  const { self, total, samples } = rankFunctions(profile);
  assert.equal(samples, 4);
  assert.equal(self.get("parse src/parse.ts:1"), 2);
  assert.equal(self.get("relay src/relay.ts:1"), 2);
  // The recursive relay counts once per sample.
  assert.equal(total.get("relay src/relay.ts:1"), 2);
  assert.equal(total.get("root src/root.ts:1"), 4);
  assert.deepEqual(topLines(total, samples, 1), ["100.0%  root src/root.ts:1"]);
  // The report puts the idle share in its title and ranks only busy frames.
  const idle = {
    id: 5,
    callFrame: { functionName: "(idle)", url: "", lineNumber: -1 },
  };
  const text = describeProfile("load 3", {
    nodes: [...profile.nodes, idle],
    samples: [...profile.samples, 5, 5, 5, 5],
  }, 5);
  assert.match(text, /^load 3: 8 samples, 50\.0% idle\n/);
  assert.doesNotMatch(text, /% {2}\(idle\)/);
  assert.match(text, /25\.0% {2}parse src\/parse\.ts:1/);
});

Deno.test("bench profile sums self time by place: own modules, Hono, runtime extensions, ops", () => {
  const frame = (id: number, functionName: string, url: string) => ({
    id,
    callFrame: { functionName, url, lineNumber: 0 },
  });
  const nodes = [
    frame(
      1,
      "run",
      new URL("../../src/connectors/nixlv2.ts", import.meta.url).href,
    ),
    frame(
      2,
      "dispatch",
      "file:///root/.cache/deno/npm/registry.npmjs.org/hono/4.13.19/dist/compose.js",
    ),
    frame(3, "mainFetch", "ext:deno_fetch/26_fetch.js"),
    frame(4, "op_fetch_send", ""),
    frame(5, "(garbage collector)", ""),
    frame(
      6,
      "parse",
      "file:///root/.cache/deno/npm/registry.npmjs.org/@opentelemetry/api/1.9.0/build/x.js",
    ),
    frame(
      7,
      "other",
      new URL("../../src/connectors/nixlv2.ts", import.meta.url).href,
    ),
    // A package's own src/ folder is the package's, not the sidecar's.
    frame(
      8,
      "x",
      "file:///root/.cache/deno/npm/registry.npmjs.org/yaml/2.9.1/dist/src/parse.js",
    ),
  ];
  assert.deepEqual(nodes.map(placeOf), [
    "src/connectors/nixlv2.ts",
    "hono",
    "ext:deno_fetch",
    "op op_fetch_send",
    "(garbage collector)",
    "npm @opentelemetry/api",
    "src/connectors/nixlv2.ts",
    "npm yaml",
  ]);
  const places = rankPlaces({ nodes, samples: [1, 7, 2, 2, 2, 4] });
  assert.equal(places.get("src/connectors/nixlv2.ts"), 2);
  assert.equal(places.get("hono"), 3);
  assert.equal(places.get("op op_fetch_send"), 1);
});

Deno.test("bench shards split streams so each worker's ramp covers the whole run", () => {
  assert.deepEqual(shardIndices(7, { index: 0, count: 3 }), [0, 3, 6]);
  assert.deepEqual(shardIndices(7, { index: 2, count: 3 }), [2, 5]);
  const all = [0, 1, 2].flatMap((index) =>
    shardIndices(7, { index, count: 3 })
  );
  assert.deepEqual(all.sort(), [0, 1, 2, 3, 4, 5, 6]);
});

Deno.test("bench percentiles use the nearest rank", () => {
  const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(quantile(sorted, 0.5), 50);
  assert.equal(quantile(sorted, 0.99), 99);
  assert.equal(summarize([3, 1, 2]).max, 3);
  assert.ok(Number.isNaN(summarize([]).p50));
});

Deno.test("bench runs the sidecar with the shipped V8 flags unless told otherwise", () => {
  const flagsOf = (args: string[]) =>
    args.filter((arg) => arg.startsWith("--v8-flags"));
  const shipped = sidecarCommand(["main.ts", "-port=1"]);
  assert.deepEqual(shipped.args.slice(-2), ["main.ts", "-port=1"]);
  assert.deepEqual(flagsOf(shipped.args), [`--v8-flags=${SIDECAR_V8_FLAGS}`]);
  assert.deepEqual(flagsOf(sidecarCommand(["main.ts"], "").args), []);
  const tuned = sidecarCommand(["main.ts"], "--heap-growing-percent=80");
  const flag = tuned.args.indexOf("--v8-flags=--heap-growing-percent=80");
  assert.ok(flag > 0 && flag < tuned.args.indexOf("main.ts"));
  const profiled = sidecarCommand(["main.ts"], "", ["--cpu-prof"]).args;
  assert.ok(profiled.indexOf("--cpu-prof") < profiled.indexOf("main.ts"));
});

Deno.test("bench starts the sidecar on loopback, plain HTTP, in front of the decoder, with no engine flag", () => {
  const args = sidecarArgs(8000, 8200, ["-workers=2"]);
  // Each run gets a free metrics port: the default 9090 may be taken.
  const metrics = args.filter((arg) => arg.startsWith("-metrics-port="));
  assert.equal(metrics.length, 1);
  assert.ok(Number(metrics[0]?.split("=")[1]) > 0);
  assert.deepEqual(args.filter((arg) => !metrics.includes(arg)), [
    "main.ts",
    "-port=8000",
    "-model-server-port=8200",
    "-listen-host=127.0.0.1",
    "-secure-proxy=false",
    "-workers=2",
  ]);
  assert.deepEqual(
    sidecarArgs(8000, 8200, ["-metrics-port=0"]).filter((arg) =>
      arg.startsWith("-metrics-port")
    ),
    ["-metrics-port=0"],
  );
});
