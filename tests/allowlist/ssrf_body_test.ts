import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { createAllowlist } from "../../src/allowlist/allowlist.ts";
import { createResolver } from "../../src/allowlist/resolve.ts";
import { parseStaticEntry } from "../../src/allowlist/static_list.ts";
import type { Config, ConnectorName } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { createUpstreamClient } from "../../src/upstream/client.ts";
import { testConfig } from "../support/harness.ts";
import { startStubUpstream } from "../support/stub_upstream.ts";

const ALLOWED = "10.0.0.5";
const DENIED = "169.254.169.254";
const DENIAL_LOG = "SSRF protection: address in request body not in allowlist";

/** NIXL's handshake as a client could write it, toward `host`. */
function nixlParams(host: string): Record<string, unknown> {
  return {
    do_remote_prefill: true,
    remote_host: host,
    remote_port: 80,
    remote_engine_id: "x",
    remote_block_ids: [1],
  };
}

/** A chat body with `extra` members. */
function chat(extra: Record<string, unknown>): string {
  return JSON.stringify({
    model: "m",
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 4,
    ...extra,
  });
}

/** A body for `path` carrying `extra` members, shaped as that API takes it. */
function bodyFor(path: string, extra: Record<string, unknown>): string {
  switch (path) {
    case "/v1/completions":
      return JSON.stringify({ model: "m", prompt: "Hi", ...extra });
    case "/v1/responses":
      return JSON.stringify({ model: "m", input: "Hi", ...extra });
    case "/inference/v1/generate":
      return JSON.stringify({
        model: "m",
        token_ids: [1, 2],
        sampling_params: { max_tokens: 4 },
        ...extra,
      });
    default:
      return chat(extra);
  }
}

const GENERATION_PATHS = [
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/responses",
  "/v1/messages",
  "/inference/v1/generate",
];

/** Stub engines recording what they received, and the app in front of them. */
function startSidecar(options: {
  readonly protection: boolean;
  readonly connector?: ConnectorName;
  readonly maxRequestBodyBytes?: number;
  readonly config?: Partial<Config>;
}) {
  const decode = startStubUpstream(() =>
    Response.json({ choices: [{ message: { content: "ok" } }] })
  );
  const prefill = startStubUpstream(() =>
    Response.json({
      choices: [{ message: { content: "" } }],
      kv_transfer_params: { remote_engine_id: "e1", remote_host: ALLOWED },
    })
  );
  const logs: Record<string, unknown>[] = [];
  const upstream = createUpstreamClient();
  const app = createApp({
    config: testConfig({
      modelServerPort: decode.port,
      ...(options.connector ? { connector: options.connector } : {}),
      ...(options.maxRequestBodyBytes
        ? { maxRequestBodyBytes: options.maxRequestBodyBytes }
        : {}),
      ...options.config,
    }),
    log: createLogger({
      verbosity: 4,
      write: (line) => logs.push(JSON.parse(line)),
    }),
    upstream,
    ...(options.protection
      ? {
        allowlist: createAllowlist({
          entries: [prefill.hostPort, ALLOWED].map(parseStaticEntry),
          resolver: createResolver(),
        }),
      }
      : {}),
  });
  return {
    decode,
    prefill,
    logs,
    /** POSTs `body` to `path`, naming the prefiller when `withPrefiller`. */
    post: (
      path: string,
      body: string,
      headers: Record<string, string> = {},
    ) =>
      app.request(path, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "tester/1",
          ...headers,
        },
        body,
      }),
    prefillerHeader: { "x-prefiller-host-port": prefill.hostPort },
    async [Symbol.asyncDispose]() {
      upstream.close();
      await decode[Symbol.asyncDispose]();
      await prefill[Symbol.asyncDispose]();
    },
  };
}

