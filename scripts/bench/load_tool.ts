/**
 * @module
 * The generic load generator, run as its own process: `wrk` when it is on the
 * machine (one thread, so it takes at most one core of two), else
 * `autocannon` from npm through `npx`. Both report requests per second and
 * latency percentiles measured per request.
 */

import { type ProcessGroup, runToEnd } from "./processes.ts";

/** Which generator runs. */
export type LoadToolName = "wrk" | "autocannon";

/** One load run: POST `body` to `url` over `connections` keep-alive connections. */
export interface LoadSpec {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly connections: number;
  readonly durationS: number;
}

/** What a load run measured; latencies in milliseconds. */
export interface LoadResult {
  readonly requests: number;
  readonly durationS: number;
  readonly rps: number;
  readonly latencyMs: {
    readonly p50: number;
    readonly p90: number;
    readonly p99: number;
    readonly max: number;
  };
  /** Socket errors and timeouts. */
  readonly errors: number;
  readonly non2xx: number;
}

/** A load generator found on the machine. */
export interface LoadTool {
  readonly name: LoadToolName;
  /** e.g. "wrk 4.1.0" or "autocannon 8 (Node v20.20.2)". */
  readonly version: string;
  /** Runs `spec`, started in `group`, and parses the generator's report. */
  run(spec: LoadSpec, group: ProcessGroup): Promise<LoadResult>;
}

const MARK = "BENCH_JSON ";

async function commandOutput(
  cmd: string,
  args: string[],
): Promise<string | undefined> {
  try {
    const output = await new Deno.Command(cmd, {
      args,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    return decoder.decode(output.stdout) + decoder.decode(output.stderr);
  } catch {
    return undefined;
  }
}

function luaString(text: string): string {
  return `"${
    text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")
  }"`;
}

/** The wrk script: method, body, headers, and a JSON report from `done`. */
export function buildWrkScript(spec: LoadSpec): string {
  const headers = Object.entries({
    "content-type": "application/json",
    ...spec.headers,
  })
    .map(([name, value]) =>
      `wrk.headers[${luaString(name)}] = ${luaString(value)}`
    );
  return [
    `wrk.method = "POST"`,
    `wrk.body = ${luaString(spec.body)}`,
    ...headers,
    `function done(summary, latency, requests)`,
    `  local e = summary.errors`,
    `  io.write(string.format('${MARK}{"requests":%d,"duration_us":%d,"socket_errors":%d,"timeouts":%d,` +
    `"non2xx":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\\n',`,
    `    summary.requests, summary.duration, e.connect + e.read + e.write, e.timeout, e.status,`,
    `    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))`,
    `end`,
    ``,
  ].join("\n");
}

function createWrk(version: string, tempDir: string): LoadTool {
  let runs = 0;
  return {
    name: "wrk",
    version,
    async run(spec, group) {
      const script = `${tempDir}/wrk_${runs++}.lua`;
      await Deno.writeTextFile(script, buildWrkScript(spec));
      const output = await runToEnd(group, "wrk", {
        cmd: "wrk",
        args: [
          "-t1",
          `-c${spec.connections}`,
          `-d${spec.durationS}s`,
          "--timeout",
          "10s",
          "-s",
          script,
          spec.url,
        ],
        timeoutS: spec.durationS + 30,
      });
      const line = output.split("\n").find((l) => l.startsWith(MARK));
      if (line === undefined) {
        throw new Error(`wrk printed no report:\n${output}`);
      }
      const report = JSON.parse(line.slice(MARK.length));
      const durationS = report.duration_us / 1e6;
      return {
        requests: report.requests,
        durationS,
        rps: report.requests / durationS,
        latencyMs: {
          p50: report.p50 / 1000,
          p90: report.p90 / 1000,
          p99: report.p99 / 1000,
          max: report.max / 1000,
        },
        errors: report.socket_errors + report.timeouts,
        non2xx: report.non2xx,
      };
    },
  };
}

function createAutocannon(version: string): LoadTool {
  return {
    name: "autocannon",
    version,
    async run(spec, group) {
      const headers = Object.entries({
        "content-type": "application/json",
        ...spec.headers,
      })
        .flatMap(([name, value]) => ["-H", `${name}=${value}`]);
      const durationS = Math.max(1, Math.round(spec.durationS));
      const output = await runToEnd(group, "autocannon", {
        cmd: "npx",
        args: [
          "-y",
          "autocannon@8",
          "-c",
          String(spec.connections),
          "-d",
          String(durationS),
          "-m",
          "POST",
          ...headers,
          "-b",
          spec.body,
          "--json",
          spec.url,
        ],
        timeoutS: durationS + 120,
      });
      const line = output.split("\n").find((l) =>
        l.startsWith("{") && l.includes('"latency"')
      );
      if (line === undefined) {
        throw new Error(`autocannon printed no report:\n${output}`);
      }
      const report = JSON.parse(line);
      return {
        requests: report.requests.total,
        durationS: report.duration,
        rps: report.requests.total / report.duration,
        latencyMs: {
          p50: report.latency.p50,
          p90: report.latency.p90,
          p99: report.latency.p99,
          max: report.latency.max,
        },
        errors: report.errors + report.timeouts,
        non2xx: report.non2xx,
      };
    },
  };
}

/** Finds the load generator to use: wrk, else autocannon through npx (or the one `only` names); throws when none runs. */
export async function detectLoadTool(
  tempDir: string,
  only?: LoadToolName,
): Promise<LoadTool> {
  if (only !== "autocannon") {
    const wrk = await commandOutput("wrk", ["--version"]);
    const wrkVersion = /wrk (\S+)/.exec(wrk ?? "")?.[1];
    if (wrkVersion !== undefined) {
      return createWrk(`wrk ${wrkVersion}`, tempDir);
    }
  }
  if (only !== "wrk") {
    const node = await commandOutput("node", ["--version"]);
    const npx = await commandOutput("npx", ["--version"]);
    if (node !== undefined && npx !== undefined) {
      return createAutocannon(`autocannon 8 via npx (Node ${node.trim()})`);
    }
  }
  throw new Error(
    "No load generator found: install wrk (apt-get install wrk) or Node.js with npx",
  );
}
