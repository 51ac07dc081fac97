import assert from "node:assert/strict";
import { createMockVllm, type MockVllm } from "../scripts/mock_vllm/mod.ts";
import { configForRank } from "../src/config.ts";
import { createRankSelector, dataParallelKeys } from "../src/data_parallel.ts";
import { ProxyError } from "../src/errors.ts";
import { createLogger } from "../src/log.ts";
import { jsonHeaders, testConfig } from "./support/harness.ts";
import { runBundle, startBundle } from "./support/process.ts";

const HEADER = "x-data-parallel-host-port";

/** Two loopback ports in a row that were free a moment ago (ranks need consecutive ports). */
function freePortPair(): number {
  for (let attempt = 0; attempt < 20; attempt++) {
    const first = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = first.addr.port;
    try {
      if (port === 65535) continue;
      Deno.listen({ hostname: "127.0.0.1", port: port + 1 }).close();
      return port;
    } catch {
      // port + 1 is taken: try another pair.
    } finally {
      first.close();
    }
  }
  throw new Error("No two consecutive free loopback ports");
}

/** Two mock decoders on consecutive ports, as vLLM's ranks listen. */
async function startRankDecoders(): Promise<[MockVllm, MockVllm]> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = freePortPair();
    const rank0 = await createMockVllm({ name: "decoder-rank-0", port });
    try {
      const rank1 = await createMockVllm({
        name: "decoder-rank-1",
        port: port + 1,
      });
      return [rank0, rank1];
    } catch (error) {
      await rank0.close();
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
  throw new Error("Cannot start two mock decoders on consecutive ports");
}

function completion(
  url: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: jsonHeaders(headers),
    body: JSON.stringify({ prompt: "Hi", max_tokens: 2 }),
  });
}

/** Sends `request`, reads the answer whole and returns its status and the mocks that saw it. */
async function routed(
  request: Promise<Response>,
  decoders: readonly MockVllm[],
): Promise<{ status: number; body: string; ranks: number[] }> {
  const before = decoders.map((decoder) => decoder.requests.length);
  const response = await request;
  const body = await response.text();
  const ranks = decoders.flatMap((decoder, rank) =>
    decoder.requests.length > (before[rank] ?? 0) ? [rank] : []
  );
  return { status: response.status, body, ranks };
}

Deno.test("dataParallelKeys builds POD_IP:port+r for every rank, bracketing IPv6", () => {
  assert.deepEqual(
    [
      ...dataParallelKeys({
        podIp: "10.0.0.7",
        port: 8000,
        dataParallelSize: 3,
      }),
    ],
    [["10.0.0.7:8000", 0], ["10.0.0.7:8001", 1], ["10.0.0.7:8002", 2]],
  );
  assert.deepEqual(
    [...dataParallelKeys({
      podIp: "fd00::7",
      port: 8000,
      dataParallelSize: 2,
    })],
    [["[fd00::7]:8000", 0], ["[fd00::7]:8001", 1]],
  );
  // Go's JoinHostPort with an unset POD_IP.
  assert.deepEqual(
    [...dataParallelKeys({ podIp: "", port: 8000, dataParallelSize: 1 })],
    [[":8000", 0]],
  );
});

Deno.test("createRankSelector on rank 0 follows the header and refuses unknown values with a 400", () => {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    verbosity: 0,
    write: (line) => lines.push(JSON.parse(line)),
  });
  const config = testConfig({
    podIp: "10.0.0.7",
    port: 8000,
    modelServerPort: 8200,
    dataParallelSize: 2,
  });
  const selector = createRankSelector(config);
  assert.equal(selector.select(new Headers(), log), 0);
  assert.equal(selector.select(new Headers({ [HEADER]: "" }), log), 0);
  assert.equal(
    selector.select(new Headers({ [HEADER]: "10.0.0.7:8001" }), log),
    1,
  );
  assert.equal(
    selector.select(new Headers({ [HEADER]: "10.0.0.7:8000" }), log),
    0,
  );
  for (
    const value of [
      "10.0.0.7:8002",
      "10.0.0.8:8001",
      "8001",
      "http://10.0.0.7:8001",
    ]
  ) {
    assert.throws(
      () => selector.select(new Headers({ [HEADER]: value }), log),
      (error: unknown) =>
        error instanceof ProxyError && error.status === 400 &&
        error.message ===
          `Invalid data-parallel endpoint "${value}" in header "${HEADER}": ` +
            'expected one of "10.0.0.7:8000", "10.0.0.7:8001"',
    );
  }
  // Deprecated: said once, not on every request.
  assert.deepEqual(lines.map((line) => [line.level, line.msg]), [[
    "warn",
    `The use of the ${HEADER} header is deprecated. Use Istio >= 1.28.1.`,
  ]]);
});

