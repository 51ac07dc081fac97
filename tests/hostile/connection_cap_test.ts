import assert from "node:assert/strict";
import { settlesWithin } from "../support/deadline.ts";
import { createMockVllm } from "../../scripts/mock_vllm/mod.ts";
import { makeCa, makeServerCert, writeCertDir } from "../support/certs.ts";
import {
  freePort,
  type SidecarProcess,
  startBundle,
} from "../support/process.ts";
import {
  closeQuietly,
  connectTo,
  readUntil,
  writeText,
} from "../support/sockets.ts";

const CAP = 4;
const HEALTH = "GET /health HTTP/1.1\r\nhost: sidecar\r\n\r\n";
/**
 * How long a queued connection is watched for an answer it must not get. A
 * negative needs a window; the sidecar answers /health in about a
 * millisecond, so a connection it served would answer well within it.
 */
const QUEUED_WINDOW_MS = 500;

/** Reads one whole /health answer (a head with no body). */
function readHealth(conn: Deno.Conn) {
  return readUntil(conn, (text) => text.includes("\r\n\r\n"));
}

async function startCapped(
  args: readonly string[],
): Promise<{ sidecar: SidecarProcess; port: number } & AsyncDisposable> {
  const decoder = await createMockVllm({ name: "decoder" });
  const port = freePort();
  const sidecar = startBundle([
    `-port=${port}`,
    `-model-server-port=${decoder.port}`,
    "-listen-host=127.0.0.1",
    `-max-connections=${CAP}`,
    ...args,
  ]);
  const stop = async () => {
    await sidecar[Symbol.asyncDispose]();
    await decoder.close();
  };
  try {
    await sidecar.waitForLine((line) => line.msg === "starting", 10_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return { sidecar, port, [Symbol.asyncDispose]: stop };
}

Deno.test(
  "-max-connections holds the connection past the cap in the listen queue until one closes, and /health answers after",
  async () => {
    await using s = await startCapped(["-secure-proxy=false"]);
    const held: Deno.Conn[] = [];
    let queued: Deno.Conn | undefined;
    try {
      // Idle keep-alive connections, each served once: the flood the cap is for.
      for (let i = 0; i < CAP; i++) {
        const conn = await connectTo(s.port);
        held.push(conn);
        await writeText(conn, HEALTH);
        assert.match((await readHealth(conn)).text, /^HTTP\/1\.1 200 OK/);
      }
      // waitForLine's own deadline prints the sidecar's log when it fails.
      const reached = await s.sidecar.waitForLine(
        (line) => String(line.msg).startsWith("Connection limit reached"),
        5_000,
      );
      assert.equal(reached.open_connections, CAP);
      // The kernel completes the connect; the sidecar does not accept it yet.
      queued = await connectTo(s.port);
      await writeText(queued, HEALTH);
      const answered = readHealth(queued);
      assert.equal(
        await settlesWithin(answered, QUEUED_WINDOW_MS),
        false,
        "the connection past the cap was served",
      );
      held.pop()?.close();
      assert.match((await answered).text, /^HTTP\/1\.1 200 OK/);
    } finally {
      for (const conn of held) closeQuietly(conn);
      if (queued) closeQuietly(queued);
    }
    const health = await fetch(`http://127.0.0.1:${s.port}/health`, {
      signal: AbortSignal.timeout(5_000),
    });
    assert.equal(health.status, 200);
    await health.body?.cancel();
  },
);

Deno.test(
  "-max-connections counts TLS handshakes that never complete, so a stalled-handshake flood queues clients instead of taking descriptors",
  async () => {
    const ca = await makeCa("test-ca");
    await using certs = await writeCertDir(await makeServerCert(ca));
    await using s = await startCapped([
      "-secure-proxy=true",
      `-cert-path=${certs.dir}`,
    ]);
    using client = Deno.createHttpClient({ caCerts: [ca.cert] });
    const health = () =>
      fetch(`https://127.0.0.1:${s.port}/health`, {
        client,
        signal: AbortSignal.timeout(10_000),
      });
    // Connections that never send a ClientHello.
    const stalled: Deno.Conn[] = [];
    try {
      for (let i = 0; i < CAP; i++) stalled.push(await connectTo(s.port));
      await s.sidecar.waitForLine(
        (line) => String(line.msg).startsWith("Connection limit reached"),
        5_000,
      );
      const answered = health();
      assert.equal(
        await settlesWithin(answered, QUEUED_WINDOW_MS),
        false,
        "a client past the cap was served",
      );
      stalled.pop()?.close();
      const response = await answered;
      assert.equal(response.status, 200);
      await response.body?.cancel();
    } finally {
      for (const conn of stalled) closeQuietly(conn);
    }
  },
);