/** Asserts the 403 for `field`, in Anthropic's error shape on `/v1/messages`, vLLM's elsewhere. */
async function assertRefused(
  response: Response,
  path: string,
  field: string,
): Promise<void> {
  assert.equal(response.status, 403, path);
  assert.equal(
    response.headers.get("x-pd-error-code"),
    "body_address_forbidden",
  );
  const body = await response.json();
  assert.equal(
    body.error?.message,
    `Forbidden: ${field} names an address not allowed by SSRF protection`,
  );
  if (path === "/v1/messages") assert.equal(body.type, "error", path);
  else assert.equal(body.error.code, 403, path);
}

Deno.test("decode-only: a client's kv_transfer_params naming a denied address is refused on every generation path, an allowed one reaches the decoder byte for byte", async () => {
  await using sidecar = startSidecar({ protection: true });
  for (const path of GENERATION_PATHS) {
    const denied = bodyFor(path, { kv_transfer_params: nixlParams(DENIED) });
    await assertRefused(
      await sidecar.post(path, denied),
      path,
      "kv_transfer_params.remote_host",
    );
    const allowed = bodyFor(path, { kv_transfer_params: nixlParams(ALLOWED) });
    const response = await sidecar.post(path, allowed);
    assert.equal(response.status, 200, path);
    await response.body?.cancel();
    assert.equal(sidecar.decode.bodies.at(-1), allowed, path);
  }
  assert.equal(sidecar.decode.bodies.length, GENERATION_PATHS.length);
  const denials = sidecar.logs.filter((line) => line.msg === DENIAL_LOG);
  assert.equal(denials.length, GENERATION_PATHS.length);
  assert.equal(denials[0]?.level, "error");
  assert.equal(denials[0]?.field, "kv_transfer_params.remote_host");
  assert.equal(denials[0]?.value, DENIED);
  assert.equal(denials[0]?.userAgent, "tester/1");
  assert.equal(denials[0]?.requestPath, "/v1/chat/completions");
});

