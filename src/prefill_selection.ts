/**
 * @module
 * Chooses the prefill target from the routing headers the scheduler (llm-d
 * EPP) sets: `x-prefiller-host-port`, else the legacy `x-prefiller-url`.
 */

import {
  HEADER_PREFILLER_HOST_PORT,
  HEADER_PREFILLER_URL,
} from "./protocol/fields.ts";
import type { HeaderLookup } from "./upstream/headers.ts";
import { parseTarget, type UpstreamTarget } from "./upstream/target.ts";

/** Options of `selectPrefillTarget`. */
export interface SelectionOptions {
  /** Pick uniformly at random instead of the first (`-enable-prefiller-sampling`). */
  readonly sampling: boolean;
  /** Random number in [0, 1). */
  readonly random: () => number;
}

function candidates(headers: HeaderLookup, name: string): string[] {
  // Several header lines reach us joined by ", ", so lines and a single
  // comma-separated value read the same; empty entries are skipped.
  const value = headers.get(name);
  if (value === null) return [];
  return value.split(",").map((part) => part.trim()).filter((part) =>
    part !== ""
  );
}

/** The routing header in use and the entries it names, in order. */
function namedEntries(
  headers: HeaderLookup,
): { readonly header: string; readonly values: string[] } {
  const values = candidates(headers, HEADER_PREFILLER_HOST_PORT);
  if (values.length > 0) return { header: HEADER_PREFILLER_HOST_PORT, values };
  return {
    header: HEADER_PREFILLER_URL,
    values: candidates(headers, HEADER_PREFILLER_URL),
  };
}

/** Every valid target the routing header names, in order; empty when none. */
function namedTargets(headers: HeaderLookup): UpstreamTarget[] {
  const { header, values } = namedEntries(headers);
  return values.map((value) => parseTarget(value, header));
}

/**
 * The prefillers a request's retries may go to: `chosen` first, then the
 * others the header names in their order after it, each once.
 */
export function prefillCandidates(
  headers: HeaderLookup,
  chosen: UpstreamTarget,
): UpstreamTarget[] {
  // One entry (most requests) is the chosen one, already parsed and checked.
  if (namedEntries(headers).values.length <= 1) return [chosen];
  const targets = namedTargets(headers);
  const start = targets.findIndex((target) =>
    target.hostPort === chosen.hostPort
  );
  const rotated = start === -1
    ? targets
    : [...targets.slice(start), ...targets.slice(0, start)];
  const seen = new Set<string>([chosen.hostPort]);
  const out = [chosen];
  for (const target of rotated) {
    if (seen.has(target.hostPort)) continue;
    seen.add(target.hostPort);
    out.push(target);
  }
  return out;
}

/**
 * The prefill target of a request, or undefined when it names none (plain
 * decode). Every candidate is validated, so a bad value is a 400 even when
 * sampling would not have picked it.
 */
export function selectPrefillTarget(
  headers: HeaderLookup,
  options: SelectionOptions,
): UpstreamTarget | undefined {
  const targets = namedTargets(headers);
  if (targets.length === 0) return undefined;
  const index = options.sampling
    ? Math.floor(options.random() * targets.length)
    : 0;
  return targets[Math.min(index, targets.length - 1)];
}
