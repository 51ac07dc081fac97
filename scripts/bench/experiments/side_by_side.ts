// deno-lint-ignore-file no-console -- a terminal report: printing is its job
/**
 * @module
 * One-off measurement: two sidecars side by side on the same fixed-answer
 * upstreams, wrk rows in alternating order, medians over rounds of req/s,
 * p50, p99 and the sidecar's CPU ms per request. How issue 9's tries were
 * judged (a variant against the code it changes): each side is a checkout
 * (a `git worktree` of the variant) and its own sidecar flags.
 *
 * Run from the repository root:
 *   scripts/deno run -A scripts/bench/experiments/side_by_side.ts \
 *     --a=. --b=/path/to/variant [--a-flags="-workers=2"] [--b-flags=...] \
 *     [--route=pd|passthrough] [--connections=32] [--duration-s=5] [--rounds=4]
 */

import { parseArgs } from "node:util";
import { detectLoadTool } from "../load_tool.ts";
import {
  type Bench,
  measureWithTool,
  PREFILLER_HEADER,
  urlOf,
} from "../measure.ts";
import {
  clockTicksPerSecond,
  createProcessGroup,
  freePort,
  sidecarArgs,
  sidecarCommand,
  startFastUpstream,
} from "../processes.ts";
import type { ThroughputRow } from "../results.ts";

const { values } = parseArgs({
  options: {
    a: { type: "string", default: "." },
    b: { type: "string" },
    "a-flags": { type: "string", default: "" },
    "b-flags": { type: "string", default: "" },
    route: { type: "string", default: "pd" },
    connections: { type: "string", default: "32" },
    "duration-s": { type: "string", default: "5" },
    rounds: { type: "string", default: "4" },
  },
});
if (values.b === undefined) {
  console.error("--b=<checkout of the variant> is required");
  Deno.exit(2);
}
const connections = Number(values.connections);
const durationS = Number(values["duration-s"]);
const rounds = Number(values.rounds);
const sides = [
  { name: "a", dir: values.a, flags: values["a-flags"] },
  { name: "b", dir: values.b, flags: values["b-flags"] },
];

const median = (list: readonly number[]) =>
  [...list].sort((x, y) => x - y)[Math.floor(list.length / 2)] ?? NaN;

const group = createProcessGroup();
const tempDir = await Deno.makeTempDir({ prefix: "side-by-side-" });
try {
  const ticks = await clockTicksPerSecond();
  const tool = await detectLoadTool(tempDir);
  const prefill = await startFastUpstream(group, "prefill");
  const decode = await startFastUpstream(group, "decode");
  const running = await Promise.all(sides.map(async (side) => {
    const port = freePort();
    const flags = side.flags.split(/\s+/).filter((flag) => flag !== "");
    const process = group.start(`sidecar ${side.name}`, {
      ...sidecarCommand(
        sidecarArgs(port, decode.port, [...flags, "-zap-log-level=error"]),
      ),
      cwd: side.dir,
    });
    const workers = Number(
      /-workers=(\d+)/.exec(side.flags)?.[1] ?? "1",
    );
    let listening = 0;
    await process.waitForLine(
      (line) =>
        line.includes('"msg":"starting"') && ++listening === workers
          ? true
          : undefined,
      30_000,
    ).catch(() => undefined);
    return { ...side, port, pid: process.pid };
  }));
  const headers: Record<string, string> = values.route === "pd"
    ? { [PREFILLER_HEADER]: `127.0.0.1:${prefill.port}` }
    : {};
  // warmupS is read by pd_client rows only; none run here.
  const bench: Bench = { group, tool, ticks, durationS, warmupS: 0 };
  const scenario = values.route === "pd" ? "pd" : "passthrough";
  // Warm-up: JIT and connection pools are not what is measured.
  for (const side of running) {
    await measureWithTool(bench, scenario, {
      url: urlOf(side.port),
      headers,
      connections,
      durationS: 2,
    });
  }
  const rows = new Map(
    running.map((side) => [side.name, [] as ThroughputRow[]]),
  );
  // CPU seconds per 1,000 requests are CPU milliseconds per request.
  const cpuMs = (row: ThroughputRow) => row.cpuSPer1000 ?? NaN;
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? running : [...running].reverse();
    for (const side of order) {
      const row = await measureWithTool(bench, scenario, {
        url: urlOf(side.port),
        headers,
        connections,
        cpuPids: [side.pid],
      });
      rows.get(side.name)!.push(row);
      console.log(
        `round ${round + 1} ${side.name}: ${row.rps.toFixed(0)} req/s, p50 ${
          row.p50.toFixed(2)
        } ms, p99 ${row.p99.toFixed(2)} ms, ${
          cpuMs(row).toFixed(3)
        } CPU ms/request, errors ${row.errors + row.non2xx}`,
      );
    }
  }
  console.log(
    `\n${values.route}, c=${connections}, ${rounds} rounds of ${durationS} s, medians:`,
  );
  for (const side of running) {
    const list = rows.get(side.name)!;
    console.log(
      `${side.name} (${side.dir} ${side.flags}): ${
        median(list.map((row) => row.rps)).toFixed(0)
      } req/s, p50 ${median(list.map((row) => row.p50)).toFixed(2)} ms, p99 ${
        median(list.map((row) => row.p99)).toFixed(2)
      } ms, ${median(list.map(cpuMs)).toFixed(3)} CPU ms/request`,
    );
  }
} finally {
  await group.stopAll();
  await Deno.remove(tempDir, { recursive: true });
}