Deno.test("decode-only: every address-bearing field and spelling is checked, and a body without one passes", async () => {
  await using sidecar = startSidecar({ protection: true });
  const refused: [Record<string, unknown>, string][] = [
    [
      { bootstrap_host: DENIED, bootstrap_port: 80, bootstrap_room: 1 },
      "bootstrap_host",
    ],
    [{ bootstrap_host: [ALLOWED, DENIED] }, "bootstrap_host"],
    [{
      kv_transfer_params: {
        remote_bootstrap_addr: `http://${DENIED}:80`,
        do_remote_prefill: true,
      },
    }, "kv_transfer_params.remote_bootstrap_addr"],
    [{
      kv_transfer_params: {
        remote_kv_source: {
          kv_request_id: "k",
          remote_host: DENIED,
          remote_port: 80,
        },
      },
    }, "kv_transfer_params.remote_kv_source.remote_host"],
    [{
      kv_transfer_params: {
        remote_prefiller: {
          kv_request_id: "k",
          remote_host: DENIED,
          remote_port: 80,
        },
      },
    }, "kv_transfer_params.remote_prefiller.remote_host"],
    [
      { kv_transfer_params: { remote_hosts: [ALLOWED, DENIED] } },
      "kv_transfer_params.remote_hosts",
    ],
    [
      { kv_transfer_params: { disagg_spec: { receiver_host: DENIED } } },
      "kv_transfer_params.disagg_spec.receiver_host",
    ],
    [
      { vllm_xargs: { kv_transfer_params: nixlParams(DENIED) } },
      "vllm_xargs.kv_transfer_params.remote_host",
    ],
    // Spellings another parser may read as a different address, and names.
    [
      { kv_transfer_params: nixlParams("10.0.5") },
      "kv_transfer_params.remote_host",
    ],
    [
      { kv_transfer_params: nixlParams("0x0a000005") },
      "kv_transfer_params.remote_host",
    ],
    [
      { kv_transfer_params: nixlParams(`::ffff:${ALLOWED}`) },
      "kv_transfer_params.remote_host",
    ],
    [
      { kv_transfer_params: nixlParams("localhost") },
      "kv_transfer_params.remote_host",
    ],
    [
      { kv_transfer_params: nixlParams("0.0.0.0") },
      "kv_transfer_params.remote_host",
    ],
    [
      { kv_transfer_params: { remote_host: 2852039166 } },
      "kv_transfer_params.remote_host",
    ],
    [{
      kv_transfer_params: { remote_bootstrap_addr: `http://x@${ALLOWED}:80` },
    }, "kv_transfer_params.remote_bootstrap_addr"],
  ];
  for (const [extra, field] of refused) {
    const body = chat(extra);
    await assertRefused(
      await sidecar.post("/v1/chat/completions", body),
      body,
      field,
    );
  }
  // The key spelled with a \u escape is the same key to vLLM's parser.
  const escaped = chat({ kv_transfer_params: nixlParams(DENIED) }).replace(
    "kv_transfer_params",
    "kv\\u005ftransfer_params",
  );
  await assertRefused(
    await sidecar.post("/v1/chat/completions", escaped),
    escaped,
    "kv_transfer_params.remote_host",
  );
  // Python's json reads NaN; a body the check cannot read does not pass.
  const nan = chat({ kv_transfer_params: nixlParams(DENIED) }).replace(
    '"max_tokens":4',
    '"max_tokens":NaN',
  );
  const unreadable = await sidecar.post("/v1/chat/completions", nan);
  assert.equal(unreadable.status, 400);
  await unreadable.body?.cancel();
  assert.equal(sidecar.decode.bodies.length, 0, "nothing refused reached it");
  const passing = [
    chat({
      kv_transfer_params: {
        "lmcache.tag.user": "a",
        remote_host: null,
        remote_bootstrap_addr: `http://${ALLOWED}:8998`,
        remote_kv_source: { remote_host: ALLOWED, remote_port: 7777 },
        remote_hosts: [ALLOWED],
      },
      // Outside kv_transfer_params the key is no address.
      tools: [{ remote_host: DENIED }],
    }),
    chat({ bootstrap_host: ALLOWED, bootstrap_port: 8998, bootstrap_room: 7 }),
  ];
  for (const body of passing) {
    const response = await sidecar.post("/v1/chat/completions", body);
    assert.equal(response.status, 200, body);
    await response.body?.cancel();
    assert.equal(sidecar.decode.bodies.at(-1), body);
  }
});

Deno.test("decode-only: address fields nested 100,000 deep are walked without a stack: lists in a host list are refused, deep kv_transfer_params found", async () => {
  await using sidecar = startSidecar({ protection: true });
  const depth = 100_000;
  const deepList = `${"[".repeat(depth)}"${ALLOWED}"${"]".repeat(depth)}`;
  const nestedHosts =
    `{"model":"m","messages":[],"kv_transfer_params":{"remote_hosts":[${deepList}]}}`;
  await assertRefused(
    await sidecar.post("/v1/chat/completions", nestedHosts),
    "/v1/chat/completions",
    "kv_transfer_params.remote_hosts",
  );
  const deepKv = `{"model":"m","messages":[],"kv_transfer_params":${
    '{"a":'.repeat(depth)
  }{"remote_host":"${DENIED}"}${"}".repeat(depth)}}`;
  await assertRefused(
    await sidecar.post("/v1/chat/completions", deepKv),
    "/v1/chat/completions",
    `…${`kv_transfer_params${".a".repeat(depth)}.remote_host`.slice(-255)}`,
  );
  assert.equal(sidecar.decode.bodies.length, 0);
});

