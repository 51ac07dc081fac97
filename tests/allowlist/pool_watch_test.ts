import assert from "node:assert/strict";
import { parseIpLiteral } from "../../src/allowlist/address.ts";
import { loadKubeConfig } from "../../src/allowlist/kube_config.ts";
import type { PoolGroup } from "../../src/allowlist/pool_spec.ts";
import {
  MAX_LIST_BYTES,
  type PoolWatch,
  startPoolWatch,
} from "../../src/allowlist/pool_watch.ts";
import { createLogger } from "../../src/log.ts";
import { createWaiters } from "../support/deadline.ts";
import {
  type ApiRequest,
  type FakeKubeApi,
  type ListAnswer,
  pod,
  poolV1,
  poolV1alpha2,
  type ReplacedOutcome,
  startFakeKubeApi,
} from "../support/k8s_api.ts";

const NS = "llm-d";
const LABELS = { "llm-d.ai/inferenceServing": "true" };

/**
 * The fake API holding pool "pool" (v1, selecting `LABELS`, target port
 * 8000) unless `pool: false`, and a ready pod with those labels for each
 * `name: ip` of `pods`.
 */
async function startPoolApi(
  pods: Readonly<Record<string, string>>,
  options: { readonly pool?: boolean } = {},
): Promise<FakeKubeApi> {
  const api = await startFakeKubeApi();
  if (options.pool !== false) {
    api.put(
      "inferencepools",
      poolV1("pool", NS, { matchLabels: LABELS, ports: [8000] }),
    );
  }
  for (const [name, ip] of Object.entries(pods)) {
    api.put("pods", pod(name, NS, { ip, labels: LABELS }));
  }
  return api;
}

function isPodList(request: ApiRequest): boolean {
  return request.path.endsWith("/pods") && !request.watch;
}

function isPodWatch(request: ApiRequest): boolean {
  return request.path.endsWith("/pods") && request.watch;
}

/** Lists of pods the API received so far. */
function podLists(api: FakeKubeApi): number {
  return api.requests.filter(isPodList).length;
}

interface Watched extends Disposable {
  readonly watch: PoolWatch;
  readonly logs: Record<string, unknown>[];
  /** Resolves once `predicate` holds (checked now and after every rebuild); rejects after 5 s. */
  until(predicate: () => boolean, what: string): Promise<unknown>;
  /** Whether `ip:port` is a member. */
  admits(ip: string, port: number): boolean;
}

async function watchPool(
  api: FakeKubeApi,
  options: {
    readonly name?: string;
    readonly group?: PoolGroup;
    readonly syncTimeoutMs?: number;
    readonly listTimeoutMs?: number;
    /** Called on every rebuild, with the watch once it exists. */
    readonly onRebuild?: () => void;
  } = {},
): Promise<Watched> {
  const logs: Record<string, unknown>[] = [];
  const log = createLogger({
    verbosity: 5,
    write: (line) => logs.push(JSON.parse(line)),
  });
  const rebuilt = createWaiters();
  const watch = await startPoolWatch({
    kubeConfig: loadKubeConfig({ KUBECONFIG: api.kubeconfigPath }).config,
    pool: {
      namespace: NS,
      name: options.name ?? "pool",
      group: options.group ?? "inference.networking.k8s.io",
    },
    log,
    syncTimeoutMs: options.syncTimeoutMs ?? 5_000,
    minRetryMs: 20,
    maxRetryMs: 200,
    watchTimeoutMs: 300,
    ...(options.listTimeoutMs === undefined
      ? {}
      : { listTimeoutMs: options.listTimeoutMs }),
    reconnectDelay: (ms) =>
      new Promise((resolve) => setTimeout(resolve, ms / 100)),
    onRebuild: () => {
      options.onRebuild?.();
      rebuilt.notify();
    },
  });
  const admits = (ip: string, port: number) => {
    const address = parseIpLiteral(ip);
    assert.ok(address);
    return watch.has(address, port);
  };
  return {
    watch,
    logs,
    admits,
    until: (predicate, what) =>
      rebuilt.until(predicate, `the members to show that ${what}`, {
        detail: () => `members ${JSON.stringify(watch.snapshot())}`,
      }),
    [Symbol.dispose]: () => watch.stop(),
  };
}

