/**
 * @module
 * `deno task bench --cpu-prof`: the sidecar under load 2 (a burst of P/D
 * requests on thousands of connections) and load 3 (step-synchronous
 * streams), each time in a sidecar run with Deno's `--cpu-prof`, and the
 * functions that took the most samples. A profiled sidecar is slower, so
 * these runs judge no target and write no `last_run.json`; the profiles are
 * kept for Chrome DevTools.
 */

import {
  type CpuProfile,
  rankFunctions,
  rankPlaces,
  topLines,
} from "./cpu_profile.ts";
import {
  type Bench,
  measureWithTool,
  PREFILLER_HEADER,
  runStreamClient,
  type SidecarOptions,
  startSidecar,
  urlOf,
} from "./measure.ts";
import { startFastUpstream } from "./processes.ts";
import type { StreamShapeSettings } from "./results.ts";
import { decoderOptions } from "./streaming.ts";

/** What the profiled runs need. */
export interface ProfilePlan {
  readonly burstConnections: number;
  readonly streams: StreamShapeSettings;
  readonly sidecar: SidecarOptions;
  /** Where the `.cpuprofile` files are written and kept. */
  readonly outDir: string;
  readonly top: number;
}

/** The profile a stopped process wrote into `dir`. */
async function readProfile(dir: string): Promise<CpuProfile> {
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.endsWith(".cpuprofile")) {
      return JSON.parse(
        await Deno.readTextFile(`${dir}/${entry.name}`),
      ) as CpuProfile;
    }
  }
  throw new Error(`No .cpuprofile in "${dir}": did the sidecar exit cleanly?`);
}

/** The text for one profile: its sample count and top functions. */
export function describeProfile(
  title: string,
  profile: CpuProfile,
  top: number,
): string {
  const { self, total, samples } = rankFunctions(profile);
  // The idle share goes in the title; the lists rank where the busy time went.
  const idle = [...self].find(([name]) => name.startsWith("(idle)"))?.[1] ?? 0;
  const busy = (map: ReadonlyMap<string, number>) =>
    new Map(
      [...map].filter(([name]) => !/^\((idle|root)\)/.test(name)),
    );
  const busySamples = Math.max(1, samples - idle);
  return [
    `${title}: ${samples} samples, ${
      ((idle / Math.max(1, samples)) * 100).toFixed(1)
    }% idle`,
    "by place, self time summed (% of the busy samples):",
    ...topLines(busy(rankPlaces(profile)), busySamples, top),
    "by self time (% of all samples):",
    ...topLines(busy(self), samples, top),
    "by total time (the function and its callees):",
    ...topLines(busy(total), samples, Math.min(top, 10)),
  ].join("\n");
}

/**
 * Runs one profiled sidecar through `load`, stops it (the runtime writes
 * the profile on exit) and describes the profile.
 */
async function profiled(
  bench: Bench,
  options: {
    readonly title: string;
    readonly dir: string;
    readonly decoderPort: number;
    readonly plan: ProfilePlan;
    readonly load: (sidecarPort: number) => Promise<void>;
  },
): Promise<string> {
  const sidecar = await startSidecar(bench.group, options.decoderPort, {
    ...options.plan.sidecar,
    runtimeFlags: ["--cpu-prof", `--cpu-prof-dir=${options.dir}`],
  });
  await options.load(sidecar.port);
  // A graceful stop: the profile is written as the runtime exits.
  await bench.group.stop(sidecar.process, 30_000);
  const profile = await readProfile(options.dir);
  return describeProfile(options.title, profile, options.plan.top);
}

/** Profiles the sidecar under loads 2 and 3 and returns the report text. */
export async function profileSidecar(
  bench: Bench,
  plan: ProfilePlan,
): Promise<string> {
  const { group } = bench;
  const prefill = await startFastUpstream(group, "prefill");
  const decode = await startFastUpstream(group, "decode");
  const pd = { [PREFILLER_HEADER]: `127.0.0.1:${prefill.port}` };
  const burst = await profiled(bench, {
    title:
      `load 2: P/D, ${plan.burstConnections} connections, ${bench.durationS} s (after a 32-connection warm-up)`,
    dir: `${plan.outDir}/burst`,
    decoderPort: decode.port,
    plan,
    load: async (port) => {
      await measureWithTool({ ...bench, durationS: 1 }, "pd", {
        url: urlOf(port),
        headers: pd,
        connections: 32,
      });
      await measureWithTool(bench, "pd", {
        url: urlOf(port),
        headers: pd,
        connections: plan.burstConnections,
      });
    },
  });
  const { streams } = plan;
  const stepDecoder = await startFastUpstream(
    group,
    "decode",
    decoderOptions(streams),
  );
  const stream = await profiled(bench, {
    title:
      `load 3: ${streams.streams} P/D streams x ${streams.chunks} events, ${streams.intervalMs} ms steps`,
    dir: `${plan.outDir}/streams`,
    decoderPort: stepDecoder.port,
    plan,
    load: async (port) => {
      await runStreamClient(group, {
        url: urlOf(port),
        headers: pd,
        streams: streams.streams,
        rampMs: streams.rampMs,
        chunks: streams.chunks,
      });
    },
  });
  return [
    burst,
    "",
    stream,
    "",
    `profiles kept in ${plan.outDir} (open them in Chrome DevTools, Performance tab)`,
  ].join("\n");
}