Deno.test("a denied address under a 1 MB key is named by the end of its path, cut short in the log and the answer", async () => {
  await using sidecar = startSidecar({ protection: true });
  const longKey = "k".repeat(1_000_000);
  const body = chat({
    [longKey]: { kv_transfer_params: nixlParams(DENIED) },
  });
  const field = `…${`${longKey}.kv_transfer_params.remote_host`.slice(-255)}`;
  const response = await sidecar.post("/v1/chat/completions", body);
  await assertRefused(response, "/v1/chat/completions", field);
  const denial = sidecar.logs.find((line) => line.msg === DENIAL_LOG);
  assert.equal(denial?.field, field);
  const logged = sidecar.logs.reduce(
    (sum, line) => sum + JSON.stringify(line).length,
    0,
  );
  assert.ok(logged < 8192, `one request logged ${logged} characters`);
});

Deno.test("protection off: the same body passes through untouched; on, it is refused", async () => {
  const body = chat({ kv_transfer_params: nixlParams(DENIED) });
  {
    await using off = startSidecar({ protection: false });
    const response = await off.post("/v1/chat/completions", body);
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(off.decode.bodies[0], body);
  }
  await using on = startSidecar({ protection: true });
  const response = await on.post("/v1/chat/completions", body);
  assert.equal(response.status, 403);
  await response.body?.cancel();
  assert.equal(on.decode.bodies.length, 0);
});

Deno.test("decode-only: a body over the passthrough's whole-read size is checked whole, within the body limit", async () => {
  await using sidecar = startSidecar({
    protection: true,
    maxRequestBodyBytes: 4 * 1024 * 1024,
  });
  const padding = "x".repeat(1536 * 1024);
  for (const [host, status] of [[DENIED, 403], [ALLOWED, 200]] as const) {
    // The field after the padding: only a whole read sees it.
    const body = JSON.stringify({
      model: "m",
      messages: [{ role: "user", content: padding }],
      kv_transfer_params: nixlParams(host),
    });
    const length = new TextEncoder().encode(body).length;
    const response = await sidecar.post("/v1/chat/completions", body, {
      "content-length": String(length),
    });
    assert.equal(response.status, status, host);
    await response.body?.cancel();
  }
  assert.equal(sidecar.decode.bodies.length, 1);
  assert.equal(
    JSON.parse(sidecar.decode.bodies[0] ?? "{}").kv_transfer_params.remote_host,
    ALLOWED,
  );
  // Past the limit, the 413: the check holds no more than the limit.
  const tooLarge = JSON.stringify({
    model: "m",
    messages: [{ role: "user", content: "x".repeat(5 * 1024 * 1024) }],
    kv_transfer_params: nixlParams(ALLOWED),
  });
  const refused = await sidecar.post("/v1/chat/completions", tooLarge);
  assert.equal(refused.status, 413);
  await refused.body?.cancel();
  assert.equal(sidecar.decode.bodies.length, 1);
});

const KEEPING_CONNECTORS: readonly ConnectorName[] = [
  "shared-storage",
  "lmcache",
  "nixl",
  "sglang",
];

Deno.test("P/D: connectors that keep the client's kv_transfer_params on a leg refuse a denied address before any leg, and keep an allowed one", async () => {
  for (const connector of KEEPING_CONNECTORS) {
    await using sidecar = startSidecar({ protection: true, connector });
    const denied = chat({ kv_transfer_params: nixlParams(DENIED) });
    await assertRefused(
      await sidecar.post(
        "/v1/chat/completions",
        denied,
        sidecar.prefillerHeader,
      ),
      connector,
      "kv_transfer_params.remote_host",
    );
    assert.equal(sidecar.prefill.bodies.length, 0, connector);
    assert.equal(sidecar.decode.bodies.length, 0, connector);
    const allowedParams = {
      "lmcache.tag.user": "a",
      ...nixlParams(ALLOWED),
    };
    const response = await sidecar.post(
      "/v1/chat/completions",
      chat({ kv_transfer_params: allowedParams }),
      sidecar.prefillerHeader,
    );
    assert.equal(response.status, 200, connector);
    await response.body?.cancel();
    const decoded = JSON.parse(sidecar.decode.bodies[0] ?? "{}");
    assert.deepEqual(decoded.kv_transfer_params, allowedParams, connector);
  }
});

