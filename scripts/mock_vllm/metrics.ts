/**
 * Counters behind `GET /metrics`, rendered in Prometheus text format 0.0.4
 * with vLLM's metric names and labels (vllm-wire.md §1.8, §7) plus the
 * mock's own `mock_vllm:` series.
 *
 * @module
 */

/** `finished_reason` values vLLM labels `request_success_total` with. */
export type FinishedReason =
  | "stop"
  | "length"
  | "cache_threshold"
  | "abort"
  | "error";

/** Outcomes of a decoder's KV pull. */
export type KvPullOutcome = "pulled" | "recomputed" | "failed";

/** Mutable counters of one mock. */
export interface Metrics {
  running: number;
  promptTokens: number;
  generationTokens: number;
  readonly success: Record<FinishedReason, number>;
  readonly kvPulls: Record<KvPullOutcome, number>;
  aborted: number;
}

/** Content type of the Prometheus text exposition vLLM serves. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** All counters at zero. */
export function createMetrics(): Metrics {
  return {
    running: 0,
    promptTokens: 0,
    generationTokens: 0,
    success: { stop: 0, length: 0, cache_threshold: 0, abort: 0, error: 0 },
    kvPulls: { pulled: 0, recomputed: 0, failed: 0 },
    aborted: 0,
  };
}

/** Renders the exposition text. */
export function renderMetrics(metrics: Metrics, model: string): string {
  const base = `engine="0",model_name="${escapeLabel(model)}"`;
  const lines: string[] = [];
  const family = (
    name: string,
    type: string,
    help: string,
    samples: readonly [string, number][],
  ) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      lines.push(`${name}${labels ? `{${labels}}` : ""} ${pyFloat(value)}`);
    }
  };
  family(
    "vllm:num_requests_running",
    "gauge",
    "Number of requests in model execution batches.",
    [
      [base, metrics.running],
    ],
  );
  family(
    "vllm:num_requests_waiting",
    "gauge",
    "Number of requests waiting to be processed.",
    [[base, 0]],
  );
  family(
    "vllm:prompt_tokens_total",
    "counter",
    "Number of prefill tokens processed.",
    [
      [base, metrics.promptTokens],
    ],
  );
  family(
    "vllm:generation_tokens_total",
    "counter",
    "Number of generation tokens processed.",
    [
      [base, metrics.generationTokens],
    ],
  );
  family(
    "vllm:request_success_total",
    "counter",
    "Count of successfully processed requests.",
    (Object.entries(metrics.success) as [FinishedReason, number][]).map((
      [reason, value],
    ) => [
      `engine="0",finished_reason="${reason}",model_name="${
        escapeLabel(model)
      }"`,
      value,
    ]),
  );
  family(
    "mock_vllm:kv_pulls_total",
    "counter",
    "KV loads (pulls, waits, cache lookups) attempted by this engine, by outcome.",
    (Object.entries(metrics.kvPulls) as [KvPullOutcome, number][]).map((
      [outcome, value],
    ) => [
      `outcome="${outcome}"`,
      value,
    ]),
  );
  family(
    "mock_vllm:requests_aborted_total",
    "counter",
    "Generation requests aborted (client gone or shutdown).",
    [
      ["", metrics.aborted],
    ],
  );
  return `${lines.join("\n")}\n`;
}

/** Python's float repr for whole numbers ("3.0"), as prometheus_client prints them. */
function pyFloat(value: number): string {
  return Number.isInteger(value) ? `${value}.0` : String(value);
}

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll(
    "\n",
    "\\n",
  );
}
