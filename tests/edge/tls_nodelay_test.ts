/**
 * TCP_NODELAY toward TLS clients (issue 9): Deno sets it on plain TCP
 * connections only, so with `--allow-ffi` the sidecar sets it on its TLS
 * listener, whose accepted sockets inherit it; without the permission it
 * says once why TLS keeps Nagle's algorithm and serves as before.
 */

import assert from "node:assert/strict";
import {
  makeCa,
  makeServerCert,
  type Pem,
  statusTrusting,
  writeCertDir,
} from "../support/certs.ts";
import { freePort, startBundle } from "../support/process.ts";

const PROBE = new URL("../support/nodelay_probe.ts", import.meta.url).pathname;

async function probe(
  permissions: readonly string[],
  args: readonly string[] = [],
): Promise<{ result: Record<string, unknown>; accepted: number }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, PROBE, ...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

const PROBE_PERMISSIONS = ["--allow-net", "--allow-read", "--allow-env"];

Deno.test("with --allow-ffi a TLS connection the listener accepts has TCP_NODELAY", async () => {
  const { result, accepted } = await probe([
    ...PROBE_PERMISSIONS,
    "--allow-ffi",
  ]);
  assert.deepEqual(result, { set: 1 });
  assert.equal(accepted, 1);
});

Deno.test("the runtime alone leaves TCP_NODELAY off on accepted TLS connections", async () => {
  // The control: the probe can see the option off, so the test above can fail.
  const { accepted } = await probe(
    [...PROBE_PERMISSIONS, "--allow-ffi"],
    ["--leave"],
  );
  assert.equal(accepted, 0);
});

/** A CA and a directory holding a server pair it signed, as `-cert-path` reads it; removed on dispose. */
async function certDir(): Promise<
  { readonly ca: Pem; readonly dir: string } & AsyncDisposable
> {
  const ca = await makeCa("nodelay-ca");
  const certs = await writeCertDir(await makeServerCert(ca));
  return {
    ca,
    dir: certs.dir,
    [Symbol.asyncDispose]: certs[Symbol.asyncDispose],
  };
}

/** A TLS sidecar of two listener threads serving the pair in `certs.dir`. */
function tlsSidecar(
  certs: { readonly dir: string },
  extraPermissions: readonly string[],
) {
  const port = freePort();
  const sidecar = startBundle([
    `-port=${port}`,
    `-model-server-port=${freePort()}`,
    "-listen-host=127.0.0.1",
    `-cert-path=${certs.dir}`,
    "-v=4",
    // Each thread has its own listener on the port, and its own module state.
    "-workers=2",
  ], { extraPermissions });
  return { sidecar, port };
}

Deno.test("the sidecar sets TCP_NODELAY on its TLS listener when --allow-ffi is granted", async () => {
  await using certs = await certDir();
  const { sidecar, port } = tlsSidecar(certs, ["--allow-ffi"]);
  await using _ = sidecar;
  const line = await sidecar.waitForLine((l) =>
    l.msg === "TCP_NODELAY set on the TLS listener"
  );
  assert.equal(line.port, port);
  // The second thread's listener too: two lines, each for its own socket.
  await sidecar.waitForLine((l) =>
    l.msg === "TCP_NODELAY set on the TLS listener" && l !== line
  );
  assert.equal(
    await statusTrusting(certs.ca, `https://127.0.0.1:${port}/health`),
    200,
  );
  assert.equal(
    sidecar.lines.some((l) => String(l.msg).includes("Nagle")),
    false,
  );
});

Deno.test("without --allow-ffi the sidecar says once that TLS keeps Nagle's algorithm, and serves", async () => {
  await using certs = await certDir();
  const { sidecar, port } = tlsSidecar(certs, []);
  await using _ = sidecar;
  const line = await sidecar.waitForLine((l) =>
    String(l.msg).startsWith("TLS connections keep Nagle's algorithm")
  );
  assert.equal(line.level, "info");
  assert.equal(line.reason, "setting it needs --allow-ffi");
  assert.equal(
    await statusTrusting(certs.ca, `https://127.0.0.1:${port}/health`),
    200,
  );
  // Each thread decides before its listener says it is starting.
  for (const listener of [0, 1]) {
    await sidecar.waitForLine((l) =>
      l.msg === "starting" && l.listener === listener
    );
  }
  assert.equal(
    sidecar.lines.filter((l) => String(l.msg).includes("Nagle")).length,
    1,
  );
});