Deno.test("P/D sglang: a client's bootstrap_host naming a denied address is refused, not sent to either engine", async () => {
  await using sidecar = startSidecar({ protection: true, connector: "sglang" });
  const body = chat({ bootstrap_host: DENIED });
  await assertRefused(
    await sidecar.post("/v1/chat/completions", body, sidecar.prefillerHeader),
    "sglang",
    "bootstrap_host",
  );
  assert.equal(sidecar.prefill.bodies.length, 0);
  assert.equal(sidecar.decode.bodies.length, 0);
});

Deno.test("P/D nixlv2: the prefiller's own kv_transfer_params reach the decoder, a client's denied address is refused before the prefill", async () => {
  await using sidecar = startSidecar({ protection: true, connector: "nixlv2" });
  const response = await sidecar.post(
    "/v1/chat/completions",
    chat({ kv_transfer_params: { "lmcache.tag.user": "a" } }),
    sidecar.prefillerHeader,
  );
  assert.equal(response.status, 200);
  await response.body?.cancel();
  // The prefiller's kv_transfer_params reach the decoder as answered.
  assert.equal(
    JSON.parse(sidecar.decode.bodies[0] ?? "{}").kv_transfer_params.remote_host,
    ALLOWED,
  );
  const denied = await sidecar.post(
    "/v1/chat/completions",
    chat({ kv_transfer_params: nixlParams(DENIED) }),
    sidecar.prefillerHeader,
  );
  assert.equal(denied.status, 403);
  await denied.body?.cancel();
  assert.equal(sidecar.prefill.bodies.length, 1);
});

Deno.test("decode-only paths that parse the body keep the check: with -decode-chunk-size, and a KV source that is this very listener", async () => {
  const cases: [string, Partial<Config>, Record<string, string>][] = [
    ["decode with -decode-chunk-size", { decodeChunkSize: 100 }, {}],
    [
      "KV source is this listener",
      { connector: "offloading", podIp: ALLOWED, port: 8000 },
      { "x-kv-cache-source-host-port": `${ALLOWED}:8000` },
    ],
  ];
  for (const [what, config, headers] of cases) {
    await using sidecar = startSidecar({ protection: true, config });
    await assertRefused(
      await sidecar.post(
        "/v1/chat/completions",
        chat({ kv_transfer_params: nixlParams(DENIED) }),
        headers,
      ),
      what,
      "kv_transfer_params.remote_host",
    );
    assert.equal(sidecar.decode.bodies.length, 0, what);
    const allowed = chat({ kv_transfer_params: nixlParams(ALLOWED) });
    const response = await sidecar.post(
      "/v1/chat/completions",
      allowed,
      headers,
    );
    assert.equal(response.status, 200, what);
    await response.body?.cancel();
    assert.equal(
      JSON.parse(sidecar.decode.bodies[0] ?? "{}").kv_transfer_params
        ?.remote_host,
      ALLOWED,
      what,
    );
  }
});

Deno.test("passthrough: SGLang's native /generate is checked for bootstrap_host; other paths are not read", async () => {
  await using sidecar = startSidecar({ protection: true });
  const denied = JSON.stringify({
    text: "Hi",
    bootstrap_host: DENIED,
    bootstrap_port: 80,
    bootstrap_room: 1,
  });
  await assertRefused(
    await sidecar.post("/generate", denied),
    "/generate",
    "bootstrap_host",
  );
  assert.equal(sidecar.decode.bodies.length, 0);
  const allowed = denied.replace(DENIED, ALLOWED);
  const response = await sidecar.post("/generate", allowed);
  assert.equal(response.status, 200);
  await response.body?.cancel();
  assert.equal(sidecar.decode.bodies[0], allowed);
  // Not a path an engine reads these fields on: passed through as sent.
  const tokenize = await sidecar.post("/tokenize", denied);
  assert.equal(tokenize.status, 200);
  await tokenize.body?.cancel();
  assert.equal(sidecar.decode.bodies[1], denied);
});
