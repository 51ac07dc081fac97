// deno-lint-ignore-file no-console -- a terminal report: printing is its job
/**
 * @module
 * The top functions of a V8 `.cpuprofile` (as `deno run --cpu-prof` writes
 * it), by self time and by total time. `deno task bench --cpu-prof` uses it
 * on the sidecar's profiles; it also runs on its own:
 *
 *   deno run --allow-read scripts/bench/cpu_profile.ts FILE [--top 25]
 */

import { parseArgs } from "node:util";

/** One node of the profile's call tree. */
export interface ProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  readonly children?: readonly number[];
}

/** The parts of a `.cpuprofile` read here. */
export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  /** The leaf node of each sample. */
  readonly samples: readonly number[];
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
  profile: CpuProfile,
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
    // A recursive function counts once per sample in its total.
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

/** The repository's root as profiles spell it, so the sidecar's own modules read `src/…`. */
const REPOSITORY = new URL("../../", import.meta.url).href;

/**
 * Where a frame's code lives, for the self time summed by place: the
 * sidecar's own modules one by one, Hono, each runtime extension, each op,
 * garbage collection. A try that would remove a place can win at most its
 * share (issue 9's "passthrough without Hono's router": Hono's share).
 */
export function placeOf(node: ProfileNode): string {
  const { functionName, url } = node.callFrame;
  if (/^\((idle|root|program|garbage collector)\)$/.test(functionName)) {
    return functionName;
  }
  if (functionName.startsWith("op_")) return `op ${functionName}`;
  const npm = /registry\.npmjs\.org\/((@[^/]+\/)?[^/]+)\//.exec(url);
  if (npm) return npm[1] === "hono" ? "hono" : `npm ${npm[1]}`;
  if (url.startsWith("ext:")) return url.split("/")[0]!;
  if (url.startsWith(REPOSITORY)) return url.slice(REPOSITORY.length);
  return url === "" ? "(native)" : url;
}

/** Self samples summed by {@linkcode placeOf}. */
export function rankPlaces(profile: CpuProfile): Map<string, number> {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const places = new Map<string, number>();
  for (const id of profile.samples) {
    const node = byId.get(id);
    if (node === undefined) continue;
    const place = placeOf(node);
    places.set(place, (places.get(place) ?? 0) + 1);
  }
  return places;
}

/** The `count` largest entries of `map` as "  12.3%  name" lines. */
export function topLines(
  map: ReadonlyMap<string, number>,
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
  ) as CpuProfile;
  const { self, total, samples } = rankFunctions(profile);
  const count = Number(values.top);
  console.log(`${samples} samples\n\nby place (self time summed):`);
  console.log(topLines(rankPlaces(profile), samples, count).join("\n"));
  console.log(`\nby self time:`);
  console.log(topLines(self, samples, count).join("\n"));
  console.log("\nby total time (function and its callees):");
  console.log(topLines(total, samples, count).join("\n"));
}
