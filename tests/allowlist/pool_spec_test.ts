import assert from "node:assert/strict";
import {
  formatLabelSelector,
  matchesSelector,
  parsePoolSpec,
  servingPodAddresses,
} from "../../src/allowlist/pool_spec.ts";
import { pod, poolV1, poolV1alpha2 } from "../support/k8s_api.ts";

Deno.test("parsePoolSpec reads v1 matchLabels, matchExpressions and targetPorts", () => {
  const spec = parsePoolSpec(
    poolV1("p", "ns", {
      matchLabels: { app: "vllm" },
      matchExpressions: [{
        key: "tier",
        operator: "NotIn",
        values: ["b", "a"],
      }],
      ports: [8000, 8001],
    }),
    "inference.networking.k8s.io",
  );
  assert.deepEqual(spec.targetPorts, [8000, 8001]);
  assert.equal(formatLabelSelector(spec.selector), "app=vllm,tier notin (a,b)");
});

Deno.test("parsePoolSpec reads v1alpha2's flat selector and targetPortNumber", () => {
  const spec = parsePoolSpec(
    poolV1alpha2("p", "ns", { app: "vllm", role: "prefill" }, 8200),
    "inference.networking.x-k8s.io",
  );
  assert.deepEqual(spec.targetPorts, [8200]);
  assert.equal(formatLabelSelector(spec.selector), "app=vllm,role=prefill");
});

Deno.test("parsePoolSpec refuses what would select every pod or no port, naming the field", () => {
  const v1 = "inference.networking.k8s.io";
  assert.throws(
    () => parsePoolSpec(poolV1("p", "ns", { ports: [8000] }), v1),
    /selects nothing/,
  );
  assert.throws(
    () =>
      parsePoolSpec(
        poolV1("p", "ns", { matchLabels: { a: "b" }, ports: [] }),
        v1,
      ),
    /spec\.targetPorts is missing or empty/,
  );
  // The Go sidecar read v1's selector flat and built "matchLabels=map[...]" (llm-d-router #979).
  assert.throws(
    () =>
      parsePoolSpec(
        poolV1alpha2("p", "ns", { app: "x" }, 8000),
        v1,
      ),
    /spec\.selector|targetPorts/,
  );
  assert.throws(
    () =>
      parsePoolSpec(
        poolV1("p", "ns", {
          matchExpressions: [{ key: "a", operator: "Near", values: [] }],
          ports: [8000],
        }),
        v1,
      ),
    /unknown operator "Near"/,
  );
});

Deno.test("matchesSelector applies labels and all four operators", () => {
  const selector = {
    matchLabels: { app: "vllm" },
    matchExpressions: [
      { key: "role", operator: "In" as const, values: ["prefill"] },
      { key: "tier", operator: "NotIn" as const, values: ["old"] },
      { key: "zone", operator: "Exists" as const, values: [] },
      { key: "canary", operator: "DoesNotExist" as const, values: [] },
    ],
  };
  assert.equal(
    matchesSelector(selector, { app: "vllm", role: "prefill", zone: "a" }),
    true,
  );
  assert.equal(
    matchesSelector(selector, {
      app: "vllm",
      role: "prefill",
      zone: "a",
      tier: "old",
    }),
    false,
  );
  assert.equal(
    matchesSelector(selector, { app: "vllm", role: "prefill" }),
    false,
  );
  assert.equal(
    matchesSelector(selector, {
      app: "vllm",
      role: "prefill",
      zone: "a",
      canary: "",
    }),
    false,
  );
  assert.equal(
    matchesSelector(selector, { app: "other", role: "prefill", zone: "a" }),
    false,
  );
});

Deno.test("servingPodAddresses keeps ready pods that are not terminating, with every pod IP", () => {
  const selector = { matchLabels: { app: "vllm" }, matchExpressions: [] };
  const labels = { app: "vllm" };
  assert.deepEqual(
    servingPodAddresses(pod("a", "ns", { ip: "10.0.0.1", labels }), selector),
    ["10.0.0.1"],
  );
  assert.deepEqual(
    servingPodAddresses(
      pod("a", "ns", { ip: "10.0.0.1", labels, ready: false }),
      selector,
    ),
    [],
  );
  assert.deepEqual(
    servingPodAddresses(
      pod("a", "ns", { ip: "10.0.0.1", labels, terminating: true }),
      selector,
    ),
    [],
  );
  assert.deepEqual(
    servingPodAddresses(
      pod("a", "ns", { ip: "10.0.0.1", labels: { app: "x" } }),
      selector,
    ),
    [],
  );
  const dualStack = pod("a", "ns", { ip: "10.0.0.1", labels });
  (dualStack.status as { podIPs: { ip: string }[] }).podIPs.push({
    ip: "fd00::1",
  });
  assert.deepEqual(servingPodAddresses(dualStack, selector), [
    "10.0.0.1",
    "fd00::1",
  ]);
  assert.deepEqual(servingPodAddresses({ metadata: {} }, selector), []);
});