Deno.test("pool watch admits ready pods of a v1 pool on its target ports only", async () => {
  await using api = await startFakeKubeApi();
  api.put(
    "inferencepools",
    poolV1("pool", NS, { matchLabels: LABELS, ports: [8000, 8001] }),
  );
  api.put("pods", pod("prefill-0", NS, { ip: "10.0.0.5", labels: LABELS }));
  api.put(
    "pods",
    pod("other", NS, { ip: "10.0.0.9", labels: { app: "other" } }),
  );
  using pool = await watchPool(api);
  assert.equal(pool.admits("10.0.0.5", 8000), true);
  assert.equal(pool.admits("10.0.0.5", 8001), true);
  // llm-d-router #979: the Go sidecar admitted any port of an allowed pod.
  assert.equal(pool.admits("10.0.0.5", 22), false);
  assert.equal(pool.admits("10.0.0.9", 8000), false);
  const podList = api.requests.find(isPodList);
  assert.equal(podList?.query.labelSelector, "llm-d.ai/inferenceServing=true");
  const poolList = api.requests.find((request) =>
    request.path.endsWith("/inferencepools") && !request.watch
  );
  assert.equal(
    poolList?.path,
    `/apis/inference.networking.k8s.io/v1/namespaces/${NS}/inferencepools`,
  );
  assert.equal(poolList?.query.fieldSelector, "metadata.name=pool");
  const podWatch = await api.waitForRequest(isPodWatch);
  assert.equal(podWatch.query.allowWatchBookmarks, "true");
  assert.ok(Number(podWatch.query.resourceVersion) > 0);
});

Deno.test("pool watch reads a v1alpha2 pool's flat selector and target port number", async () => {
  await using api = await startFakeKubeApi();
  api.put("inferencepools", poolV1alpha2("pool", NS, { app: "vllm" }, 8200));
  api.put("pods", pod("p", NS, { ip: "10.0.0.7", labels: { app: "vllm" } }));
  using pool = await watchPool(api, { group: "inference.networking.x-k8s.io" });
  assert.equal(pool.admits("10.0.0.7", 8200), true);
  assert.equal(pool.admits("10.0.0.7", 8000), false);
  assert.ok(
    api.requests.some((request) =>
      request.path ===
        `/apis/inference.networking.x-k8s.io/v1alpha2/namespaces/${NS}/inferencepools`
    ),
  );
});

Deno.test("pool watch honours matchExpressions", async () => {
  await using api = await startFakeKubeApi();
  api.put(
    "inferencepools",
    poolV1("pool", NS, {
      matchExpressions: [
        { key: "role", operator: "In", values: ["prefill", "decode"] },
        { key: "canary", operator: "DoesNotExist" },
      ],
      ports: [8000],
    }),
  );
  api.put(
    "pods",
    pod("a", NS, { ip: "10.0.1.1", labels: { role: "prefill" } }),
  );
  api.put("pods", pod("b", NS, { ip: "10.0.1.2", labels: { role: "encode" } }));
  api.put(
    "pods",
    pod("c", NS, { ip: "10.0.1.3", labels: { role: "decode", canary: "1" } }),
  );
  using pool = await watchPool(api);
  assert.deepEqual(pool.watch.snapshot().addresses, ["10.0.1.1"]);
});