Deno.test("createRankSelector on another rank ignores the header, as Go's rank servers do", () => {
  const log = createLogger({ verbosity: 0, write: () => {} });
  const config = configForRank(
    testConfig({ podIp: "10.0.0.7", port: 8000, dataParallelSize: 2 }),
    1,
  );
  const selector = createRankSelector(config);
  for (const value of ["10.0.0.7:8000", "nonsense"]) {
    assert.equal(selector.select(new Headers({ [HEADER]: value }), log), 1);
  }
});

Deno.test(
  "bundle with -data-parallel-size=2 serves each rank on its port against its own model server",
  async () => {
    const decoders = await startRankDecoders();
    const [decode0, decode1] = decoders;
    await using _decode0 = decode0;
    await using _decode1 = decode1;
    await using prefill = await createMockVllm({ name: "prefiller" });
    const port = freePortPair();
    await using sidecar = startBundle([
      `-port=${port}`,
      `-model-server-port=${decode0.port}`,
      "-data-parallel-size=2",
      "-listen-host=127.0.0.1",
      "-secure-proxy=false",
    ], { env: { POD_IP: "127.0.0.1" } });
    for (const rankPort of [port, port + 1]) {
      await sidecar.waitForLine((line) =>
        line.msg === "starting" && line.addr === `127.0.0.1:${rankPort}`
      );
    }
    const rank = (r: number) => `http://127.0.0.1:${port + r}`;

    // Plain decode, passthrough and P/D each reach the listener's own rank.
    for (const r of [0, 1]) {
      assert.deepEqual(
        (await routed(completion(`${rank(r)}/v1/completions`), decoders)).ranks,
        [r],
      );
      const models = await routed(fetch(`${rank(r)}/v1/models`), decoders);
      assert.deepEqual([models.status, models.ranks], [200, [r]]);
      const pd = await routed(
        completion(`${rank(r)}/v1/completions`, {
          "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
        }),
        decoders,
      );
      assert.deepEqual([pd.status, pd.ranks], [200, [r]]);
      assert.equal(decoders[r]?.requests.at(-1)?.kvTransfer?.outcome, "pulled");
    }
    // Each rank's lines are named after its port, as Go names its rank servers.
    const rank1Start = sidecar.lines.find((line) =>
      line.msg === "starting" && line.addr === `127.0.0.1:${port + 1}`
    );
    assert.equal(rank1Start?.logger, `proxy server on port ${port + 1}`);
    sidecar.process.kill("SIGTERM");
    assert.equal(await sidecar.exitCode(), 0);
  },
);

