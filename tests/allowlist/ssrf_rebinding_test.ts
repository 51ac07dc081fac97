/**
 * With SSRF protection on, what a client's header names by host name is
 * reached at the address the allowlist checked, not at the name: resolved
 * again (by the sidecar's bootstrap query, or by an engine told the name)
 * it could point anywhere by then (DNS rebinding).
 */

import assert from "node:assert/strict";
import { createApp } from "../../src/app.ts";
import { createAllowlist } from "../../src/allowlist/allowlist.ts";
import { createResolver } from "../../src/allowlist/resolve.ts";
import { parseStaticEntry } from "../../src/allowlist/static_list.ts";
import type { Config, ConnectorName } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { createUpstreamClient } from "../../src/upstream/client.ts";
import {
  createKvStore,
  createMockVllm,
  type MockVllm,
} from "../../scripts/mock_vllm/mod.ts";
import { withDeadline } from "../support/deadline.ts";
import { chatBody, jsonHeaders, testConfig } from "../support/harness.ts";
import { startStubUpstream } from "../support/stub_upstream.ts";

/**
 * Names only the allowlist's resolver knows (RFC 6761: `.invalid` never
 * resolves), so anything that looks one up again fails.
 */
const PREFILLER_NAME = "prefill.invalid";
const KV_SOURCE_NAME = "source.invalid";

/** The allowlist of 127.0.0.1 (any port), resolving the names above to it. */
function loopbackAllowlist() {
  return createAllowlist({
    entries: [parseStaticEntry("127.0.0.1")],
    resolver: createResolver({
      lookup: (host) =>
        host === PREFILLER_NAME || host === KV_SOURCE_NAME
          ? Promise.resolve(["127.0.0.1"])
          : Promise.reject(new Error(`unknown host ${host}`)),
    }),
  });
}

/** Sends one chat request with `headers` to an app configured by `config`, behind the allowlist above. */
async function requestBehindAllowlist(
  config: Partial<Config>,
  headers: Record<string, string>,
): Promise<{ readonly status: number; readonly text: string }> {
  const upstream = createUpstreamClient();
  try {
    const app = createApp({
      config: testConfig({ verbosity: 0, ...config }),
      log: createLogger({ verbosity: -1, write() {} }),
      upstream,
      allowlist: loopbackAllowlist(),
    });
    const response = await withDeadline(
      Promise.resolve(app.request("/v1/chat/completions", {
        method: "POST",
        headers: jsonHeaders(headers),
        body: chatBody(),
      })),
      10_000,
      "the sidecar's answer",
    );
    return { status: response.status, text: await response.text() };
  } finally {
    upstream.close();
  }
}

/** Runs one P/D request naming the prefiller by `PREFILLER_NAME` on `connector`, behind an allowlist of 127.0.0.1. */
async function runNamedPrefill(connector: ConnectorName) {
  const kvStore = createKvStore();
  const mock = (name: string, kvRole: "kv_producer" | "kv_consumer") =>
    createMockVllm({
      name,
      kvConnector: connector,
      kvRole,
      kvStore,
      kvWaitTimeoutMs: 2000,
    });
  await using prefill: MockVllm = await mock("prefiller", "kv_producer");
  await using decode: MockVllm = await mock("decoder", "kv_consumer");
  const answer = await requestBehindAllowlist({
    modelServerPort: decode.port,
    connector,
    mooncakeBootstrapPort: prefill.sideChannelPort,
    sglangBootstrapPort: prefill.sideChannelPort,
    p2pConnectorPort: prefill.sideChannelPort,
  }, { "x-prefiller-host-port": `${PREFILLER_NAME}:${prefill.port}` });
  return {
    ...answer,
    sideChannelPort: prefill.sideChannelPort,
    prefill: prefill.requests.map((request) => request.body),
    decode: decode.requests.map((request) => request.body),
  };
}

/** `kv_transfer_params` of a recorded body. */
function kvParamsOf(body: unknown): Record<string, unknown> {
  const params = (body as { kv_transfer_params?: unknown })
    ?.kv_transfer_params;
  assert.ok(typeof params === "object" && params !== null, String(body));
  return params as Record<string, unknown>;
}

Deno.test("mooncake queries the bootstrap server of an admitted prefiller at the checked address, and tells the decoder that address", async () => {
  const seen = await runNamedPrefill("mooncake");
  assert.equal(seen.status, 200, seen.text);
  assert.equal(seen.decode.length, 1);
  assert.equal(
    kvParamsOf(seen.decode[0]).remote_bootstrap_addr,
    `http://127.0.0.1:${seen.sideChannelPort}`,
  );
});

Deno.test("sglang names the admitted prefiller's checked address as bootstrap_host on both legs", async () => {
  const seen = await runNamedPrefill("sglang");
  assert.equal(seen.status, 200, seen.text);
  for (const body of [...seen.prefill, ...seen.decode]) {
    assert.equal(
      (body as { bootstrap_host?: unknown }).bootstrap_host,
      "127.0.0.1",
    );
  }
  assert.equal(seen.prefill.length + seen.decode.length, 2);
});

Deno.test("offloading tells the decoder the admitted prefiller's checked address as its P2P peer", async () => {
  const seen = await runNamedPrefill("offloading");
  assert.equal(seen.status, 200, seen.text);
  assert.equal(seen.decode.length, 1);
  const peer = kvParamsOf(seen.decode[0]).remote_prefiller as Record<
    string,
    unknown
  >;
  assert.equal(peer.remote_host, "127.0.0.1");
});

Deno.test("a KV source named by host name is passed to the decoder as the address the allowlist checked", async () => {
  await using decode = startStubUpstream(() =>
    Response.json({ choices: [{ message: { content: "ok" } }] })
  );
  const answer = await requestBehindAllowlist(
    { modelServerPort: decode.port, connector: "offloading" },
    { "x-kv-cache-source-host-port": `${KV_SOURCE_NAME}:5001` },
  );
  assert.equal(answer.status, 200, answer.text);
  const params = kvParamsOf(JSON.parse(decode.bodies[0] ?? "null"));
  const source = params.remote_kv_source as Record<string, unknown>;
  assert.equal(source.remote_host, "127.0.0.1");
});
