/**
 * @module
 * The sidecar's Prometheus metrics: one registry per listener thread, typed
 * recording functions whose labels take values from closed sets only (never a
 * host, path or model name, so a scrape's size stays bounded), and the
 * text exposition. `prom-client` does the bookkeeping and the format.
 */

import {
  AggregatorRegistry,
  Counter,
  Gauge,
  Histogram,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from "prom-client";
import type { RouteName } from "./context.ts";
import type { ConnectorName, EcConnectorName } from "./flag_table.ts";

/** Prefix of every metric name. */
export const METRIC_PREFIX = "llm_d_sidecar_";

/** A `connector` label value: the P/D or encoder connector that ran. */
export type MetricConnector = ConnectorName | EcConnectorName;
/** Which handler answered a request (the access line's `route`). */
export type MetricRoute = RouteName;
/** How a request ended (the access line's `outcome`). */
export type MetricOutcome = "ok" | "client_aborted" | "error";
/** An upstream leg of a request. */
export type Leg = "prefill" | "decode";
/** Upstream failures without a response: what `UpstreamError.kind` says, less the client's abort. */
const TRANSPORT_CAUSES = [
  "refused",
  "dns",
  "reset",
  "timeout",
  "other",
] as const;
/** One of the transport failures, the part of {@linkcode FailureCause} without a response. */
export type TransportCause = typeof TRANSPORT_CAUSES[number];
/**
 * Why an upstream request got no usable answer: the transport failures of
 * `UpstreamError.kind` (less the client's abort), a timeout, or an answer
 * that arrived but was unusable.
 */
export const FAILURE_CAUSES = [
  ...TRANSPORT_CAUSES,
  "status_3xx",
  "status_4xx",
  "status_5xx",
  "bad_answer",
] as const;
/** One of {@linkcode FAILURE_CAUSES}. */
export type FailureCause = typeof FAILURE_CAUSES[number];
/**
 * Kinds of a failed upstream attempt: every {@linkcode FailureCause} but
 * `status_4xx`, which is the request's fault, not the upstream's.
 */
export const UPSTREAM_ERROR_KINDS = [
  ...TRANSPORT_CAUSES,
  "status_3xx",
  "status_5xx",
  "bad_answer",
] as const satisfies readonly FailureCause[];
/** One of {@linkcode UPSTREAM_ERROR_KINDS}. */
export type UpstreamErrorKind = typeof UPSTREAM_ERROR_KINDS[number];
/** When a client left: before its answer's head was ready, or while it streamed. */
export type AbortPhase = "before_response" | "during_response";

/** What the end of a request tells the metrics. */
export interface RequestEnd {
  readonly route: MetricRoute;
  /** Undefined or empty off the P/D route: labelled `none`. */
  readonly connector: MetricConnector | "" | undefined;
  readonly outcome: MetricOutcome;
  readonly seconds: number;
}

/** Records what the sidecar does; every method is cheap and never throws. */
export interface Metrics {
  /** A request arrived. */
  requestStarted(): void;
  /** The answer's head is ready after `seconds`; a body of unknown length counts as a stream until it ends. */
  responseStarted(
    route: MetricRoute,
    seconds: number,
    streaming: boolean,
  ): void;
  /** A streamed answer ended (sent whole, or the client left). */
  streamEnded(): void;
  /** The answer was sent or the client left. */
  requestEnded(end: RequestEnd): void;
  /** A prefill leg (with its retries) ended after `seconds`. */
  prefill(connector: MetricConnector, ok: boolean, seconds: number): void;
  /** The decoder's answer head arrived `seconds` after the decode leg was sent. */
  decodeFirstByte(connector: MetricConnector, seconds: number): void;
  /** The decode answer was sent to the client (or the client left), `seconds` after the leg was sent. */
  decodeEnded(connector: MetricConnector, seconds: number): void;
  /** The client left. */
  clientAbort(phase: AbortPhase): void;
  /** An upstream attempt failed on the upstream's side (a retried one too). */
  upstreamError(leg: Leg, kind: UpstreamErrorKind): void;
  /** A leg failed for good (after any retries), or a decode timed out; the request answers an error or falls back. */
  failure(leg: Leg, cause: FailureCause): void;
  /** A prefill attempt failed with `cause` and is tried again. */
  retry(cause: FailureCause): void;
  /** A failed prefill (for `cause`) fell back to decoding locally alone. */
  fallback(cause: FailureCause): void;
}

/** Metrics that can be read: the text exposition, and a snapshot for aggregation across threads. */
export interface MetricsRegistry extends Metrics {
  /** Content type of {@linkcode render}'s text. */
  readonly contentType: string;
  /** The Prometheus text exposition of this registry. */
  render(): Promise<string>;
  /** The values as plain data (structured-cloneable), to merge with other threads'. */
  snapshot(): Promise<MetricSnapshot>;
}

/** One registry's values as plain data (prom-client's JSON form). */
export type MetricSnapshot = MetricObjectWithValues<MetricValue<string>>[];

const FAST_BUCKETS = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
];
// A generation can stream for many minutes.
const LONG_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

/** Metrics that record nothing, for apps built without a registry. */
export const NO_METRICS: Metrics = {
  requestStarted() {},
  responseStarted() {},
  streamEnded() {},
  requestEnded() {},
  prefill() {},
  decodeFirstByte() {},
  decodeEnded() {},
  clientAbort() {},
  upstreamError() {},
  failure() {},
  retry() {},
  fallback() {},
};

