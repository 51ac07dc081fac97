import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { createAllowlist } from "../../src/allowlist/allowlist.ts";
import { loadKubeConfig } from "../../src/allowlist/kube_config.ts";
import {
  type PoolWatch,
  startPoolWatch,
} from "../../src/allowlist/pool_watch.ts";
import { createResolver, type Resolver } from "../../src/allowlist/resolve.ts";
import { parseStaticEntry } from "../../src/allowlist/static_list.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { createWaiters } from "../support/deadline.ts";
import { createUpstreamClient } from "../../src/upstream/client.ts";
import { createMockVllm } from "../../scripts/mock_vllm/mod.ts";
import { chatBody, jsonHeaders, testConfig } from "../support/harness.ts";
import { pod, poolV1, startFakeKubeApi } from "../support/k8s_api.ts";
import { startStubUpstream } from "../support/stub_upstream.ts";

const NS = "llm-d";
const LABELS = { "llm-d.ai/inferenceServing": "true" };

/** Options of {@linkcode startAllowlistApp}. */
interface AllowlistAppOptions {
  readonly decodePort: number;
  /** Static allowlist entries, as `-allowed-prefillers` spells them. */
  readonly allowed?: readonly string[];
  /** Starts the pool watch the allowlist follows, logging to the app's log. */
  readonly startPool?: (log: Logger) => Promise<PoolWatch>;
  readonly resolver?: Resolver;
  readonly connector?: "offloading" | "nixlv2";
  readonly enableP2pPull?: boolean;
}

/** The app in front of `decodePort` behind an allowlist; its log lines (debug and up) in `logs`. */
async function startAllowlistApp(options: AllowlistAppOptions) {
  const logs: Record<string, unknown>[] = [];
  const log = createLogger({
    verbosity: 4,
    write: (line) => logs.push(JSON.parse(line)),
  });
  const pool = await options.startPool?.(log);
  const upstream = createUpstreamClient();
  const app = createApp({
    config: testConfig({
      modelServerPort: options.decodePort,
      ...(options.connector ? { connector: options.connector } : {}),
      enableP2pPull: options.enableP2pPull ?? false,
    }),
    log,
    upstream,
    allowlist: createAllowlist({
      entries: (options.allowed ?? []).map(parseStaticEntry),
      pool,
      resolver: options.resolver ?? createResolver(),
    }),
  });
  return {
    logs,
    pool,
    /** POSTs a chat request with `headers` (JSON's added) and `body`. */
    request: (headers: Record<string, string>, body = chatBody()) =>
      app.request("/v1/chat/completions", {
        method: "POST",
        headers: jsonHeaders(headers),
        body,
      }),
    [Symbol.dispose]() {
      pool?.stop();
      upstream.close();
    },
  };
}

/** A mock decoder and the app in front of it, naming prefillers as a client with a user agent does. */
async function startSidecar(options: {
  readonly kubeconfigPath?: string;
  readonly allowed?: string[];
}) {
  const decode = await createMockVllm({ name: "decoder" });
  const rebuilt = createWaiters();
  const { kubeconfigPath } = options;
  const sidecar = await startAllowlistApp({
    decodePort: decode.port,
    ...(options.allowed ? { allowed: options.allowed } : {}),
    ...(kubeconfigPath === undefined ? {} : {
      startPool: (log: Logger) =>
        startPoolWatch({
          kubeConfig: loadKubeConfig({ KUBECONFIG: kubeconfigPath }).config,
          pool: {
            namespace: NS,
            name: "pool",
            group: "inference.networking.k8s.io",
          },
          log,
          syncTimeoutMs: 5_000,
          minRetryMs: 20,
          maxRetryMs: 200,
          watchTimeoutMs: 500,
          reconnectDelay: (ms) =>
            new Promise((resolve) => setTimeout(resolve, ms / 100)),
          onRebuild: () => rebuilt.notify(),
        }),
    }),
  });
  return {
    decode,
    logs: sidecar.logs,
    pool: sidecar.pool,
    /** Resolves once `predicate` holds, checked now and after every rebuild of the pool's members. */
    until: (predicate: () => boolean, what: string) =>
      rebuilt.until(predicate, `the pool's members to show that ${what}`),
    request: (prefiller: string) =>
      sidecar.request({
        "x-prefiller-host-port": prefiller,
        "user-agent": "tester/1",
      }),
    async [Symbol.asyncDispose]() {
      sidecar[Symbol.dispose]();
      await decode.close();
    },
  };
}

