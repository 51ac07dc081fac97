/**
 * @module
 * What the sidecar reads from Kubernetes objects, as pure functions over
 * `unknown` JSON: an InferencePool's pod selector and target ports, and a
 * pod's addresses when it may serve. Both API versions are read: v1
 * (`inference.networking.k8s.io`: `spec.selector.matchLabels` and
 * `matchExpressions`, `spec.targetPorts[].number`) and v1alpha2
 * (`inference.networking.x-k8s.io`: a flat `spec.selector` map,
 * `spec.targetPortNumber`).
 */

import type { POOL_GROUPS } from "../flag_table.ts";

/** API group of the InferencePool, as `-pool-group` names it. */
export type PoolGroup = typeof POOL_GROUPS[number];

/** The version the sidecar reads for each group (as the Go sidecar). */
export const POOL_VERSIONS: Readonly<Record<PoolGroup, string>> = {
  "inference.networking.k8s.io": "v1",
  "inference.networking.x-k8s.io": "v1alpha2",
};

/** One `matchExpressions` requirement. */
export interface LabelRequirement {
  readonly key: string;
  readonly operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  readonly values: readonly string[];
}

/** A Kubernetes label selector. */
export interface LabelSelector {
  readonly matchLabels: Readonly<Record<string, string>>;
  readonly matchExpressions: readonly LabelRequirement[];
}

/** What the allowlist needs from a pool. */
export interface PoolSpec {
  readonly selector: LabelSelector;
  readonly targetPorts: readonly number[];
}

type JsonRecord = Record<string, unknown>;

function isRecord(value: unknown): value is JsonRecord {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringMap(value: unknown, what: string): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (!isRecord(value)) throw new Error(`${what} is not a map`);
  const out: Record<string, string> = {};
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== "string") {
      throw new Error(`${what}["${key}"] is not a string`);
    }
    out[key] = item;
  }
  return out;
}

const OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist"] as const;

function requirement(value: unknown, index: number): LabelRequirement {
  const what = `spec.selector.matchExpressions[${index}]`;
  if (!isRecord(value) || typeof value.key !== "string") {
    throw new Error(`${what} has no key`);
  }
  const operator = OPERATORS.find((name) => name === value.operator);
  if (operator === undefined) {
    throw new Error(
      `${what} has an unknown operator "${String(value.operator)}"`,
    );
  }
  const values = value.values ?? [];
  if (
    !Array.isArray(values) ||
    !values.every((item): item is string => typeof item === "string")
  ) {
    throw new Error(`${what}.values is not a list of strings`);
  }
  if ((operator === "In" || operator === "NotIn") && values.length === 0) {
    throw new Error(`${what} needs values for operator ${operator}`);
  }
  return { key: value.key, operator, values };
}

function parseSelector(spec: JsonRecord, group: PoolGroup): LabelSelector {
  if (group === "inference.networking.x-k8s.io") {
    return {
      matchLabels: stringMap(spec.selector, "spec.selector"),
      matchExpressions: [],
    };
  }
  const selector = spec.selector;
  if (!isRecord(selector)) throw new Error("spec.selector is missing");
  const expressions = selector.matchExpressions ?? [];
  if (!Array.isArray(expressions)) {
    throw new Error("spec.selector.matchExpressions is not a list");
  }
  return {
    matchLabels: stringMap(selector.matchLabels, "spec.selector.matchLabels"),
    matchExpressions: expressions.map(requirement),
  };
}

function isPort(value: unknown): value is number {
  return Number.isInteger(value) && Number(value) >= 1 &&
    Number(value) <= 65535;
}