/** A metric's name (after the prefix), help text and label names. */
interface MetricSpec<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
}

/** Builders of prefixed metrics on `registers`, so each declaration states only what is its own. */
function createDeclarations(registers: Registry[]) {
  const config = <L extends string>(spec: MetricSpec<L>) => ({
    ...spec,
    name: `${METRIC_PREFIX}${spec.name}`,
    registers,
  });
  return {
    counter: <L extends string>(spec: MetricSpec<L>) =>
      new Counter<L>(config(spec)),
    gauge: (spec: MetricSpec<never>) => new Gauge(config(spec)),
    histogram: <L extends string>(
      spec: MetricSpec<L> & { readonly buckets: readonly number[] },
    ) => new Histogram<L>({ ...config(spec), buckets: [...spec.buckets] }),
  };
}

/** Creates the metrics of one listener thread on a registry of their own. */
export function createMetrics(): MetricsRegistry {
  const registry = new Registry();
  const { counter, gauge, histogram } = createDeclarations([registry]);
  const requests = counter({
    name: "requests_total",
    help:
      "Requests answered, by route, connector (none off the P/D route) and outcome",
    labelNames: ["route", "connector", "outcome"] as const,
  });
  const requestDuration = histogram({
    name: "request_duration_seconds",
    help:
      "Time from a request's arrival to its answer's last byte (or the client leaving), by route",
    labelNames: ["route"] as const,
    buckets: LONG_BUCKETS,
  });
  const firstByte = histogram({
    name: "time_to_first_byte_seconds",
    help:
      "Time from a request's arrival until its answer's head is ready, by route; on pd it includes the prefill",
    labelNames: ["route"] as const,
    buckets: FAST_BUCKETS,
  });
  const inFlight = gauge({
    name: "requests_in_flight",
    help: "Requests arrived whose answer has not ended",
  });
  const streams = gauge({
    name: "streams_in_flight",
    help: "Answers of unknown length (streams) being sent",
  });
  const prefill = histogram({
    name: "prefill_duration_seconds",
    help: "Prefill leg duration, retries included, by connector and outcome",
    labelNames: ["connector", "outcome"] as const,
    buckets: FAST_BUCKETS,
  });
  const decodeFirstByte = histogram({
    name: "decode_first_byte_seconds",
    help:
      "Time from sending the decode leg until the decoder's answer head arrived, by connector",
    labelNames: ["connector"] as const,
    buckets: FAST_BUCKETS,
  });
  const decodeDuration = histogram({
    name: "decode_duration_seconds",
    help:
      "Time from sending the decode leg until its answer was sent to the client, by connector",
    labelNames: ["connector"] as const,
    buckets: LONG_BUCKETS,
  });
  const aborts = counter({
    name: "client_aborts_total",
    help: "Clients that left before their answer ended, by phase",
    labelNames: ["phase"] as const,
  });
  const upstreamErrors = counter({
    name: "upstream_errors_total",
    help:
      "Failed attempts of P/D legs, retried ones included (no response, a 5xx, an unusable answer), by leg and kind",
    labelNames: ["leg", "kind"] as const,
  });
  const failures = counter({
    name: "failures_total",
    help: "Legs that failed for good (after retries), by leg and cause",
    labelNames: ["leg", "cause"] as const,
  });
  const retries = counter({
    name: "prefill_retries_total",
    help: "Prefill attempts tried again, by the cause of the failed attempt",
    labelNames: ["cause"] as const,
  });
  const fallbacks = counter({
    name: "prefill_fallbacks_total",
    help: "Requests decoded locally alone after their prefill failed, by cause",
    labelNames: ["cause"] as const,
  });
  return {
    contentType: registry.contentType,
    render: () => registry.metrics(),
    snapshot: () => registry.getMetricsAsJSON() as Promise<MetricSnapshot>,
    requestStarted: () => inFlight.inc(),
    responseStarted(route, seconds, streaming) {
      firstByte.observe({ route }, seconds);
      if (streaming) streams.inc();
    },
    streamEnded: () => streams.dec(),
    requestEnded(end) {
      inFlight.dec();
      requests.inc({
        route: end.route,
        connector: end.connector || "none",
        outcome: end.outcome,
      });
      requestDuration.observe({ route: end.route }, end.seconds);
    },
    prefill(connector, ok, seconds) {
      prefill.observe({ connector, outcome: ok ? "ok" : "error" }, seconds);
    },
    decodeFirstByte: (connector, seconds) =>
      decodeFirstByte.observe({ connector }, seconds),
    decodeEnded: (connector, seconds) =>
      decodeDuration.observe({ connector }, seconds),
    clientAbort: (phase) => aborts.inc({ phase }),
    upstreamError: (leg, kind) => upstreamErrors.inc({ leg, kind }),
    failure: (leg, cause) => failures.inc({ leg, cause }),
    retry: (cause) => retries.inc({ cause }),
    fallback: (cause) => fallbacks.inc({ cause }),
  };
}

/**
 * Merges the snapshots of several threads' registries into one text
 * exposition: counters, gauges and histograms summed per label set
 * (prom-client's cluster aggregation, fed by message passing instead).
 */
export async function renderAggregate(
  snapshots: readonly MetricSnapshot[],
): Promise<string> {
  return await AggregatorRegistry.aggregate([...snapshots]).metrics();
}
