import assert from "node:assert/strict";
import { createMockVllm } from "../../scripts/mock_vllm/mod.ts";
import { createApp } from "../../src/app.ts";
import { createLogger } from "../../src/log.ts";
import {
  loadCaCertificates,
  upstreamClientOptions,
} from "../../src/security.ts";
import type { Config } from "../../src/config.ts";
import { createUpstreamClient } from "../../src/upstream/client.ts";
import { makeCa, makeServerCert } from "../support/certs.ts";
import { chatBody, jsonHeaders, testConfig } from "../support/harness.ts";
import { startPlainBundle } from "../support/process.ts";
import { startHangingUpstream } from "../support/stub_upstream.ts";
import { withDeadline } from "../support/deadline.ts";
import { tempFile } from "../support/temp.ts";

/**
 * POSTs a chat body to `path` of an app on `config` whose upstream clients
 * trust `caCerts`, as the listener builds them; its status and text.
 */
async function postThrough(
  config: Config,
  caCerts: readonly string[],
  path = "/v1/chat/completions",
  headers: Record<string, string> = {},
): Promise<{ readonly status: number; readonly text: string }> {
  const upstream = createUpstreamClient(upstreamClientOptions(config, caCerts));
  try {
    const app = createApp({
      config,
      log: createLogger({ verbosity: -2, write: () => {} }),
      upstream,
    });
    const response = await app.request(path, {
      method: "POST",
      headers: jsonHeaders(headers),
      body: chatBody(),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: response.status, text: await response.text() };
  } finally {
    upstream.close();
  }
}

Deno.test("-ca-cert: a verified TLS stage trusts the bundle's CAs besides the default roots", async () => {
  const [internalCa, otherCa] = await Promise.all([
    makeCa("internal"),
    makeCa("other"),
  ]);
  await using prefill = await createMockVllm({
    name: "prefiller",
    tls: await makeServerCert(internalCa),
  });
  await using decode = await createMockVllm({ name: "decoder" });
  // Two CAs in one file: the one that signed the prefiller is the second.
  await using bundle = await tempFile(`${otherCa.cert}\n${internalCa.cert}`);
  const config = testConfig({
    modelServerPort: decode.port,
    tlsStages: ["prefiller"],
  });
  const run = (caCerts: string[]) =>
    postThrough(config, caCerts, "/v1/chat/completions", {
      "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
    });
  const trusted = await run(await loadCaCertificates(bundle.path));
  assert.equal(trusted.status, 200, trusted.text);
  assert.equal(prefill.requests.length, 1);
  const untrusted = await run([]);
  assert.equal(untrusted.status, 502);
  assert.match(untrusted.text, /Cannot reach prefill server/);
  assert.equal(
    prefill.requests.length,
    1,
    "an unverified handshake must not send the request",
  );
});

Deno.test("loadCaCertificates refuses a file without a certificate or with a broken one", async () => {
  await using empty = await tempFile("not a certificate\n");
  await using broken = await tempFile(
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
  );
  await assert.rejects(
    loadCaCertificates(empty.path),
    /No PEM certificate found in CA file/,
  );
  await assert.rejects(
    loadCaCertificates(broken.path),
    /Certificate 1 in CA file .* does not parse/,
  );
  await assert.rejects(
    loadCaCertificates("/nonexistent/ca.pem"),
    /Cannot read CA certificates/,
  );
});

/**
 * Runs the shipped bundle (a process of its own: undici, used for stages that
 * skip verification, must not share a process with the Deno.serve TLS mocks;
 * Deno 2.9.6 crashes when such a connection closes).
 */
async function pdThroughBundle(
  flags: string[],
  prefillPort: number,
  decodePort: number,
): Promise<{ status: number; text: string }> {
  await using sidecar = startPlainBundle(decodePort, [...flags]);
  const { port } = sidecar;
  await sidecar.waitForLine((line) => line.msg === "starting");
  const response = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: "POST",
    headers: jsonHeaders({
      "x-prefiller-host-port": `127.0.0.1:${prefillPort}`,
    }),
    body: chatBody(),
    signal: AbortSignal.timeout(20_000),
  });
  return { status: response.status, text: await response.text() };
}

