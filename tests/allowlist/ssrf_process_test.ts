import assert from "node:assert/strict";
import { createMockVllm } from "../../scripts/mock_vllm/mod.ts";
import { chatBody, jsonHeaders, postChatOverHttp } from "../support/harness.ts";
import { pod, poolV1, startFakeKubeApi } from "../support/k8s_api.ts";
import {
  fetchOnOwnConnection,
  freePort,
  runBundle,
  startPlainBundle,
} from "../support/process.ts";

const NS = "llm-d";
const LABELS = { "llm-d.ai/inferenceServing": "true" };

/** The status `sidecar` answers a chat request naming `target` as its prefiller. */
async function statusNaming(
  sidecar: { readonly base: string },
  target: string,
): Promise<number> {
  const response = await postChatOverHttp(
    sidecar.base,
    chatBody(),
    jsonHeaders({ "x-prefiller-host-port": target }),
  );
  await response.body?.cancel();
  return response.status;
}

Deno.test("bundle with -enable-ssrf-protection follows the pool through KUBECONFIG and refuses other targets", async () => {
  await using api = await startFakeKubeApi();
  await using prefill = await createMockVllm({ name: "prefiller" });
  await using decode = await createMockVllm({ name: "decoder" });
  api.put(
    "inferencepools",
    poolV1("pool", NS, { matchLabels: LABELS, ports: [prefill.port] }),
  );
  api.put("pods", pod("prefill-0", NS, { ip: "127.0.0.1", labels: LABELS }));
  await using sidecar = startPlainBundle(decode.port, [
    "-enable-ssrf-protection",
    // A bare name: the namespace comes from the kubeconfig's context.
    "-inference-pool=pool",
  ], { env: { KUBECONFIG: api.kubeconfigPath } });
  await sidecar.waitForLine((line) => line.msg === "starting");
  assert.equal(await statusNaming(sidecar, `127.0.0.1:${prefill.port}`), 200);
  assert.equal(await statusNaming(sidecar, `127.1:${prefill.port}`), 200);
  assert.equal(await statusNaming(sidecar, `127.0.0.1:${decode.port}`), 403);
  assert.equal(await statusNaming(sidecar, `169.254.169.254:80`), 403);
  assert.equal(prefill.requests.length, 2);
  assert.ok(
    api.requests.some((request) =>
      request.path ===
        `/apis/inference.networking.k8s.io/v1/namespaces/${NS}/inferencepools`
    ),
  );
  const denial = await sidecar.waitForLine((line) =>
    line.msg === "SSRF protection: prefill target not in allowlist"
  );
  assert.equal(denial.clientIP, "127.0.0.1");
});

Deno.test("bundle without the RBAC it needs exits 1 after -allowlist-sync-timeout naming the missing permissions", async () => {
  await using api = await startFakeKubeApi();
  api.forbid("inferencepools", true);
  const started = Date.now();
  const { code, stderr } = await runBundle([
    `-port=${freePort()}`,
    "-listen-host=127.0.0.1",
    "-secure-proxy=false",
    "-enable-ssrf-protection",
    "-inference-pool=llm-d/pool",
    "-allowlist-sync-timeout=1s",
  ], { env: { KUBECONFIG: api.kubeconfigPath } });
  assert.equal(code, 1);
  assert.ok(Date.now() - started < 15_000);
  assert.match(
    stderr,
    /Cannot start SSRF protection: InferencePool \\"llm-d\/pool\\"/,
  );
  assert.match(stderr, /needs get, list and watch on \\"inferencepools\\"/);
  assert.doesNotMatch(stderr, /"msg":"starting"/);
});

Deno.test("bundle with -enable-ssrf-protection and no Kubernetes API configured exits 1 saying so", async () => {
  const { code, stderr } = await runBundle([
    `-port=${freePort()}`,
    "-listen-host=127.0.0.1",
    "-secure-proxy=false",
    "-enable-ssrf-protection",
    "-inference-pool=llm-d/pool",
  ], {
    env: { KUBECONFIG: "", HOME: "/nonexistent", KUBERNETES_SERVICE_HOST: "" },
  });
  assert.equal(code, 1);
  assert.match(stderr, /Cannot find the Kubernetes API/);
});

Deno.test("bundle with -allowed-prefillers alone filters without Kubernetes", async () => {
  await using prefill = await createMockVllm({ name: "prefiller" });
  await using decode = await createMockVllm({ name: "decoder" });
  await using sidecar = startPlainBundle(decode.port, [
    `-allowed-prefillers=localhost:${prefill.port}`,
  ]);
  await sidecar.waitForLine((line) => line.msg === "starting");
  assert.equal(await statusNaming(sidecar, `0x7f000001:${prefill.port}`), 200);
  assert.equal(await statusNaming(sidecar, `0x7f000001:${decode.port}`), 403);
  assert.equal(prefill.requests.length, 1);
});

Deno.test("bundle with -workers=2 filters on every listener thread", async () => {
  await using prefill = await createMockVllm({ name: "prefiller" });
  await using decode = await createMockVllm({ name: "decoder" });
  await using sidecar = startPlainBundle(decode.port, [
    "-workers=2",
    `-allowed-prefillers=127.0.0.1:${prefill.port}`,
  ]);
  await sidecar.waitForLine((line) =>
    line.msg === "starting" && line.listener === 1
  );
  const statuses = new Set<number>();
  // New connections each time: the kernel spreads them over both threads.
  for (let i = 0; i < 8; i++) {
    const response = await fetchOnOwnConnection(
      `${sidecar.base}/v1/chat/completions`,
      {
        method: "POST",
        headers: jsonHeaders({
          "x-prefiller-host-port": `127.0.0.1:${decode.port}`,
        }),
        body: chatBody(),
      },
    );
    statuses.add(response.status);
  }
  assert.deepEqual([...statuses], [403]);
  assert.equal(decode.requests.length, 0);
});