Deno.test("pool watch follows pods becoming ready, unready, terminating and deleted", async () => {
  await using api = await startPoolApi({});
  api.put(
    "pods",
    pod("p", NS, { ip: "10.0.0.5", labels: LABELS, ready: false }),
  );
  using pool = await watchPool(api);
  assert.equal(pool.admits("10.0.0.5", 8000), false);
  api.put("pods", pod("p", NS, { ip: "10.0.0.5", labels: LABELS }));
  await pool.until(() => pool.admits("10.0.0.5", 8000), "the pod is ready");
  api.put(
    "pods",
    pod("p", NS, { ip: "10.0.0.5", labels: LABELS, ready: false }),
  );
  await pool.until(() => !pool.admits("10.0.0.5", 8000), "the pod is unready");
  api.put("pods", pod("p", NS, { ip: "10.0.0.5", labels: LABELS }));
  await pool.until(
    () => pool.admits("10.0.0.5", 8000),
    "the pod is ready again",
  );
  api.put(
    "pods",
    pod("p", NS, { ip: "10.0.0.5", labels: LABELS, terminating: true }),
  );
  await pool.until(
    () => !pool.admits("10.0.0.5", 8000),
    "the pod is terminating",
  );
  api.put("pods", pod("q", NS, { ip: "10.0.0.6", labels: LABELS }));
  await pool.until(() => pool.admits("10.0.0.6", 8000), "a new pod is ready");
  api.remove("pods", NS, "q");
  await pool.until(() => !pool.admits("10.0.0.6", 8000), "the pod is deleted");
  // A relabelled pod leaves the selection.
  api.put("pods", pod("r", NS, { ip: "10.0.0.8", labels: LABELS }));
  await pool.until(() => pool.admits("10.0.0.8", 8000), "pod r joins");
  api.put("pods", pod("r", NS, { ip: "10.0.0.8", labels: { app: "moved" } }));
  await pool.until(() => !pool.admits("10.0.0.8", 8000), "pod r is relabelled");
});

Deno.test("pool watch follows the pool's ports, selector and deletion", async () => {
  await using api = await startFakeKubeApi();
  api.put(
    "inferencepools",
    poolV1("pool", NS, { matchLabels: { tier: "a" }, ports: [8000] }),
  );
  api.put(
    "pods",
    pod("a", NS, { ip: "10.0.2.1", labels: { tier: "a", both: "y" } }),
  );
  api.put(
    "pods",
    pod("ab", NS, { ip: "10.0.2.2", labels: { tier: "a", side: "b" } }),
  );
  api.put("pods", pod("b", NS, { ip: "10.0.2.3", labels: { side: "b" } }));
  // The pod in both selections must stay a member at every rebuild while the selector moves.
  let shrank = false;
  const watched: { current?: Watched } = {};
  using pool = await watchPool(api, {
    onRebuild: () => {
      if (watched.current && !watched.current.admits("10.0.2.2", 8000)) {
        shrank = true;
      }
    },
  });
  watched.current = pool;
  assert.deepEqual(pool.watch.snapshot().addresses.sort(), [
    "10.0.2.1",
    "10.0.2.2",
  ]);
  api.put(
    "inferencepools",
    poolV1("pool", NS, { matchLabels: { tier: "a" }, ports: [8000, 8002] }),
  );
  await pool.until(
    () => pool.admits("10.0.2.1", 8002),
    "the new port is admitted",
  );
  api.put(
    "inferencepools",
    poolV1("pool", NS, { matchLabels: { side: "b" }, ports: [8000] }),
  );
  await pool.until(
    () => pool.admits("10.0.2.3", 8000) && !pool.admits("10.0.2.1", 8000),
    "the new selector's pods replace the old ones",
  );
  assert.equal(pool.admits("10.0.2.2", 8000), true);
  assert.equal(shrank, false, "the pod selected before and after was dropped");
  const selectors = api.requests.filter(isPodList).map((request) =>
    request.query.labelSelector
  );
  assert.deepEqual(selectors, ["tier=a", "side=b"]);
  api.remove("inferencepools", NS, "pool");
  await pool.until(
    () => pool.watch.snapshot().addresses.length === 0,
    "the pool is deleted",
  );
  assert.equal(pool.admits("10.0.2.3", 8000), false);
});

