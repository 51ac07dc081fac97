/**
 * @module
 * Chooses the prefill target from the routing headers the scheduler (llm-d
 * EPP) sets: `x-prefiller-host-port`, else the legacy `x-prefiller-url`.
 */

import {
  HEADER_PREFILLER_HOST_PORT,
  HEADER_PREFILLER_URL,
} from "./protocol/fields.ts";
import { ProxyError } from "./errors.ts";
import type { HeaderLookup } from "./upstream/headers.ts";
import { parseTarget, type UpstreamTarget } from "./upstream/target.ts";

/** Options of `selectPrefillTarget`. */
export interface SelectionOptions {
  /** Pick uniformly at random instead of the first (`-enable-prefiller-sampling`). */
  readonly sampling: boolean;
  /** Random number in [0, 1). */
  readonly random: () => number;
}

/**
 * Most entries a prefiller routing header may list. The scheduler (llm-d
 * EPP) names one prefiller per request; a list only feeds
 * `-enable-prefiller-sampling` and the retries, which use one entry per
 * attempt (`-prefill-max-retries`, none by default). The Go sidecar bounds
 * nothing but the head size (64 KiB here), so one request could list
 * thousands of entries, each parsed twice: milliseconds of CPU a request.
 * 32 is far above a candidate list a scheduler sends and costs nothing.
 */
export const MAX_PREFILL_TARGETS = 32;

function tooManyTargets(header: string): ProxyError {
  return new ProxyError(
    400,
    `Header "${header}" lists more than ${MAX_PREFILL_TARGETS} prefill targets: at most ${MAX_PREFILL_TARGETS} are allowed`,
    { code: "too_many_prefill_targets" },
  );
}

function candidates(headers: HeaderLookup, name: string): string[] {
  const value = headers.get(name);
  if (value === null) return [];
  // One target, as on almost every request: nothing to split.
  if (!value.includes(",")) {
    const single = value.trim();
    return single === "" ? [] : [single];
  }
  // Several header lines reach us joined by ", ", so lines and a single
  // comma-separated value read the same. Splitting stops one past the cap,
  // so a header of thousands of entries costs no more than 33; empty
  // entries count, and are then skipped.
  const parts = value.split(",", MAX_PREFILL_TARGETS + 1);
  if (parts.length > MAX_PREFILL_TARGETS) throw tooManyTargets(name);
  return parts.map((part) => part.trim()).filter((part) => part !== "");
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
 * sampling would not have picked it; more than `MAX_PREFILL_TARGETS` is a 400
 * `too_many_prefill_targets`.
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