Deno.test("a denied prefill target gets the 403 and reaches no upstream", async () => {
  await using prefill = await createMockVllm({ name: "prefiller" });
  await using sidecar = await startSidecar({ allowed: ["10.0.0.0/8"] });
  for (
    const target of [
      `127.0.0.1:${prefill.port}`,
      `127.1:${prefill.port}`,
      `0x7f000001:${prefill.port}`,
      `2130706433:${prefill.port}`,
      `[::ffff:127.0.0.1]:${prefill.port}`,
      `localhost.:${prefill.port}`,
      `0:${prefill.port}`,
    ]
  ) {
    const response = await sidecar.request(target);
    assert.equal(response.status, 403, target);
    const body = await response.json();
    assert.equal(
      body.error.message,
      "Forbidden: prefill target not allowed by SSRF protection",
    );
  }
  assert.equal(prefill.requests.length, 0);
  assert.equal(sidecar.decode.requests.length, 0);
  const denials = sidecar.logs.filter((line) =>
    line.msg === "SSRF protection: prefill target not in allowlist"
  );
  assert.equal(denials.length, 7);
  assert.equal(denials[0]?.userAgent, "tester/1");
  assert.equal(denials[0]?.requestPath, "/v1/chat/completions");
});

Deno.test("an allowed prefill target runs P/D on the address that was checked", async () => {
  await using prefill = await createMockVllm({ name: "prefiller" });
  await using sidecar = await startSidecar({
    allowed: [`localhost:${prefill.port}`],
  });
  const response = await sidecar.request(`localhost:${prefill.port}`);
  assert.equal(response.status, 200);
  await response.body?.cancel();
  assert.equal(prefill.requests.length, 1);
  // Dialled at the checked IP: the Host header carries it, not the name.
  assert.match(
    prefill.requests[0]?.headers.get("host") ?? "",
    /^(127\.0\.0\.1|\[::1\]):\d+$/,
  );
  assert.equal(sidecar.decode.requests.length, 1);
});

Deno.test("with the pool, requests to a stable pod pass through pod and pool churn; a pod that leaves is refused", async () => {
  await using api = await startFakeKubeApi();
  await using stable = await createMockVllm({ name: "stable-prefiller" });
  await using leaving = await createMockVllm({
    name: "leaving-prefiller",
    hostname: "127.0.0.2",
  });
  api.put(
    "inferencepools",
    poolV1("pool", NS, {
      matchLabels: LABELS,
      ports: [stable.port, leaving.port],
    }),
  );
  api.put("pods", pod("stable", NS, { ip: "127.0.0.1", labels: LABELS }));
  api.put("pods", pod("leaving", NS, { ip: "127.0.0.2", labels: LABELS }));
  await using sidecar = await startSidecar({
    kubeconfigPath: api.kubeconfigPath,
  });
  const first = await sidecar.request(`127.0.0.2:${leaving.port}`);
  assert.equal(first.status, 200);
  await first.body?.cancel();

  const statuses: number[] = [];
  const deadline = Date.now() + 20_000;
  const load = (async () => {
    for (let i = 0; i < 60 && Date.now() < deadline; i++) {
      const response = await sidecar.request(`127.0.0.1:${stable.port}`);
      statuses.push(response.status);
      await response.body?.cancel();
    }
  })();
  for (let round = 0; round < 6; round++) {
    api.put(
      "pods",
      pod(`churn-${round}`, NS, { ip: `10.1.0.${round}`, labels: LABELS }),
    );
    api.put(
      "pods",
      pod(`churn-${round}`, NS, {
        ip: `10.1.0.${round}`,
        labels: LABELS,
        ready: false,
      }),
    );
    api.remove("pods", NS, `churn-${round}`);
    api.put(
      "inferencepools",
      poolV1("pool", NS, {
        matchLabels: LABELS,
        ports: [stable.port, leaving.port, 9000 + round],
      }),
    );
    if (round % 2 === 0) {
      api.compact(round % 4 === 0 ? "event" : "status");
      api.closeWatches();
    } else {
      api.bookmark();
      api.closeWatches({ broken: true });
    }
    await stable.nextRequest((request) =>
      request.path === "/v1/chat/completions" && statuses.length > round * 8
    );
  }
  await load;
  assert.ok(statuses.length >= 48, `only ${statuses.length} requests ran`);
  assert.deepEqual(statuses.filter((status) => status !== 200), []);

  const pool = sidecar.pool;
  assert.ok(pool);
  const left = sidecar.until(
    () => !pool.snapshot().addresses.includes("127.0.0.2"),
    "127.0.0.2 left",
  );
  api.put(
    "pods",
    pod("leaving", NS, { ip: "127.0.0.2", labels: LABELS, terminating: true }),
  );
  await left;
  const refused = await sidecar.request(`127.0.0.2:${leaving.port}`);
  assert.equal(refused.status, 403);
  await refused.body?.cancel();
  assert.equal(
    leaving.requests.filter((request) =>
      request.path === "/v1/chat/completions"
    ).length,
    1,
  );
});

