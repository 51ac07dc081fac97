import assert from "node:assert/strict";
import { createMockVllm } from "../../scripts/mock_vllm/mod.ts";
import { startPlainBundle } from "../support/process.ts";
import { withDeadline } from "../support/deadline.ts";
import { closeQuietly, connectTo } from "../support/sockets.ts";

/** The sidecar's open-file limit in this test: far below the connections it gets. */
const LIMIT = 256;
const IDLE_CONNECTIONS = 400;

/** Lowers the open-file limit of a running process (util-linux `prlimit`). */
async function limitOpenFiles(pid: number, limit: number): Promise<void> {
  const output = await new Deno.Command("prlimit", {
    args: [`--pid=${pid}`, `--nofile=${limit}:${limit}`],
    stderr: "piped",
  }).output().catch((error) => {
    throw new Error("This test needs util-linux's prlimit on the PATH", {
      cause: error,
    });
  });
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
}

async function get(port: number, path: string): Promise<Response> {
  return await fetch(`http://127.0.0.1:${port}${path}`, {
    signal: AbortSignal.timeout(5_000),
  });
}

Deno.test("sidecar outlives running out of descriptors, reports it at a bounded rate, and serves again once connections close", async () => {
  await using decoder = await createMockVllm({ name: "decoder" });
  await using sidecar = startPlainBundle(decoder.port, []);
  const { port } = sidecar;
  const deadline = (promise: Promise<Record<string, unknown>>, what: string) =>
    withDeadline(promise, 10_000, what);
  await deadline(
    sidecar.waitForLine((line) => line.msg === "starting"),
    "the sidecar to start",
  );
  await limitOpenFiles(sidecar.process.pid, LIMIT);

  const started = performance.now();
  const idle: Deno.Conn[] = [];
  try {
    for (let i = 0; i < IDLE_CONNECTIONS; i++) idle.push(await connectTo(port));
    await deadline(
      sidecar.waitForLine((line) =>
        String(line.msg).startsWith("Cannot accept a connection")
      ),
      "the sidecar to report it cannot accept",
    );
  } finally {
    for (const conn of idle) closeQuietly(conn);
  }
  await deadline(
    sidecar.waitForLine((line) => line.msg === "accepting connections again"),
    "the sidecar to accept again",
  );

  const health = await get(port, "/health");
  assert.equal(health.status, 200);
  await health.body?.cancel();
  // The upstream leg gets descriptors again too.
  const models = await get(port, "/v1/models");
  assert.equal(models.status, 200);
  await models.body?.cancel();

  const reports = sidecar.lines.filter((line) =>
    String(line.msg).startsWith("Cannot accept a connection")
  );
  const seconds = (performance.now() - started) / 1000;
  assert.ok(
    reports.length <= 1 + seconds / 10,
    `${reports.length} reports in ${seconds.toFixed(1)} s`,
  );
  sidecar.process.kill("SIGTERM");
  const status = await withDeadline(
    sidecar.process.status,
    10_000,
    "the sidecar to stop",
  );
  assert.equal(status.code, 0, "alive until told to stop, then a clean stop");
});
