import assert from "node:assert/strict";
import { createMockVllm } from "../scripts/mock_vllm/mod.ts";
import { generateSelfSignedCertificate } from "../src/tls.ts";
import {
  type BundleOptions,
  fetchOnOwnConnection,
  freePort,
  type PlainSidecarProcess,
  runBundle,
  startBundle,
  startPlainBundle,
} from "./support/process.ts";
import {
  chatBody,
  isAccessLine,
  jsonHeaders,
  postChatOverHttp,
} from "./support/harness.ts";
import {
  makeCa,
  makeServerCert,
  statusTrusting,
  writeCertDir,
} from "./support/certs.ts";
import { tempDir, tempFile } from "./support/temp.ts";

/** The plain bundle in front of `decodePort`, stopping at once: the drain delay has its own tests (shutdown_test.ts). */
function startPlainSidecar(
  decodePort: number,
  flags: readonly string[],
  options: BundleOptions = {},
): PlainSidecarProcess {
  return startPlainBundle(
    decodePort,
    ["-shutdown-drain-delay=0s", ...flags],
    options,
  );
}

Deno.test("bundle prints usage and exits 0 on -help", async () => {
  const { code, stdout } = await runBundle(["-help"]);
  assert.equal(code, 0);
  assert.match(stdout, /^Usage of /);
  assert.match(stdout, /-vllm-port string/);
  assert.match(stdout, /-model-server-port string/);
  assert.match(stdout, /-data-parallel-size int/);
  assert.match(stdout, /\n {2}POD_IP {2,}/);
});

Deno.test("bundle prints the Go sidecar's validation message and exits 2 on a bad connector flag", async () => {
  const cases: [string[], string][] = [
    [
      ["-data-parallel-size=0"],
      "--data-parallel-size must be a positive integer, got 0",
    ],
    [
      ["--model-server-port=x"],
      '--model-server-port must be a valid integer, got "x"',
    ],
    [
      ["-kv-connector=foo"],
      "--kv-connector must be one of: nixlv2, nixl, lmcache, sglang, shared-storage, mooncake, offloading",
    ],
    [
      ["-mooncake-bootstrap-port=0"],
      "--mooncake-bootstrap-port must be between 1 and 65535, got 0",
    ],
  ];
  for (const [args, message] of cases) {
    const { code, stderr } = await runBundle(args);
    assert.equal(code, 2, args.join(" "));
    assert.equal(
      stderr,
      `${message}\nRun "llm-d-routing-sidecar -help" for usage.\n`,
    );
  }
  const combination = await runBundle([
    "-enable-p2p-pull",
    "-kv-connector=sglang",
  ]);
  assert.equal(combination.code, 1);
  assert.match(
    combination.stderr,
    /^--enable-p2p-pull requires --kv-connector=nixlv2 \(got "sglang"\)\n/,
  );
});

Deno.test("bundle exits 2 with usage hint on a -stderrthreshold klog refuses, and starts on -v=-1", async () => {
  const refused = await runBundle(["-stderrthreshold=foo"]);
  assert.equal(refused.code, 2);
  assert.equal(
    refused.stderr,
    'Invalid value "foo" for flag "-stderrthreshold": expected a severity ' +
      "(INFO, WARNING, ERROR, FATAL, any case) or a 32-bit integer\n" +
      'Run "llm-d-routing-sidecar -help" for usage.\n',
  );
  const printed = await runBundle(["-v=-1", "-print-config"]);
  assert.equal(printed.code, 0, printed.stderr);
  assert.match(printed.stdout, /\nv +-1 +flag\n/);
});