const KV_SOURCE_HEADER = "x-kv-cache-source-host-port";
const KV_SOURCE_DENIED_LOG =
  "SSRF protection: KV cache source not in allowlist, ignoring";

function kvParamsOfBody(text: string | undefined): Record<string, unknown> {
  const body = JSON.parse(text ?? "null");
  return body?.kv_transfer_params ?? {};
}

Deno.test("a KV source the allowlist denies is dropped from a decode-only request, never a 403", async () => {
  await using decode = startStubUpstream(() =>
    Response.json({ choices: [{ message: { content: "ok" } }] })
  );
  using sidecar = await startAllowlistApp({
    allowed: ["127.0.0.1:5001"],
    decodePort: decode.port,
    connector: "offloading",
  });
  const body = chatBody();
  const denied = await sidecar.request(
    { [KV_SOURCE_HEADER]: "127.0.0.2:5001", "user-agent": "tester/1" },
    body,
  );
  assert.equal(denied.status, 200);
  await denied.body?.cancel();
  assert.equal(decode.bodies[0], body, "decoded as the client sent it");
  const line = sidecar.logs.find((entry) => entry.msg === KV_SOURCE_DENIED_LOG);
  assert.equal(line?.target, "127.0.0.2:5001");
  assert.equal(line?.userAgent, "tester/1");
  const allowed = await sidecar.request(
    { [KV_SOURCE_HEADER]: "127.0.0.1:5001" },
    body,
  );
  assert.equal(allowed.status, 200);
  await allowed.body?.cancel();
  const source = kvParamsOfBody(decode.bodies[1]).remote_kv_source as
    | Record<string, unknown>
    | undefined;
  assert.equal(source?.remote_host, "127.0.0.1");
});

Deno.test("a KV source the allowlist denies is left out of the prefill leg of a P/D request", async () => {
  await using prefill = startStubUpstream(() =>
    Response.json({
      choices: [{ message: { content: "" } }],
      kv_transfer_params: { remote_engine_id: "e1" },
    })
  );
  await using decode = startStubUpstream(() =>
    Response.json({ choices: [{ message: { content: "ok" } }] })
  );
  using sidecar = await startAllowlistApp({
    allowed: [prefill.hostPort, "127.0.0.1:5001"],
    decodePort: decode.port,
    connector: "nixlv2",
    enableP2pPull: true,
  });
  for (const source of ["127.0.0.2:5001", "127.0.0.1:5001"]) {
    const response = await sidecar.request({
      "x-prefiller-host-port": prefill.hostPort,
      [KV_SOURCE_HEADER]: source,
    }, chatBody());
    assert.equal(response.status, 200, source);
    await response.body?.cancel();
  }
  assert.equal(prefill.bodies.length, 2);
  assert.equal(
    kvParamsOfBody(prefill.bodies[0]).remote_kv_source,
    undefined,
    "the denied source is not pulled from",
  );
  const pulled = kvParamsOfBody(prefill.bodies[1]).remote_kv_source as
    | Record<string, unknown>
    | undefined;
  assert.equal(pulled?.remote_host, "127.0.0.1");
  assert.equal(
    sidecar.logs.filter((entry) => entry.msg === KV_SOURCE_DENIED_LOG).length,
    1,
  );
});

Deno.test("50 concurrent requests naming an unresolvable prefiller get the 403 after one lookup", async () => {
  await using decode = startStubUpstream(() =>
    Response.json({ choices: [{ message: { content: "ok" } }] })
  );
  const lookups: string[] = [];
  const answer = Promise.withResolvers<readonly string[]>();
  const resolver = createResolver({
    lookup: (host) => {
      lookups.push(host);
      return answer.promise;
    },
  });
  // Counts the checks that asked for the name, so the lookup is failed only
  // once all 50 wait on it.
  let asked = 0;
  const askedChanged = createWaiters();
  using sidecar = await startAllowlistApp({
    allowed: ["10.0.0.0/8"],
    decodePort: decode.port,
    resolver: {
      resolve(host) {
        asked++;
        askedChanged.notify();
        return resolver.resolve(host);
      },
    },
  });
  const request = () =>
    sidecar.request({ "x-prefiller-host-port": "gone.example:8000" });
  const concurrent = Array.from({ length: 50 }, request);
  await askedChanged.until(() => asked === 50, "50 checks asking for it", {
    detail: () => `${asked} asked`,
  });
  answer.reject(new Error("getaddrinfo ENOTFOUND gone.example"));
  // One more after the failure: answered from the negative cache.
  const responses = await Promise.all([...concurrent, request()]);
  assert.deepEqual(
    [...new Set(responses.map((response) => response.status))],
    [403],
  );
  await Promise.all(responses.map((response) => response.body?.cancel()));
  assert.equal(asked, 51);
  assert.deepEqual(lookups, ["gone.example"]);
  assert.equal(decode.bodies.length, 0);
});