Deno.test("pool watch keeps its members through 410 relists, bookmarks and dropped watches", async () => {
  await using api = await startPoolApi({ stable: "10.0.3.1" });
  let shrank = false;
  const watched: { current?: Watched } = {};
  using pool = await watchPool(api, {
    onRebuild: () => {
      if (watched.current && !watched.current.admits("10.0.3.1", 8000)) {
        shrank = true;
      }
    },
  });
  watched.current = pool;
  assert.equal(podLists(api), 1);

  // A bookmark moves the watch's resource version past changes it filters
  // out; the reconnect after a clean close starts there, without a relist.
  await api.waitForRequest(isPodWatch);
  const bookmarked = api.put(
    "pods",
    pod("noise", NS, { ip: "10.9.9.9", labels: { app: "x" } }),
  );
  api.bookmark();
  api.closeWatches();
  await api.waitForRequest((request) =>
    isPodWatch(request) &&
    request.query.resourceVersion === String(bookmarked)
  );
  assert.equal(
    podLists(api),
    1,
    "a bookmark and a clean close must not relist",
  );

  // A broken connection (no clean end) is noticed and reopened; a change
  // made meanwhile is seen after the reconnect.
  api.closeWatches({ broken: true });
  api.put("pods", pod("late", NS, { ip: "10.0.3.2", labels: LABELS }));
  await pool.until(
    () => pool.admits("10.0.3.2", 8000),
    "the change made while disconnected",
  );

  // 410 as an ERROR event, then as the HTTP status: both relist.
  for (const mode of ["event", "status"] as const) {
    const before = podLists(api);
    api.compact(mode);
    // Closed first: the open watch would otherwise deliver the deletion and
    // move past the compaction.
    api.closeWatches();
    api.remove("pods", NS, "late");
    await pool.until(
      () => podLists(api) > before && !pool.admits("10.0.3.2", 8000),
      `a relist after a 410 (${mode})`,
    );
    api.put("pods", pod("late", NS, { ip: "10.0.3.2", labels: LABELS }));
    await pool.until(() => pool.admits("10.0.3.2", 8000), "the pod is back");
  }
  assert.equal(pool.admits("10.0.3.1", 8000), true);
  assert.equal(shrank, false, "a resync dropped a pod that never changed");
});

Deno.test("pool watch start fails after the bounded wait, naming the RBAC, when the API answers 403", async () => {
  await using api = await startPoolApi({});
  api.forbid("inferencepools", true);
  const started = Date.now();
  await assert.rejects(
    watchPool(api, { syncTimeoutMs: 600 }),
    (error: Error) => {
      assert.match(error.message, /InferencePool "llm-d\/pool"/);
      assert.match(error.message, /403/);
      assert.match(
        error.message,
        /needs get, list and watch on "inferencepools"/,
      );
      assert.match(error.message, /"pods" in namespace "llm-d"/);
      return true;
    },
  );
  assert.ok(Date.now() - started < 5_000);
  // It kept retrying during the wait, and stopped after it.
  const attempts = api.requests.length;
  assert.ok(attempts >= 2, `only ${attempts} attempt(s)`);
});

Deno.test("pool watch start still names the RBAC when a 403's body outlasts the list's time bound", async () => {
  await using api = await startPoolApi({});
  api.replaceLists(
    "inferencepools",
    { trickleEveryMs: 20, status: 403 },
    1_000,
  );
  await assert.rejects(
    watchPool(api, { syncTimeoutMs: 1_500, listTimeoutMs: 300 }),
    (error: Error) => {
      assert.match(error.message, /403/);
      assert.match(
        error.message,
        /needs get, list and watch on "inferencepools"/,
      );
      assert.doesNotMatch(error.message, /did not answer/);
      return true;
    },
  );
});

Deno.test("pool watch start fails when it may read the pool but not the pods", async () => {
  await using api = await startPoolApi({});
  api.forbid("pods", true);
  await assert.rejects(
    watchPool(api, { syncTimeoutMs: 600 }),
    /pods .*forbidden|403/,
  );
});