Deno.test("bundle reaches loopback upstreams directly with HTTP_PROXY set, as Go's transports do", async () => {
  const proxied: string[] = [];
  await using proxy = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) => {
      proxied.push(request.url);
      return new Response("answered by the proxy", { status: 502 });
    },
  );
  await using prefill = await createMockVllm({ name: "prefiller" });
  await using decode = await createMockVllm({ name: "decoder" });
  const proxyUrl = `http://127.0.0.1:${proxy.addr.port}`;
  await using sidecar = startPlainSidecar(decode.port, [], {
    env: {
      HTTP_PROXY: proxyUrl,
      https_proxy: proxyUrl,
      NO_PROXY: "10.0.0.0/8",
    },
  });
  await sidecar.waitForLine((line) => line.msg === "starting");
  const pd = await postChatOverHttp(
    sidecar.base,
    chatBody(),
    jsonHeaders({ "x-prefiller-host-port": `127.0.0.1:${prefill.port}` }),
  );
  assert.equal(pd.status, 200, await pd.text());
  const passthrough = await fetch(`${sidecar.base}/v1/models`, {
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(passthrough.status, 200);
  await passthrough.body?.cancel();
  assert.deepEqual(proxied, []);
  assert.equal(prefill.requests.length, 1);
  assert.deepEqual(decode.requests.map((request) => request.path), [
    "/v1/chat/completions",
    "/v1/models",
  ]);
});

Deno.test("bundle on its default dual-stack listener names an IPv4 client a.b.c.d in X-Forwarded-For, as Go does", async () => {
  await using decode = await createMockVllm({ name: "decoder" });
  const port = freePort();
  await using sidecar = startBundle([
    `-port=${port}`,
    `-model-server-port=${decode.port}`,
    "-secure-proxy=false",
    "-shutdown-drain-delay=0s",
  ]);
  await sidecar.waitForLine((line) => line.msg === "starting");
  const answer = await fetch(`http://127.0.0.1:${port}/v1/models`, {
    headers: { "x-forwarded-for": "203.0.113.9" },
    signal: AbortSignal.timeout(10_000),
  });
  await answer.body?.cancel();
  assert.equal(answer.status, 200);
  assert.equal(
    decode.requests[0]?.headers.get("x-forwarded-for"),
    "203.0.113.9, 127.0.0.1",
  );
});

Deno.test("bundle reads its connector settings from the environment", async () => {
  await using decode = await createMockVllm({ name: "decoder" });
  await using sidecar = startPlainSidecar(
    decode.port,
    ["-kv-connector=sglang"],
    {
      env: {
        POD_IP: "10.0.0.7",
        SGLANG_BOOTSTRAP_PORT: "9100",
        MOONCAKE_BOOTSTRAP_PORT: "9200",
        P2P_CONNECTOR_PORT: "7300",
        ENABLE_PREFILLER_SAMPLING: "true",
      },
    },
  );
  const line = await sidecar.waitForLine((line) =>
    line.msg === "Proxy configuration"
  );
  const config = line.config as Record<string, unknown>;
  assert.deepEqual(
    [
      config.pod_ip,
      config.sglang_bootstrap_port,
      config.mooncake_bootstrap_port,
      config.p2p_connector_port,
      config.enable_prefiller_sampling,
    ],
    ["10.0.0.7", 9100, 9200, 7300, true],
  );
});

Deno.test("bundle exits 2 naming the flag on an unknown flag or a bad value", async () => {
  for (
    const args of [["-no-such-flag"], ["--port", "eighty"], [
      "-kv-connector=foo",
    ], ["-allowed-prefillers=10.0.0.0/99"]]
  ) {
    const { code, stderr } = await runBundle(args);
    assert.equal(code, 2, args.join(" "));
    assert.match(
      stderr,
      /^(?:"-no-such-flag"|--port must|--kv-connector must|Invalid value "10\.0\.0\.0\/99" for flag "-allowed-prefillers")|^Unknown flag "-no-such-flag"/,
    );
  }
});

Deno.test("bundle exits 1 on an invalid combination of flags", async () => {
  const { code, stderr } = await runBundle(["-port=8200", "-vllm-port=8200"]);
  assert.equal(code, 1);
  assert.match(stderr, /proxy to itself/);
});

