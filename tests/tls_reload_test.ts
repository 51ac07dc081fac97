import assert from "node:assert/strict";
import { createMockVllm } from "../scripts/mock_vllm/mod.ts";
import { type Listener, startListener } from "../src/listener.ts";
import { createLogger } from "../src/log.ts";
import { loadCertificate } from "../src/tls.ts";
import {
  makeCa,
  makeServerCert,
  type Pem,
  statusTrusting,
} from "./support/certs.ts";
import { freePort } from "./support/process.ts";
import { tempDir } from "./support/temp.ts";
import { createWaiters } from "./support/deadline.ts";
import { chatBody, jsonHeaders, testConfig } from "./support/harness.ts";

/** A directory laid out as Kubernetes mounts a secret: files behind the `..data` link. */
class SecretDir {
  readonly path: string;
  #version = 0;

  constructor(path: string) {
    this.path = path;
  }

  /** Writes a new version and swaps `..data` to it atomically, as the kubelet does. */
  async publish(pair: Pem): Promise<void> {
    const version = `..2026_01_01_00_00_0${this.#version++}`;
    await Deno.mkdir(`${this.path}/${version}`);
    await Deno.writeTextFile(`${this.path}/${version}/tls.crt`, pair.cert);
    await Deno.writeTextFile(`${this.path}/${version}/tls.key`, pair.key);
    await Deno.symlink(version, `${this.path}/..data_tmp`);
    await Deno.rename(`${this.path}/..data_tmp`, `${this.path}/..data`);
    for (const file of ["tls.crt", "tls.key"]) {
      try {
        await Deno.lstat(`${this.path}/${file}`);
      } catch {
        await Deno.symlink(`..data/${file}`, `${this.path}/${file}`);
      }
    }
  }
}

Deno.test("the listener's certificate follows a ..data swap: new connections get it, a stream in flight finishes, a bad pair is refused", async () => {
  const [oldCa, newCa] = await Promise.all([makeCa("old"), makeCa("new")]);
  const [oldPair, newPair, otherPair] = await Promise.all([
    makeServerCert(oldCa),
    makeServerCert(newCa),
    makeServerCert(newCa, "other"),
  ]);
  await using temp = await tempDir("tls-secret-");
  const dir = new SecretDir(temp.path);
  await dir.publish(oldPair);
  await using decode = await createMockVllm({
    name: "decoder",
    interTokenMs: 20,
    outputTokens: 40,
  });
  const events: Record<string, unknown>[] = [];
  const written = createWaiters();
  const log = createLogger({
    verbosity: 0,
    write: (line) => {
      events.push(JSON.parse(line));
      written.notify();
    },
  });
  const logged = (msg: string) =>
    written.until(
      () => events.find((line) => line.msg === msg),
      `a "${msg}" log line`,
      { ms: 10_000 },
    );
  let listener: Listener | undefined;
  try {
    const listening = logged("starting");
    listener = startListener({
      config: testConfig({
        port: 0,
        modelServerPort: decode.port,
        secureProxy: true,
        certPath: dir.path,
      }),
      tls: await loadCertificate(dir.path),
      log,
    });
    await listening;
    const started = events.find((line) => line.msg === "starting");
    const url = `https://${started?.addr}/health`;
    assert.equal(await statusTrusting(oldCa, url), 200);
    assert.match(
      String(await statusTrusting(newCa, url)),
      /UnknownIssuer|certificate/i,
    );

    // A streamed completion on an old-certificate connection, across the swap.
    const streamClient = Deno.createHttpClient({ caCerts: [oldCa.cert] });
    const stream = await fetch(`https://${started?.addr}/v1/chat/completions`, {
      method: "POST",
      headers: jsonHeaders(),
      body: chatBody({ stream: true }),
      client: streamClient,
    });
    assert.equal(stream.status, 200);
    const reader = stream.body!.pipeThrough(new TextDecoderStream())
      .getReader();
    let received = (await reader.read()).value ?? "";

    const reloaded = logged("reloaded TLS certificate");
    await dir.publish(newPair);
    await reloaded;
    // The line comes once the old listener is closed: every new connection
    // from then on gets the new pair.
    assert.equal(await statusTrusting(newCa, url), 200);
    assert.match(
      String(await statusTrusting(oldCa, url)),
      /UnknownIssuer|certificate/i,
    );

    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      received += value;
    }
    streamClient.close();
    assert.ok(
      received.trimEnd().endsWith("data: [DONE]"),
      "the stream was cut",
    );

    // A key that does not match its certificate keeps the current pair.
    const failed = logged("Failed to reload TLS certificate");
    await dir.publish({ cert: otherPair.cert, key: newPair.key });
    await failed;
    assert.equal(await statusTrusting(newCa, url), 200);
  } finally {
    assert.equal(await listener?.stop({ graceMs: 5_000 }), true);
  }
});

Deno.test("the listener refuses TLS 1.1 and accepts TLS 1.2", async () => {
  const ca = await makeCa("ca");
  const pair = await makeServerCert(ca);
  await using decode = await createMockVllm({ name: "decoder" });
  const log = createLogger({ verbosity: -2, write: () => {} });
  const port = freePort();
  const listener = startListener({
    config: testConfig({
      port,
      modelServerPort: decode.port,
      secureProxy: true,
    }),
    tls: pair,
    log,
  });
  try {
    const handshake = async (version: string) => {
      const output = await new Deno.Command("openssl", {
        args: [
          "s_client",
          "-connect",
          `127.0.0.1:${port}`,
          version,
          "-servername",
          "localhost",
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(10_000),
      }).output();
      return new TextDecoder().decode(output.stdout);
    };
    assert.match(await handshake("-tls1_2"), /New, TLSv1\.2, Cipher is ECDHE-/);
    // A TLS 1.1 hello gets a handshake-failure alert and no session.
    assert.match(
      await handshake("-tls1_1"),
      /New, \(NONE\), Cipher is \(NONE\)/,
    );
  } finally {
    await listener.stop({ graceMs: 5_000 });
  }
});
