/**
 * @module
 * The shapes of what one benchmark run measured, as kept in
 * `last_run.json`: throughput rows, streaming rounds, the machine. Types
 * only; `targets.ts` derives the figures and verdicts, `report.ts` prints.
 */

import type { StreamResult } from "./stream_client.ts";

/** Who is measured in a throughput row. */
export type Scenario =
  | "direct"
  | "passthrough"
  | "nginx"
  | "pd"
  | "chain_baseline"
  | "pd_same_client"
  | "toy_pd"
  /** The runtime floor (`floor_proxy.ts`): bare `Deno.serve` + pooled `fetch`, P/D. */
  | "floor_pd"
  /** The runtime floor with the client of `pd_same_client`. */
  | "floor_pd_same_client"
  /** The runtime floor passing a request through to the decoder, as `passthrough`. */
  | "floor_passthrough";

/** One non-streaming measurement; latencies in milliseconds. */
export interface ThroughputRow {
  readonly scenario: Scenario;
  /** "wrk", "autocannon" or "pd_client". */
  readonly tool: string;
  readonly connections: number;
  /** Total requests per second of an open-loop row; closed loops when absent. */
  readonly rate?: number;
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

/** The streams of one section: how the decoder writes and how many streams run at once. */
export interface StreamShapeSettings {
  /** "step": every open stream gets its event on one shared tick; "spread": each stream on its own timer. */
  readonly mode: "step" | "spread";
  readonly streams: number;
  /** The step, or each stream's gap between events, ms. */
  readonly intervalMs: number;
  /** Events per stream. */
  readonly chunks: number;
  /** The client starts its streams spread over this many ms. */
  readonly rampMs: number;
}

/** The paths a stream round measures. */
export type StreamResultPath = "direct" | "nginx" | "sidecar" | "floor";

/** One round of a section: the same streams on each path, the paths taking turns. */
export interface StreamRound {
  /** The client doing the prefill itself, then reading the decoder. */
  readonly direct: StreamResult;
  /** The same, the decode through nginx; absent without nginx. */
  readonly nginx?: StreamResult;
  /** P/D through the sidecar. */
  readonly sidecar: StreamResult;
  /** CPU seconds the sidecar used during its turn. */
  readonly sidecarCpuS: number;
  /** CPU seconds nginx (master and workers) used during its turn. */
  readonly nginxCpuS?: number;
  /** P/D through the runtime floor (`floor_proxy.ts`); absent in schema 3. */
  readonly floor?: StreamResult;
  /** CPU seconds the runtime floor used during its turn. */
  readonly floorCpuS?: number;
}

/** The measured rounds of one stream shape, through one fresh sidecar. */
export interface StreamSection {
  /** Key of the section, e.g. "step_500x50". */
  readonly name: string;
  readonly shape: StreamShapeSettings;
  readonly rounds: readonly StreamRound[];
  /** The sidecar's peak RSS (VmHWM) after the warm-up and every round, MiB. */
  readonly sidecarPeakRssMiB: number;
  /** The runtime floor's, taken as the sidecar's; absent in schema 3. */
  readonly floorPeakRssMiB?: number;
}

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
  /** The Python that ran the toy proxy, with its packages' versions. */
  readonly python: string;
  readonly openFiles: string;
}

/** A target of issue 9, judged on this run. */
export interface TargetResult {
  /** "1a", "2b", ...: the numbering. */
  readonly id: string;
  readonly name: string;
  readonly value: number | null;
  readonly unit: string;
  /** e.g. "<= 0.3", or ">= 0.74 (nginx's share)". */
  readonly threshold: string;
  /** null when a row it needs did not run. */
  readonly pass: boolean | null;
  /**
   * The runtime floor's figure, computed as `value` is, judged by nothing:
   * how much of the target's gap is the runtime's. On every target but
   * 2c; null when the floor's rows did not run.
   */
  readonly floor?: number | null;
}

/** Everything one run produced. */
export interface BenchReport {
  /**
   * 3 since the runtime floor's rows and `TargetResult.floor`; 4 since its
   * stream path (`StreamRound.floor`). A schema-3 report still reads as one:
   * the stream path's fields are optional.
   */
  readonly schema: 3 | 4;
  readonly startedAt: string;
  readonly quick: boolean;
  readonly wallS: number;
  readonly machine: MachineInfo;
  readonly settings: {
    readonly durationS: number;
    readonly warmupS: number;
    readonly burstConnections: number;
    readonly openLoopRate: number;
    readonly sidecarWorkers: number;
    /** The sidecar runtime's `--v8-flags` ("" for none). */
    readonly sidecarV8Flags: string;
    readonly nginxWorkers: string;
  };
  /** Label of the `toy_pd` rows: vLLM's file, or the bench's equivalent. */
  readonly toyProxy: string;
  readonly throughput: readonly ThroughputRow[];
  readonly streaming: readonly StreamSection[];
  /** The sidecar's peak RSS after every non-streaming row, MiB. */
  readonly throughputPeakRssMiB: number | null;
  /** Figures derived from the rows, by name. */
  readonly figures: Readonly<Record<string, number | null>>;
  readonly targets: readonly TargetResult[];
  /** Rows that could not run, and why. */
  readonly notRun: readonly string[];
  readonly notes: readonly string[];
}
