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

/**
 * The prefill target of a request, or undefined when it names none (plain
 * decode). Every candidate is validated, so a bad value is a 400 even when
 * sampling would not have picked it.
 */
export function selectPrefillTarget(
  headers: HeaderLookup,
  options: SelectionOptions,
): UpstreamTarget | undefined {
  let header = HEADER_PREFILLER_HOST_PORT;
  let values = candidates(headers, header);
  if (values.length === 0) {
    header = HEADER_PREFILLER_URL;
    values = candidates(headers, header);
  }
  if (values.length === 0) return undefined;
  const targets = values.map((value) => parseTarget(value, header));
  const index = options.sampling
    ? Math.floor(options.random() * targets.length)
    : 0;
  return targets[Math.min(index, targets.length - 1)];
}