Deno.test("pool watch starts empty when the pool does not exist, and fills when it appears", async () => {
  await using api = await startPoolApi({ p: "10.0.4.1" }, { pool: false });
  using pool = await watchPool(api);
  assert.equal(pool.admits("10.0.4.1", 8000), false);
  assert.ok(
    pool.logs.some((line) =>
      String(line.msg).startsWith("InferencePool not found")
    ),
  );
  api.put(
    "inferencepools",
    poolV1("pool", NS, { matchLabels: LABELS, ports: [8000] }),
  );
  await pool.until(() => pool.admits("10.0.4.1", 8000), "the pool appears");
});

Deno.test("pool watch survives list items and watch events that are not Kubernetes objects", async () => {
  await using api = await startPoolApi({ good: "10.0.5.1" });
  // Each of these threw inside client-node's cache, uncaught: the process ended.
  api.addRawListItems("pods", [null, 7, "pod", { kind: "Pod" }]);
  using pool = await watchPool(api);
  assert.equal(pool.admits("10.0.5.1", 8000), true);
  await api.waitForRequest(isPodWatch);
  for (
    const event of [
      { type: "ADDED", object: null },
      { type: "MODIFIED", object: 3 },
      { type: "ADDED", object: {} },
      "noise",
    ]
  ) {
    api.sendRawEvent("pods", event);
  }
  // Still following changes after the malformed events.
  api.put("pods", pod("later", NS, { ip: "10.0.5.2", labels: LABELS }));
  await pool.until(
    () => pool.admits("10.0.5.2", 8000),
    "a pod added after malformed events",
  );
  assert.equal(pool.admits("10.0.5.1", 8000), true);
});

