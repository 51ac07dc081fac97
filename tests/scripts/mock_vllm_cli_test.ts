import assert from "node:assert/strict";
import { parseCliArgs, USAGE, UsageError } from "../../scripts/mock_vllm.ts";

const noEnv = (_name: string): string | undefined => undefined;

Deno.test("mock vllm cli maps flags to options", () => {
  const parsed = parseCliArgs([
    "--port",
    "8200",
    "--name",
    "decoder",
    "--host=0.0.0.0",
    "--ttft-ms",
    "20",
    "--inter-token-ms",
    "5",
    "--kv-transfer-ms",
    "7",
    "--kv-lease-ms",
    "1000",
    "--kv-load-failure-policy",
    "recompute",
    "--failure-rate",
    "0.5",
    "--failure-status",
    "429",
    "--enable-request-id-headers",
    "--enable-prompt-tokens-details",
  ], noEnv);
  assert.equal(parsed.help, false);
  assert.deepEqual(parsed.options, {
    port: 8200,
    name: "decoder",
    hostname: "0.0.0.0",
    ttftMs: 20,
    interTokenMs: 5,
    kvTransferMs: 7,
    kvLeaseMs: 1000,
    kvLoadFailurePolicy: "recompute",
    failureRate: 0.5,
    failureStatus: 429,
    enableRequestIdHeaders: true,
    promptTokensDetails: true,
  });
});

Deno.test("mock vllm cli defaults to port 8000 and reads the NIXL side-channel env vars", () => {
  const env = (name: string) =>
    ({
      VLLM_NIXL_SIDE_CHANNEL_HOST: "10.0.0.5",
      VLLM_NIXL_SIDE_CHANNEL_PORT: "5600",
    })[name];
  const parsed = parseCliArgs([], env);
  assert.deepEqual(parsed.options, {
    port: 8000,
    sideChannelHost: "10.0.0.5",
    sideChannelPort: 5600,
  });
});

Deno.test("mock vllm cli rejects bad input naming the flag", () => {
  assert.throws(
    () => parseCliArgs(["--port", "abc"], noEnv),
    (e) => e instanceof UsageError && /--port/.test(e.message),
  );
  assert.throws(
    () => parseCliArgs(["--kv-load-failure-policy", "retry"], noEnv),
    /--kv-load-failure-policy/,
  );
  assert.throws(() => parseCliArgs(["--bogus"], noEnv), UsageError);
  assert.throws(
    () => parseCliArgs(["--tls-cert", "c.pem"], noEnv),
    /--tls-key/,
  );
});

Deno.test("mock vllm cli recognises --help", () => {
  assert.equal(parseCliArgs(["-h"], noEnv).help, true);
  assert.equal(parseCliArgs(["--help"], noEnv).help, true);
});

Deno.test("mock vllm cli maps the KV connector flags to options", () => {
  const parsed = parseCliArgs([
    "--kv-connector",
    "sglang",
    "--kv-role",
    "kv_producer",
    "--kv-store-url",
    "http://127.0.0.1:8100",
    "--kv-wait-timeout-ms",
    "250",
    "--data-parallel-size",
    "2",
  ], noEnv);
  assert.deepEqual(parsed.options, {
    port: 8000,
    kvConnector: "sglang",
    kvRole: "kv_producer",
    kvStoreUrl: "http://127.0.0.1:8100",
    kvWaitTimeoutMs: 250,
    dataParallelSize: 2,
  });
});

Deno.test("mock vllm cli rejects unknown connectors, roles and rank counts naming the flag", () => {
  assert.throws(
    () => parseCliArgs(["--kv-connector", "p2pnccl"], noEnv),
    (e) =>
      e instanceof UsageError &&
      e.message.startsWith(
        'Invalid --kv-connector "p2pnccl": expected "nixlv2", "nixl"',
      ),
  );
  assert.throws(
    () => parseCliArgs(["--kv-role", "producer"], noEnv),
    /--kv-role/,
  );
  for (const bad of ["0", "1.5"]) {
    assert.throws(
      () => parseCliArgs(["--data-parallel-size", bad], noEnv),
      /--data-parallel-size/,
    );
  }
});

Deno.test("mock vllm cli --help lists every KV connector", () => {
  for (
    const name of [
      "nixlv2",
      "nixl",
      "lmcache",
      "sglang",
      "shared-storage",
      "mooncake",
      "offloading",
    ]
  ) {
    assert.ok(USAGE.includes(name), name);
  }
  for (
    const flag of [
      "--kv-connector",
      "--kv-role",
      "--kv-store-url",
      "--kv-wait-timeout-ms",
      "--data-parallel-size",
    ]
  ) {
    assert.ok(USAGE.includes(flag), flag);
  }
});