Deno.test(
  "bundle rank 0 routes by x-data-parallel-host-port and POD_IP, and forwards the header",
  async () => {
    const decoders = await startRankDecoders();
    const [decode0, decode1] = decoders;
    await using _decode0 = decode0;
    await using _decode1 = decode1;
    await using prefill = await createMockVllm({ name: "prefiller" });
    const port = freePortPair();
    await using sidecar = startBundle([
      `-port=${port}`,
      `-model-server-port=${decode0.port}`,
      "-data-parallel-size=2",
      "-listen-host=127.0.0.1",
      "-secure-proxy=false",
    ], { env: { POD_IP: "10.1.2.3" } });
    await sidecar.waitForLine((line) =>
      line.msg === "starting" && line.addr === `127.0.0.1:${port + 1}`
    );
    const rank0 = `http://127.0.0.1:${port}`;
    const rank1Key = `10.1.2.3:${port + 1}`;

    const plain = await routed(
      completion(`${rank0}/v1/completions`, { [HEADER]: rank1Key }),
      decoders,
    );
    assert.deepEqual([plain.status, plain.ranks], [200, [1]]);
    assert.equal(decode1.requests.at(-1)?.headers.get(HEADER), rank1Key);

    const pd = await routed(
      completion(`${rank0}/v1/completions`, {
        [HEADER]: rank1Key,
        "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
      }),
      decoders,
    );
    assert.deepEqual([pd.status, pd.ranks], [200, [1]]);
    assert.equal(decode1.requests.at(-1)?.kvTransfer?.outcome, "pulled");

    const own = await routed(
      completion(`${rank0}/v1/completions`, { [HEADER]: `10.1.2.3:${port}` }),
      decoders,
    );
    assert.deepEqual(own.ranks, [0]);

    // The key is POD_IP's, not the address the client dialled.
    const prefillsBefore = prefill.requests.length;
    const unknown = await routed(
      completion(`${rank0}/v1/completions`, {
        [HEADER]: `127.0.0.1:${port + 1}`,
        "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
      }),
      decoders,
    );
    assert.equal(unknown.status, 400);
    assert.deepEqual(unknown.ranks, []);
    assert.equal(prefill.requests.length, prefillsBefore);
    assert.match(
      JSON.parse(unknown.body).error.message,
      /^Invalid data-parallel endpoint "127\.0\.0\.1:\d+" in header "x-data-parallel-host-port"/,
    );

    // Only generation routes on rank 0 read it, as in Go.
    const models = await routed(
      fetch(`${rank0}/v1/models`, { headers: { [HEADER]: rank1Key } }),
      decoders,
    );
    assert.deepEqual(models.ranks, [0]);
    const onRank1 = await routed(
      completion(`http://127.0.0.1:${port + 1}/v1/completions`, {
        [HEADER]: `10.1.2.3:${port}`,
      }),
      decoders,
    );
    assert.deepEqual(onRank1.ranks, [1]);
  },
);

Deno.test("bundle with -workers=2 serves every rank from both threads", async () => {
  const decoders = await startRankDecoders();
  const [decode0, decode1] = decoders;
  await using _decode0 = decode0;
  await using _decode1 = decode1;
  const port = freePortPair();
  await using sidecar = startBundle([
    `-port=${port}`,
    `-model-server-port=${decode0.port}`,
    "-data-parallel-size=2",
    "-workers=2",
    "-listen-host=127.0.0.1",
    "-secure-proxy=false",
  ]);
  for (const listener of [0, 1]) {
    for (const rank of [0, 1]) {
      await sidecar.waitForLine((line) =>
        line.msg === "starting" && line.listener === listener &&
        line.data_parallel_rank === rank
      );
    }
  }
  for (const r of [0, 1]) {
    const { status, ranks } = await routed(
      completion(`http://127.0.0.1:${port + r}/v1/completions`),
      decoders,
    );
    assert.deepEqual([status, ranks], [200, [r]]);
  }
  sidecar.process.kill("SIGTERM");
  assert.equal(await sidecar.exitCode(), 0);
});

Deno.test("bundle exits 1 naming the port when a rank's port is taken", async () => {
  const port = freePortPair();
  using _taken = Deno.listen({ hostname: "127.0.0.1", port: port + 1 });
  const { code, stderr } = await runBundle([
    `-port=${port}`,
    "-model-server-port=9",
    "-data-parallel-size=2",
    "-listen-host=127.0.0.1",
    "-secure-proxy=false",
  ]);
  assert.equal(code, 1);
  const error = stderr.split("\n").filter((line) => line !== "").map((line) =>
    JSON.parse(line)
  ).find((line) => line.level === "error");
  assert.match(error?.msg, new RegExp(`^Cannot listen on port ${port + 1}: `));
});