Deno.test("pool watch ends a watch whose event line never ends past 16 MiB, and watches again", async () => {
  await using api = await startPoolApi({ good: "10.0.6.1" });
  using pool = await watchPool(api);
  const podWatches = () => api.requests.filter(isPodWatch).length;
  await api.waitForRequest(isPodWatch);
  const before = podWatches();
  // Never silent, never a newline: only the line bound ends this watch.
  const chunk = "x".repeat(256 * 1024);
  let writing = true;
  const writer = (async () => {
    for (let i = 0; i < 400 && writing; i++) {
      api.writeToWatches("pods", chunk);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  let watchesSeen = 0;
  try {
    await api.waitForRequest(
      (request) =>
        isPodWatch(request) &&
        ++watchesSeen > before,
      3_000,
    );
  } finally {
    writing = false;
    await writer;
  }
  api.put("pods", pod("later", NS, { ip: "10.0.6.2", labels: LABELS }));
  await pool.until(() => pool.admits("10.0.6.2", 8000), "a pod added after it");
  assert.equal(pool.admits("10.0.6.1", 8000), true);
});

/**
 * Starts a pool with pod "stable", then has the pods' relist after a 410
 * answered with `answer`, which carries a new pod if it is read as a list at
 * all. Checks that the answer is refused as a failed list: the members stay
 * as they were, one warning whose error matches `error` is logged, the list
 * is asked for again, and the retried list is taken. Returns how the
 * refused answer ended.
 */
async function expectRelistRefused(
  answer: ListAnswer,
  expected: { readonly error: RegExp; readonly listTimeoutMs?: number },
): Promise<ReplacedOutcome> {
  await using api = await startPoolApi({ stable: "10.0.7.1" });
  using pool = await watchPool(
    api,
    expected.listTimeoutMs === undefined
      ? {}
      : { listTimeoutMs: expected.listTimeoutMs },
  );
  const before = podLists(api);
  api.replaceLists("pods", answer);
  api.compact("status");
  api.closeWatches();
  api.put("pods", pod("new", NS, { ip: "10.0.7.2", labels: LABELS }));
  await api.waitForRequest(() => podLists(api) >= before + 2);
  // The retry has only been asked for: the refused list changed nothing.
  assert.equal(pool.admits("10.0.7.2", 8000), false);
  assert.equal(pool.admits("10.0.7.1", 8000), true);
  const warnings = pool.logs.filter((line) =>
    line.level === "warn" &&
    String(line.msg).startsWith("Kubernetes API request for pods") &&
    expected.error.test(String(line.error))
  );
  assert.equal(
    warnings.length,
    1,
    `warnings: ${
      JSON.stringify(pool.logs.filter((line) => line.level === "warn"))
    }`,
  );
  const [outcome] = await api.waitForReplaced(1);
  assert.ok(outcome);
  await pool.until(
    () => pool.admits("10.0.7.2", 8000),
    "the retried list is taken",
  );
  assert.equal(pool.admits("10.0.7.1", 8000), true);
  return outcome;
}

const OVER_BOUND = new RegExp(`larger than ${MAX_LIST_BYTES} bytes`);

for (
  const [framing, bytes] of [
    ["length", MAX_LIST_BYTES + 1],
    // Far past what loopback buffers hold (6-11 MiB measured), so an
    // answer read to its end, not cut at the bound, shows as complete.
    ["chunked", MAX_LIST_BYTES + 32 * 1024 * 1024],
  ] as const
) {
  Deno.test(`pool watch refuses a list answer over the bound (${framing}), keeps its members and lists again`, async () => {
    const outcome = await expectRelistRefused(
      { status: 200, bytes, framing },
      { error: OVER_BOUND },
    );
    assert.equal(outcome.complete, false, "read past the bound");
  });
}

Deno.test("pool watch gives up on a list answer that trickles past the time bound, keeps its members and lists again", async () => {
  // The check is the refusal, its message and the list after it; a trickled
  // answer never completes, so its outcome says nothing.
  await expectRelistRefused({ trickleEveryMs: 20 }, {
    listTimeoutMs: 1_000,
    error: new RegExp(
      `did not answer /api/v1/namespaces/${NS}/pods in full within 1000 ms`,
    ),
  });
});

for (
  const [what, text, error] of [
    [
      "not JSON",
      "<html>502 Bad Gateway</html>",
      /with a body that is not JSON/,
    ],
    ["JSON but not a list", '{"kind":"Status","items":{}}', /without a list/],
  ] as const
) {
  Deno.test(`pool watch refuses a 200 list answer that is ${what}, keeps its members and lists again`, async () => {
    await expectRelistRefused({ text }, { error });
  });
}

Deno.test("pool watch start fails after the bounded wait, naming the bound, while every pod list is over it", async () => {
  await using api = await startPoolApi({ p: "10.0.8.1" });
  api.replaceLists(
    "pods",
    { status: 200, bytes: MAX_LIST_BYTES + 1, framing: "length" },
    1_000,
  );
  await assert.rejects(
    watchPool(api, { syncTimeoutMs: 600 }),
    (error: Error) => {
      assert.match(error.message, /could not be read within 600 ms/);
      assert.match(error.message, new RegExp(`larger than ${MAX_LIST_BYTES}`));
      return true;
    },
  );
});

Deno.test("pool watch reads a few KiB of an error answer of megabytes, and logs its status", async () => {
  await using api = await startPoolApi({ p: "10.0.9.1" });
  api.replaceLists("inferencepools", {
    status: 500,
    bytes: 32 * 1024 * 1024,
    framing: "chunked",
  });
  using pool = await watchPool(api);
  assert.equal(pool.admits("10.0.9.1", 8000), true, "started after a retry");
  const [outcome] = await api.waitForReplaced(1);
  assert.equal(outcome?.complete, false, "the error body was read whole");
  const failures = pool.logs.filter((line) =>
    String(line.msg).startsWith("Kubernetes API request for InferencePool")
  );
  assert.equal(failures.length, 1);
  const error = String(failures[0]?.error);
  assert.match(error, /^500: \{"kind":"Status"/);
  assert.ok(error.length < 300, `${error.length} characters logged`);
});