Deno.test("bundle exits 1 naming --allow-all when -watch-client-connections cannot read /proc/net/tcp", async () => {
  // The bundle runs with the shipped permissions, which do not open /proc.
  const { code, stderr } = await runBundle([
    "-watch-client-connections",
    `-port=${freePort()}`,
    "-listen-host=127.0.0.1",
    "-secure-proxy=false",
  ]);
  assert.equal(code, 1);
  assert.match(
    stderr,
    /-watch-client-connections needs \/proc\/net\/tcp.*--allow-all/,
  );
});

Deno.test("bundle exits 1 when the certificate directory has no key pair", async () => {
  await using empty = await tempDir();
  const { code, stderr } = await runBundle([
    `-cert-path=${empty.path}`,
    `-port=${freePort()}`,
    "-listen-host=127.0.0.1",
  ]);
  assert.equal(code, 1);
  assert.match(stderr, /Cannot load TLS key pair/);
});

Deno.test("bundle exits 1 naming both files when the key does not match the certificate, not as a failure to bind", async () => {
  const [ca, other] = await Promise.all([makeCa("ca"), makeCa("other")]);
  const [pair, stranger] = await Promise.all([
    makeServerCert(ca),
    makeServerCert(other),
  ]);
  await using certs = await writeCertDir({
    cert: pair.cert,
    key: stranger.key,
  });
  const { code, stderr } = await runBundle([
    `-cert-path=${certs.dir}`,
    `-port=${freePort()}`,
    "-model-server-port=9",
  ]);
  assert.equal(code, 1);
  assert.match(
    stderr,
    /Cannot load TLS key pair from cert \S*\/tls\.crt\S* and key \S*\/tls\.key\S* keys may not be consistent/,
  );
  assert.doesNotMatch(stderr, /cannot listen on IPv6|Cannot listen on port/);
});

Deno.test(
  "bundle runs P/D end to end over plain HTTP and stops cleanly on SIGTERM",
  async () => {
    await using prefill = await createMockVllm({ name: "prefiller" });
    await using decode = await createMockVllm({ name: "decoder" });
    await using sidecar = startPlainSidecar(decode.port, [
      "-v=4",
    ]);
    await sidecar.waitForLine((line) => line.msg === "starting");
    const response = await postChatOverHttp(
      sidecar.base,
      chatBody({ stream: true }),
      jsonHeaders({
        "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
        "x-request-id": "e2e-1",
      }),
    );
    assert.equal(response.status, 200);
    assert.match(await response.text(), /data: \[DONE\]/);
    assert.equal(decode.requests[0]?.kvTransfer?.outcome, "pulled");
    const routed = await sidecar.waitForLine((line) =>
      line.msg === "using P/D protocol"
    );
    assert.equal(routed.request_id, "e2e-1");
    const config = sidecar.lines.find((line) =>
      line.msg === "Proxy configuration"
    );
    assert.equal(
      (config?.config as Record<string, unknown>)?.model_server_port,
      decode.port,
    );
    sidecar.process.kill("SIGTERM");
    assert.equal(await sidecar.exitCode(), 0);
    await sidecar.waitForLine((line) => line.msg === "shutting down");
  },
);

Deno.test(
  "bundle serves TLS with a self-signed certificate by default",
  async () => {
    await using decode = await createMockVllm({ name: "decoder" });
    const port = freePort();
    await using sidecar = startBundle([
      `-port=${port}`,
      `-vllm-port=${decode.port}`,
      "-listen-host=127.0.0.1",
    ]);
    const starting = await sidecar.waitForLine((line) =>
      line.msg === "starting"
    );
    assert.equal(starting.tls, true);
    // The generated certificate names 127.0.0.1 but is trusted by nobody: skip verification for this one host.
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        "--unsafely-ignore-certificate-errors=127.0.0.1",
        `const r = await fetch("https://127.0.0.1:${port}/v1/models"); console.log(r.status, (await r.json()).object);`,
      ],
      stdout: "piped",
      stderr: "null",
    }).output();
    assert.equal(new TextDecoder().decode(output.stdout).trim(), "200 list");
  },
);