/**
 * A decoder that answers every request with a head declaring 64 bytes, sends
 * 10 of them and closes: a small answer that breaks before its end.
 */
function startShortDecoder(
  extraHeader = "",
  declared = 64,
): { port: number; requests(): number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const encoder = new TextEncoder();
  let requests = 0;
  (async () => {
    for await (const conn of listener) {
      requests++;
      (async () => {
        await conn.read(new Uint8Array(16 * 1024)).catch(() => null);
        await conn.write(encoder.encode(
          `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${declared}\r\n` +
            `${extraHeader}\r\n` +
            '{"object":"',
        )).catch(() => {});
        conn.close();
      })();
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    requests: () => requests,
    close: () => listener.close(),
  };
}

async function passthroughOverTls(
  extraPermissions: readonly string[],
  decoderHeader = "",
  declared?: number,
) {
  const decoder = startShortDecoder(decoderHeader, declared);
  await using certs = await certDir();
  const port = freePort();
  await using sidecar = startBundle([
    `-port=${port}`,
    `-model-server-port=${decoder.port}`,
    "-listen-host=127.0.0.1",
    `-cert-path=${certs.dir}`,
  ], { extraPermissions });
  try {
    await sidecar.waitForLine((l) => l.msg === "starting");
    using client = Deno.createHttpClient({ caCerts: [certs.ca.cert] });
    let response: Response;
    try {
      response = await fetch(`https://127.0.0.1:${port}/v1/models`, {
        client,
        signal: AbortSignal.timeout(10_000),
      });
    } catch (error) {
      // The stream broke before its head went out (an HTTP/2 reset).
      assert.ok(decoder.requests() > 0, "the decoder was never reached");
      return { status: undefined, body: { error } };
    }
    const body = await response.text().then(
      (text) => ({ text }),
      (error: unknown) => ({ error }),
    );
    // Whatever the client saw came from the decoder's broken answer.
    assert.ok(decoder.requests() > 0, "the decoder was never reached");
    return { status: response.status, body };
  } finally {
    decoder.close();
  }
}

Deno.test("without TCP_NODELAY toward TLS clients a small answer is sent whole, so one cut short is a 502", async () => {
  // Relayed as a stream, the body would go out after the head and wait for
  // the client's delayed ACK; held whole, the decoder's break is seen first.
  const { status, body } = await passthroughOverTls([]);
  assert.equal(status, 502);
  assert.ok("text" in body);
  assert.equal(JSON.parse(body.text).error.code, 502);
  assert.match(JSON.parse(body.text).error.message, /broke its answer/);
});

Deno.test("with TCP_NODELAY toward TLS clients a small answer streams as it comes", async () => {
  const { status, body } = await passthroughOverTls(["--allow-ffi"]);
  assert.equal(status, 200);
  assert.ok("error" in body, "the body breaks where the decoder's did");
});

Deno.test("without TCP_NODELAY toward TLS clients a compressed answer still streams: its declared length does not bound it", async () => {
  // fetch decompresses gzip, so 64 declared bytes could be megabytes held.
  const { status, body } = await passthroughOverTls(
    [],
    "content-encoding: gzip\r\n",
  );
  // Streamed, the break reaches the client as a broken stream, never as the
  // 502 a held answer gets.
  assert.notEqual(status, 502);
  assert.ok("error" in body, "the answer breaks where the decoder's did");
});

Deno.test("without TCP_NODELAY toward TLS clients an answer declared over 64 KiB still streams", async () => {
  // Held answers are bounded: a larger one is relayed as it comes.
  const { status, body } = await passthroughOverTls([], "", 64 * 1024 + 1);
  assert.notEqual(status, 502);
  assert.ok("error" in body, "the answer breaks where the decoder's did");
});