function parseTargetPorts(spec: JsonRecord, group: PoolGroup): number[] {
  if (group === "inference.networking.x-k8s.io") {
    if (!isPort(spec.targetPortNumber)) {
      throw new Error("spec.targetPortNumber is not a port number");
    }
    return [spec.targetPortNumber];
  }
  const ports = spec.targetPorts;
  if (!Array.isArray(ports) || ports.length === 0) {
    throw new Error("spec.targetPorts is missing or empty");
  }
  return ports.map((port, index) => {
    const number = isRecord(port) ? port.number : undefined;
    if (!isPort(number)) {
      throw new Error(`spec.targetPorts[${index}].number is not a port number`);
    }
    return number;
  });
}

/**
 * Reads a pool object of `group`; throws an Error naming the field that is
 * wrong. An empty selector is refused: in Kubernetes it would select every
 * pod of the namespace, which no pool means.
 */
export function parsePoolSpec(pool: unknown, group: PoolGroup): PoolSpec {
  const spec = isRecord(pool) ? pool.spec : undefined;
  if (!isRecord(spec)) throw new Error("the pool has no spec");
  const selector = parseSelector(spec, group);
  if (
    Object.keys(selector.matchLabels).length === 0 &&
    selector.matchExpressions.length === 0
  ) {
    throw new Error("spec.selector selects nothing (it is empty)");
  }
  return { selector, targetPorts: parseTargetPorts(spec, group) };
}

/** The selector in the API's `labelSelector` query syntax, e.g. `app=vllm,tier in (a,b),!old`. */
export function formatLabelSelector(selector: LabelSelector): string {
  const parts = Object.entries(selector.matchLabels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, value]) => `${key}=${value}`);
  for (const { key, operator, values } of selector.matchExpressions) {
    const list = [...values].sort().join(",");
    switch (operator) {
      case "In":
        parts.push(`${key} in (${list})`);
        break;
      case "NotIn":
        parts.push(`${key} notin (${list})`);
        break;
      case "Exists":
        parts.push(key);
        break;
      case "DoesNotExist":
        parts.push(`!${key}`);
        break;
    }
  }
  return parts.join(",");
}

/** Whether `labels` satisfy `selector` (checked again here: the API's filtering is not trusted blindly). */
export function matchesSelector(
  selector: LabelSelector,
  labels: Readonly<Record<string, string>>,
): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels)) {
    if (labels[key] !== value) return false;
  }
  return selector.matchExpressions.every(({ key, operator, values }) => {
    const has = Object.hasOwn(labels, key);
    switch (operator) {
      case "In":
        return has && values.includes(labels[key] ?? "");
      case "NotIn":
        return !has || !values.includes(labels[key] ?? "");
      case "Exists":
        return has;
      case "DoesNotExist":
        return !has;
    }
  });
}

function podLabels(metadata: JsonRecord): Record<string, string> {
  try {
    return stringMap(metadata.labels, "metadata.labels");
  } catch {
    return {};
  }
}

/**
 * The addresses of a pod that may take traffic: selected by `selector`, not
 * terminating, and Ready. Empty otherwise (the Go sidecar admitted any pod
 * with an IP, terminating and unready ones included).
 */
export function servingPodAddresses(
  pod: unknown,
  selector: LabelSelector,
): string[] {
  if (!isRecord(pod) || !isRecord(pod.metadata) || !isRecord(pod.status)) {
    return [];
  }
  const { metadata, status } = pod;
  if (
    metadata.deletionTimestamp !== undefined &&
    metadata.deletionTimestamp !== null
  ) {
    return [];
  }
  if (!matchesSelector(selector, podLabels(metadata))) return [];
  const conditions = Array.isArray(status.conditions) ? status.conditions : [];
  const ready = conditions.some((condition) =>
    isRecord(condition) && condition.type === "Ready" &&
    condition.status === "True"
  );
  if (!ready) return [];
  const addresses = new Set<string>();
  if (typeof status.podIP === "string" && status.podIP !== "") {
    addresses.add(status.podIP);
  }
  for (const entry of Array.isArray(status.podIPs) ? status.podIPs : []) {
    if (isRecord(entry) && typeof entry.ip === "string" && entry.ip !== "") {
      addresses.add(entry.ip);
    }
  }
  return [...addresses];
}