Deno.test("bundle serves TLS with the key pair from -cert-path", async () => {
  await using decode = await createMockVllm({ name: "decoder" });
  const tls = await generateSelfSignedCertificate();
  await using certs = await writeCertDir(tls);
  const port = freePort();
  await using sidecar = startBundle([
    `-port=${port}`,
    `-vllm-port=${decode.port}`,
    "-listen-host=127.0.0.1",
    `-cert-path=${certs.dir}`,
  ]);
  await sidecar.waitForLine((line) => line.msg === "starting");
  assert.equal(
    await statusTrusting(tls, `https://127.0.0.1:${port}/health`),
    200,
  );
});

/**
 * Sends 40 P/D requests to a `-workers=2` sidecar, each on a new connection
 * (the kernel spreads connections, not requests), expects every one
 * answered 200, and both listener threads to have handled some.
 */
async function expectBothThreadsServePd(
  sidecar: PlainSidecarProcess,
  prefillPort: number,
): Promise<void> {
  for (let i = 0; i < 40; i++) {
    const response = await fetchOnOwnConnection(
      `${sidecar.base}/v1/completions`,
      {
        method: "POST",
        headers: jsonHeaders({
          "x-prefiller-host-port": `127.0.0.1:${prefillPort}`,
        }),
        body: JSON.stringify({ prompt: "Hi", max_tokens: 2 }),
        // A wedged thread fails the test instead of hanging it.
        signal: AbortSignal.timeout(5_000),
      },
    );
    assert.equal(response.status, 200, response.text);
  }
  // Access lines are written up to 50 ms after their answers.
  const handled = () => sidecar.lines.filter(isAccessLine());
  await sidecar.waitForLine(() => handled().length >= 40);
  const handledBy = new Set(handled().map((line) => line.listener));
  assert.deepEqual([...handledBy].sort(), [0, 1]);
}

Deno.test(
  "bundle with -workers=2 serves from two listener threads and stops cleanly",
  async () => {
    await using prefill = await createMockVllm({ name: "prefiller" });
    await using decode = await createMockVllm({ name: "decoder" });
    await using sidecar = startPlainSidecar(decode.port, [
      "-workers=2",
      "-v=4",
    ]);
    await sidecar.waitForLine((line) =>
      line.msg === "starting" && line.listener === 0
    );
    await sidecar.waitForLine((line) =>
      line.msg === "starting" && line.listener === 1
    );
    await expectBothThreadsServePd(sidecar, prefill.port);
    assert.equal(
      decode.requests.filter((r) => r.kvTransfer?.outcome === "pulled").length,
      40,
    );
    sidecar.process.kill("SIGTERM");
    assert.equal(await sidecar.exitCode(), 0);
    // The main thread terminates the other one once it stopped: its last
    // lines must be out by then.
    await sidecar.waitForLine((line) =>
      line.msg === "shutting down" && line.listener === 1
    );
    assert.equal(
      sidecar.lines.filter(isAccessLine()).length,
      40,
    );
  },
);

Deno.test(
  "bundle with -workers=2 and -ca-cert: every listener thread verifies a TLS prefiller against the bundle",
  async () => {
    const ca = await makeCa("internal");
    await using prefill = await createMockVllm({
      name: "prefiller",
      tls: await makeServerCert(ca),
    });
    await using decode = await createMockVllm({ name: "decoder" });
    await using bundle = await tempFile(ca.cert);
    await using sidecar = startPlainSidecar(decode.port, [
      "-workers=2",
      "-v=4",
      "-enable-tls=prefiller",
      `-ca-cert=${bundle.path}`,
    ]);
    for (const listener of [0, 1]) {
      await sidecar.waitForLine((line) =>
        line.msg === "starting" && line.listener === listener
      );
    }
    await expectBothThreadsServePd(sidecar, prefill.port);
    assert.equal(prefill.requests.length, 40);
  },
);