Deno.test("-tls-insecure-skip-verify applies to the stages it names and no other", async () => {
  const untrustedCa = await makeCa("nobody trusts me");
  await using prefill = await createMockVllm({
    name: "prefiller",
    tls: await makeServerCert(untrustedCa),
  });
  await using decode = await createMockVllm({
    name: "decoder",
    tls: await makeServerCert(untrustedCa),
  });
  const decodes = () =>
    decode.requests.filter((r) => r.path === "/v1/chat/completions").length;

  // The prefiller's certificate is not checked; the decoder's is, and fails.
  const prefillSkips = await pdThroughBundle(
    ["-enable-tls=prefiller,decoder", "-tls-insecure-skip-verify=prefiller"],
    prefill.port,
    decode.port,
  );
  assert.equal(prefill.requests.length, 1);
  assert.equal(decodes(), 0);
  assert.equal(prefillSkips.status, 502, prefillSkips.text);
  assert.match(prefillSkips.text, /Cannot reach decode server/);

  // The other way round, with the original's deprecated flags.
  const decoderSkips = await pdThroughBundle(
    [
      "-prefiller-use-tls",
      "-decoder-use-tls",
      "-decoder-tls-insecure-skip-verify",
    ],
    prefill.port,
    decode.port,
  );
  assert.equal(decoderSkips.status, 502, decoderSkips.text);
  assert.match(decoderSkips.text, /Cannot reach prefill server/);
  assert.equal(
    prefill.requests.length,
    1,
    "the verified prefill leg sent nothing",
  );
  assert.equal(decodes(), 0);

  // Both skipped: the whole P/D request runs over TLS.
  const both = await pdThroughBundle(
    [
      "-enable-tls=prefiller",
      "-enable-tls=decoder",
      "-tls-insecure-skip-verify=prefiller,decoder",
    ],
    prefill.port,
    decode.port,
  );
  assert.equal(both.status, 200, both.text);
  assert.equal(prefill.requests.length, 2);
  assert.equal(decodes(), 1);

  // Passthrough streams the client's body to a decoder whose certificate is not checked.
  await using sidecar = startPlainBundle(decode.port, [
    "-enable-tls=decoder",
    "-tls-insecure-skip-verify=decoder",
  ]);
  const { port } = sidecar;
  await sidecar.waitForLine((line) => line.msg === "starting");
  const body = new Blob([chatBody()]).stream();
  const response = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: "POST",
    headers: jsonHeaders(),
    body,
    signal: AbortSignal.timeout(20_000),
  });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  assert.equal(JSON.parse(text).object, "chat.completion");
  assert.equal(decodes(), 2);
});

Deno.test("-connect-timeout bounds the TLS handshake of a verified stage: an upstream that never answers the ClientHello gets 504 connect_timeout", async () => {
  const ca = await makeCa("internal");
  await using silent = startHangingUpstream();
  await using refusing = await createMockVllm({
    name: "decoder",
    tls: await makeServerCert(await makeCa("nobody trusts me")),
  });
  await using good = await createMockVllm({
    name: "decoder",
    tls: await makeServerCert(ca),
  });
  const decode = (port: number) =>
    postThrough(
      testConfig({
        modelServerPort: port,
        tlsStages: ["decoder"],
        connectTimeout: 300,
      }),
      [ca.cert],
    );
  const hung = await decode(silent.port);
  assert.equal(hung.status, 504, hung.text);
  assert.match(hung.text, /no TLS handshake within 300 ms/);
  assert.equal(silent.connections(), 1, "only the probe connected");
  await withDeadline(
    silent.allClosed(),
    5_000,
    "the probe's connection to close",
  );

  // A certificate the stage refuses is the request's own error, not a timeout.
  const refused = await decode(refusing.port);
  assert.equal(refused.status, 502, refused.text);
  assert.match(refused.text, /invalid peer certificate/);

  const served = await decode(good.port);
  assert.equal(served.status, 200, served.text);
  assert.equal(good.requests.length, 1);
});

Deno.test("a verified TLS decoder is checked as localhost, as Go names it: a certificate for localhost alone serves every leg", async () => {
  const ca = await makeCa("internal");
  await using decode = await createMockVllm({
    name: "decoder",
    tls: await makeServerCert(ca, "vllm", "localhost-only"),
  });
  await using prefill = await createMockVllm({ name: "prefiller" });
  const config = testConfig({
    modelServerPort: decode.port,
    tlsStages: ["decoder"],
  });
  const send = (path: string, headers: Record<string, string>) =>
    postThrough(config, [ca.cert], path, headers);
  const decodeOnly = await send("/v1/chat/completions", {});
  assert.equal(decodeOnly.status, 200, decodeOnly.text);
  const pd = await send("/v1/chat/completions", {
    "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
  });
  assert.equal(pd.status, 200, pd.text);
  const passthrough = await send("/tokenize", {});
  assert.equal(passthrough.status, 200, passthrough.text);
  assert.equal(prefill.requests.length, 1);
  assert.equal(
    decode.requests.filter((r) => r.path === "/v1/chat/completions").length,
    2,
  );
});
