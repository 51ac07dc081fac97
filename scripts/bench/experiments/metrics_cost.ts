// deno-lint-ignore-file no-console -- a terminal report: printing is its job
/**
 * @module
 * One-off measurement: what metrics and tracing cost the sidecar on P/D
 * requests against the fixed-answer upstreams. Rows, interleaved per round:
 * metrics off (`-metrics-port=0`), metrics on (the default), metrics on with
 * `-tracing` but no exporter (spans are no-ops), and metrics on with
 * `-tracing` and `OTEL_DENO=true` exporting to a local sink. Reports
 * requests/s and sidecar CPU ms per request (medians over rounds).
 *
 * Run from the repository root:
 *   scripts/deno run -A scripts/bench/experiments/metrics_cost.ts [--rounds 3] [--duration-s 5] [--connections 16]
 */

import { parseArgs } from "node:util";
import type { ClientResult } from "../pd_client.ts";
import {
  clockTicksPerSecond,
  cpuSecondsOf,
  createProcessGroup,
  freePort,
  lastJsonLine,
  runToEnd,
  sidecarArgs,
  sidecarCommand,
  startFastUpstream,
  waitForHttp,
} from "../processes.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;
const CLIENT = new URL("../pd_client.ts", import.meta.url).pathname;

interface Variant {
  readonly name: string;
  readonly flags: (metricsPort: number) => string[];
  readonly env: Readonly<Record<string, string>>;
}

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    "duration-s": { type: "string", default: "5" },
    connections: { type: "string", default: "16" },
  },
});
const rounds = Number(values.rounds);
const durationS = Number(values["duration-s"]);
const connections = Number(values.connections);

// Swallows OTLP exports so the exporter's cost is measured, not a collector's.
const sink = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen() {} },
  async (request) => {
    await request.arrayBuffer();
    return new Response(null, { status: 200 });
  },
);

const VARIANTS: readonly Variant[] = [
  { name: "metrics off", flags: () => ["-metrics-port=0"], env: {} },
  { name: "metrics on", flags: (p) => [`-metrics-port=${p}`], env: {} },
  {
    name: "metrics on, -tracing, no exporter",
    flags: (p) => [`-metrics-port=${p}`, "-tracing"],
    env: {},
  },
  {
    name: "metrics on, -tracing, OTEL_DENO=true",
    flags: (p) => [`-metrics-port=${p}`, "-tracing"],
    env: {
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sink.addr.port}`,
    },
  },
];

const group = createProcessGroup();
const ticks = await clockTicksPerSecond();
const results = new Map<string, { rps: number[]; cpuMs: number[] }>();

function body(): string {
  return JSON.stringify({
    model: "bench",
    messages: [{ role: "user", content: "Hello" }],
    max_tokens: 16,
  });
}

async function load(
  url: string,
  prefillPort: number,
  seconds: number,
): Promise<ClientResult> {
  const output = await runToEnd(group, "pd_client", {
    cmd: Deno.execPath(),
    args: [
      "run",
      "--allow-net",
      CLIENT,
      "--mode",
      "single",
      "--url",
      url,
      "--header",
      `x-prefiller-host-port: 127.0.0.1:${prefillPort}`,
      "--body",
      body(),
      "--connections",
      String(connections),
      "--warmup-s",
      "0",
      "--duration-s",
      String(seconds),
    ],
    timeoutS: seconds + 60,
  });
  return lastJsonLine<ClientResult>(output, "pd_client");
}

try {
  const prefill = await startFastUpstream(group, "prefill");
  const decode = await startFastUpstream(group, "decode");
  for (let round = 0; round < rounds; round++) {
    for (const variant of VARIANTS) {
      const port = freePort();
      const metricsPort = freePort();
      const command = sidecarCommand(
        sidecarArgs(port, decode.port, variant.flags(metricsPort)),
      );
      // The child inherits this process's environment plus the variant's.
      const withEnv = group.start(variant.name, {
        cmd: "env",
        args: [
          ...Object.entries(variant.env).map(([k, v]) => `${k}=${v}`),
          command.cmd,
          ...command.args,
        ],
        cwd: ROOT,
      });
      const url = `http://127.0.0.1:${port}/v1/chat/completions`;
      await waitForHttp(`http://127.0.0.1:${port}/health`, 30_000);
      await load(url, prefill.port, 2);
      const before = await cpuSecondsOf([withEnv.pid], ticks);
      const result = await load(url, prefill.port, durationS);
      const after = await cpuSecondsOf([withEnv.pid], ticks);
      await group.stop(withEnv);
      if (result.errors > 0 || result.non2xx > 0) {
        throw new Error(
          `${variant.name}: ${result.errors} errors, ${result.non2xx} non-2xx (${result.firstError})`,
        );
      }
      const row = results.get(variant.name) ?? { rps: [], cpuMs: [] };
      row.rps.push(result.rps);
      row.cpuMs.push(((after - before) * 1000) / result.requests);
      results.set(variant.name, row);
      console.error(
        `round ${round + 1} ${variant.name}: ${result.rps.toFixed(0)} req/s`,
      );
    }
  }
} finally {
  await group.stopAll();
  await sink.shutdown();
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

const base = results.get(VARIANTS[0]?.name ?? "");
console.log(
  `| variant | req/s | CPU ms/request | CPU vs metrics off |\n|---|---|---|---|`,
);
for (const [name, row] of results) {
  const ratio = base ? median(row.cpuMs) / median(base.cpuMs) : NaN;
  console.log(
    `| ${name} | ${median(row.rps).toFixed(0)} | ${
      median(row.cpuMs).toFixed(3)
    } | ${ratio.toFixed(2)}x |`,
  );
}
