import assert from "node:assert/strict";
import { parseCliArgs, UsageError } from "../../scripts/mock_vllm.ts";

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
