import assert from "node:assert/strict";
import { createMockVllm } from "../scripts/mock_vllm/mod.ts";
import {
  chatBody,
  isAccessLine,
  jsonHeaders,
  postChatOverHttp,
} from "./support/harness.ts";
import {
  fetchOnOwnConnection,
  freePort,
  startPlainBundle,
} from "./support/process.ts";
import { parseExposition, total } from "./support/prometheus.ts";

/** The plain bundle in front of `decodePort`, serving its metrics on a free port of their own. */
function startSidecar(decodePort: number, flags: readonly string[]) {
  const metricsPort = freePort();
  const sidecar = startPlainBundle(decodePort, [
    `-metrics-port=${metricsPort}`,
    ...flags,
  ]);
  return Object.assign(sidecar, { metricsPort });
}

async function scrape(port: number) {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
  return parseExposition(await response.text());
}

Deno.test(
  "bundle serves its metrics on -metrics-port while /metrics on the proxy port still reaches vLLM",
  async () => {
    await using prefill = await createMockVllm({ name: "prefiller" });
    await using decode = await createMockVllm({ name: "decoder" });
    await using sidecar = startSidecar(decode.port, []);
    await sidecar.waitForLine((line) => line.msg === "metrics server starting");
    await sidecar.waitForLine((line) => line.msg === "starting");
    const response = await postChatOverHttp(
      sidecar.base,
      chatBody({ stream: true }),
      jsonHeaders({
        "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
      }),
    );
    assert.equal(response.status, 200);
    await response.text();
    // The access line is written after the request's metrics are recorded.
    await sidecar.waitForLine((line) =>
      isAccessLine()(line) && line.route === "pd"
    );
    const families = await scrape(sidecar.metricsPort);
    assert.equal(
      total(families, "llm_d_sidecar_requests_total", {
        route: "pd",
        connector: "nixlv2",
        outcome: "ok",
      }),
      1,
    );
    assert.equal(total(families, "llm_d_sidecar_decode_duration_seconds"), 1);
    const proxied = await fetch(`http://127.0.0.1:${sidecar.port}/metrics`);
    assert.equal(proxied.status, 200);
    assert.doesNotMatch(await proxied.text(), /llm_d_sidecar_/);
    assert.ok(decode.requests.some((request) => request.path === "/metrics"));
    const other = await fetch(`http://127.0.0.1:${sidecar.metricsPort}/`);
    assert.equal(other.status, 404);
    await other.body?.cancel();
  },
);

Deno.test(
  "bundle with -workers=2 answers one scrape summing both listener threads",
  async () => {
    await using decode = await createMockVllm({ name: "decoder" });
    await using sidecar = startSidecar(decode.port, ["-workers=2"]);
    for (const listener of [0, 1]) {
      await sidecar.waitForLine((line) =>
        line.msg === "starting" && line.listener === listener
      );
    }
    const sent = 30;
    // Each request on a new connection: the kernel spreads connections, not requests.
    for (let i = 0; i < sent; i++) {
      await fetchOnOwnConnection(`${sidecar.base}/v1/models`);
    }
    const handled = () => sidecar.lines.filter(isAccessLine());
    await sidecar.waitForLine(() => handled().length >= sent);
    const listeners = new Set(handled().map((line) => line.listener));
    assert.deepEqual([...listeners].sort(), [0, 1]);
    const families = await scrape(sidecar.metricsPort);
    assert.equal(
      total(families, "llm_d_sidecar_requests_total", {
        route: "passthrough",
      }),
      sent,
    );
    assert.equal(total(families, "llm_d_sidecar_requests_in_flight"), 0);
  },
);

Deno.test("bundle exits 1 naming the metrics port when it is taken", async () => {
  await using decode = await createMockVllm({ name: "decoder" });
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using sidecar = startPlainBundle(decode.port, [
    `-metrics-port=${taken.addr.port}`,
  ]);
  const line = await sidecar.waitForLine((line) => line.level === "error");
  assert.match(
    String(line.msg),
    new RegExp(`^Cannot listen on metrics port ${taken.addr.port}: `),
  );
  assert.equal(await sidecar.exitCode(), 1);
});

Deno.test("bundle starts without metrics when another process holds the default metrics port", async () => {
  // The Go sidecar opens no metrics port by default: its arguments must start
  // where the pod already uses 9090. The port may be held already; then it is.
  let holder: Deno.Listener | undefined;
  try {
    holder = Deno.listen({ hostname: "127.0.0.1", port: 9090 });
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) throw error;
  }
  try {
    await using decode = await createMockVllm({ name: "decoder" });
    await using sidecar = startPlainBundle(decode.port, [
      "-shutdown-drain-delay=0s",
    ], {
      defaultMetricsPort: true,
    });
    const warning = await sidecar.waitForLine((line) =>
      String(line.msg).includes("running without metrics")
    );
    assert.equal(warning.level, "warn");
    const health = await fetch(`${sidecar.base}/health`, {
      signal: AbortSignal.timeout(10_000),
    });
    await health.body?.cancel();
    assert.equal(health.status, 200);
  } finally {
    holder?.close();
  }
});
