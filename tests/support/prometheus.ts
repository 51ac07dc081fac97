/**
 * @module
 * Reads a Prometheus text exposition with a parser that shares nothing with
 * the sidecar's metrics library, so a malformed scrape fails the tests.
 */

import parsePrometheusTextFormat from "parse-prometheus-text-format";

/** One series: a sample name, its labels and value. */
export interface Series {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A parsed scrape: each family's type, and every series. */
export interface Exposition {
  /** Family name to type (`COUNTER`, `GAUGE`, `HISTOGRAM`, ...). */
  readonly types: ReadonlyMap<string, string>;
  readonly series: readonly Series[];
}

function record(value: unknown): Record<string, unknown> {
  if (typeof value !== "object" || value === null) {
    throw new Error(`Not an object: ${JSON.stringify(value)}`);
  }
  return value as Record<string, unknown>;
}

function families(text: string): Record<string, unknown>[] {
  const parsed: unknown = parsePrometheusTextFormat(text);
  if (!Array.isArray(parsed)) throw new Error("Parser returned no families");
  return parsed.map(record);
}

/**
 * Parses `text`; throws when it is not the text format. The parser folds a
 * labelled histogram's series into one and drops their counts, so histogram
 * series are read a second time with their HELP and TYPE lines left out,
 * which makes each `_bucket`, `_sum` and `_count` line a plain series.
 */
export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  for (const family of families(text)) {
    types.set(String(family.name), String(family.type));
  }
  const histograms = [...types].filter(([, type]) => type === "HISTOGRAM")
    .map(([name]) => name);
  const plain = text.split("\n").filter((line) =>
    !histograms.some((name) =>
      line.startsWith(`# HELP ${name} `) || line.startsWith(`# TYPE ${name} `)
    )
  ).join("\n");
  const series: Series[] = [];
  for (const family of families(plain)) {
    const metrics = Array.isArray(family.metrics) ? family.metrics : [];
    for (const metric of metrics) {
      const sample = record(metric);
      series.push({
        name: String(family.name),
        labels: sample.labels === undefined
          ? {}
          : record(sample.labels) as Record<string, string>,
        value: Number(sample.value),
      });
    }
  }
  return { types, series };
}

/** The sum over series of `name` (a histogram's `_count` series) whose labels include `labels`. */
export function total(
  exposition: Exposition,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  const sampleName = exposition.types.get(name) === "HISTOGRAM"
    ? `${name}_count`
    : name;
  return exposition.series
    .filter((series) =>
      series.name === sampleName &&
      Object.entries(labels).every(([key, value]) =>
        series.labels[key] === value
      )
    )
    .reduce((sum, series) => sum + series.value, 0);
}

/** What `metrics` exposes now, parsed. */
export async function scrape(
  metrics: { render(): Promise<string> },
): Promise<Exposition> {
  return parseExposition(await metrics.render());
}
