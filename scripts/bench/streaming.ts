/**
 * @module
 * Load 3: the same SSE streams from the fast decoder read four ways, in
 * rounds where the paths take turns: the client doing the prefill itself
 * and reading the decoder directly (the client's and decoder's own delays),
 * the same with the decode through nginx (what a C proxy adds on this
 * machine), P/D through the sidecar, and the same P/D requests through the
 * runtime floor (`floor_proxy.ts`: what `Deno.serve` + `fetch` alone add).
 * Each section has its own decoder (step-synchronous or evenly spread),
 * nginx, and a fresh sidecar and floor, so their peak RSS is that section's.
 */

import {
  type Bench,
  PREFILLER_HEADER,
  runStreamClient,
  type SidecarOptions,
  startFloorProxy,
  startSidecar,
  type StreamRun,
  urlOf,
} from "./measure.ts";
import { startNginx } from "./nginx.ts";
import {
  cpuSecondsOf,
  freePort,
  memoryMiB,
  startFastUpstream,
} from "./processes.ts";
import type {
  StreamRound,
  StreamSection,
  StreamShapeSettings,
} from "./results.ts";
import type { StreamResult } from "./stream_client.ts";

/** One section to measure. */
export interface StreamSectionPlan {
  readonly name: string;
  readonly shape: StreamShapeSettings;
  readonly rounds: number;
  /** One full-size run per path first: a path's first run measured up to 5x the p99 of its next. */
  readonly warmUp: boolean;
}

/** What the sections share. */
export interface StreamContext {
  readonly bench: Bench;
  readonly tempDir: string;
  readonly prefillPort: number;
  readonly nginx?: { readonly version: string; readonly workers: string };
  readonly sidecar: SidecarOptions;
  readonly progress: (text: string) => void;
}

/** The fast decoder's flags for `shape`. */
export function decoderOptions(
  shape: StreamShapeSettings,
): { chunks: number; intervalMs?: number; stepMs?: number } {
  return shape.mode === "step"
    ? { chunks: shape.chunks, stepMs: shape.intervalMs }
    : { chunks: shape.chunks, intervalMs: shape.intervalMs };
}

/** Starts the decoder, nginx and a sidecar of one section, measures its rounds and stops them. */
export async function measureStreamSection(
  context: StreamContext,
  plan: StreamSectionPlan,
): Promise<StreamSection> {
  const { group, ticks } = context.bench;
  const { shape } = plan;
  const decoder = await startFastUpstream(
    group,
    "decode",
    decoderOptions(shape),
  );
  const nginx = context.nginx === undefined ? undefined : await startNginx(
    group,
    {
      prefix: `${context.tempDir}/nginx-${plan.name}`,
      port: freePort(),
      upstreamPort: decoder.port,
      ...context.nginx,
    },
  );
  const sidecar = await startSidecar(group, decoder.port, context.sidecar);
  const floor = await startFloorProxy(group, decoder.port, {
    v8Flags: context.sidecar.v8Flags,
  });
  const common = {
    streams: shape.streams,
    rampMs: shape.rampMs,
    chunks: shape.chunks,
  };
  const direct: StreamRun = {
    ...common,
    url: urlOf(decoder.port),
    prefillUrl: urlOf(context.prefillPort),
    headers: {},
  };
  // The sidecar and the floor get the same P/D request and do the prefill themselves.
  const pd = (port: number): StreamRun => ({
    ...common,
    url: urlOf(port),
    headers: { [PREFILLER_HEADER]: `127.0.0.1:${context.prefillPort}` },
  });
  const paths = {
    direct: { run: direct, pid: undefined },
    nginx: nginx === undefined
      ? undefined
      : { run: { ...direct, url: urlOf(nginx.port) }, pid: nginx.process.pid },
    sidecar: { run: pd(sidecar.port), pid: sidecar.process.pid },
    floor: { run: pd(floor.port), pid: floor.process.pid },
  };
  const measure = async (
    path: { run: StreamRun; pid: number | undefined },
  ): Promise<{ result: StreamResult; cpuS: number }> => {
    const pids = path.pid === undefined ? [] : [path.pid];
    const before = await cpuSecondsOf(pids, ticks);
    const result = await runStreamClient(group, path.run);
    return { result, cpuS: (await cpuSecondsOf(pids, ticks)) - before };
  };
  const order = [paths.direct, paths.nginx, paths.sidecar, paths.floor];
  if (plan.warmUp) {
    for (const path of order) if (path !== undefined) await measure(path);
  }
  const rounds: StreamRound[] = [];
  for (let round = 0; round < plan.rounds; round++) {
    const directRun = await measure(paths.direct);
    const nginxRun = paths.nginx === undefined
      ? undefined
      : await measure(paths.nginx);
    // The sidecar and the floor swap turns each round, so what one leaves
    // running after its turn (GC, closing streams) falls on each in turn.
    const floorFirst = round % 2 === 1;
    const floorBefore = floorFirst ? await measure(paths.floor) : undefined;
    const sidecarRun = await measure(paths.sidecar);
    const floorRun = floorBefore ?? await measure(paths.floor);
    rounds.push({
      direct: directRun.result,
      ...(nginxRun === undefined
        ? {}
        : { nginx: nginxRun.result, nginxCpuS: nginxRun.cpuS }),
      sidecar: sidecarRun.result,
      sidecarCpuS: sidecarRun.cpuS,
      floor: floorRun.result,
      floorCpuS: floorRun.cpuS,
    });
    const p99 = (result: StreamResult | undefined) =>
      result?.delayMs.p99.toFixed(1) ?? "-";
    context.progress(
      `${plan.name} round ${round + 1}: delay p99 direct ${
        p99(directRun.result)
      } ms, nginx ${p99(nginxRun?.result)} ms, sidecar ${
        p99(sidecarRun.result)
      } ms, runtime floor ${
        p99(floorRun.result)
      } ms; sidecar ${sidecarRun.result.completed}/${sidecarRun.result.streams} done`,
    );
  }
  const sidecarPeakRssMiB = (await memoryMiB(sidecar.process.pid)).peak;
  const floorPeakRssMiB = (await memoryMiB(floor.process.pid)).peak;
  await group.stop(floor.process);
  await group.stop(sidecar.process);
  if (nginx !== undefined) await group.stop(nginx.process);
  await group.stop(decoder.process);
  return { name: plan.name, shape, rounds, sidecarPeakRssMiB, floorPeakRssMiB };
}
