// deno-lint-ignore-file no-console -- a terminal report: printing is its job
/**
 * @module
 * Experiment (not shipped): the top functions of a V8 `.cpuprofile` (as
 * `deno run --cpu-prof` writes it), by self time and by total time.
 *
 *   deno run --allow-read scripts/bench/experiments/cpuprofile_top.ts FILE [--top 25]
 */

import { parseArgs } from "node:util";

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { functionName: string; url: string; lineNumber: number };
  readonly hitCount?: number;
  readonly children?: number[];
}

interface Profile {
  readonly nodes: ProfileNode[];
  readonly samples: number[];
}

/** "name file:line", with the file shortened to what identifies it. */
export function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url.replace(
    /^.*\/(node_modules|npm|main|ext|src|scripts)\//,
    "$1/",
  ).replace(/^file:\/\//, "");
  return `${functionName || "(anonymous)"} ${file}${
    url ? `:${lineNumber + 1}` : ""
  }`;
}

/** Self and total sample counts per function. */
export function rankFunctions(
  profile: Profile,
): { self: Map<string, number>; total: Map<string, number>; samples: number } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  for (const id of profile.samples) {
    const leaf = byId.get(id);
    if (leaf === undefined) continue;
    self.set(frameName(leaf), (self.get(frameName(leaf)) ?? 0) + 1);
    const seen = new Set<string>();
    for (
      let current: number | undefined = id;
      current !== undefined;
      current = parent.get(current)
    ) {
      const node = byId.get(current);
      if (node === undefined) break;
      const name = frameName(node);
      if (seen.has(name)) continue;
      seen.add(name);
      total.set(name, (total.get(name) ?? 0) + 1);
    }
  }
  return { self, total, samples: profile.samples.length };
}

function top(
  map: Map<string, number>,
  samples: number,
  count: number,
): string[] {
  return [...map].sort((a, b) => b[1] - a[1]).slice(0, count)
    .map(([name, hits]) =>
      `${((hits / samples) * 100).toFixed(1).padStart(5)}%  ${name}`
    );
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { top: { type: "string", default: "25" } },
  });
  const profile = JSON.parse(
    await Deno.readTextFile(positionals[0] ?? ""),
  ) as Profile;
  const { self, total, samples } = rankFunctions(profile);
  const count = Number(values.top);
  console.log(`${samples} samples\n\nby self time:`);
  console.log(top(self, samples, count).join("\n"));
  console.log("\nby total time (function and its callees):");
  console.log(top(total, samples, count).join("\n"));
}
