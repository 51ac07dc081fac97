import assert from "node:assert/strict";
import {
  type CommandLine,
  type Config,
  ConfigError,
  parseCommandLine,
} from "../../src/config.ts";

type Env = Readonly<Record<string, string | undefined>>;

function configOf(args: readonly string[], env: Env = {}): Config {
  const result = parseCommandLine(args, env);
  assert.equal(result.kind, "run");
  return (result as Extract<CommandLine, { kind: "run" }>).config;
}

function warningsOf(args: readonly string[], env: Env = {}): readonly string[] {
  const result = parseCommandLine(args, env);
  return (result as Extract<CommandLine, { kind: "run" }>).warnings;
}

function errorOf(args: readonly string[], env: Env = {}): ConfigError {
  try {
    parseCommandLine(args, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error;
  }
  assert.fail(`no error for ${args.join(" ")}`);
}

Deno.test("-inference-pool takes namespace/name or a name in the sidecar's namespace", () => {
  const ssrf = "-enable-ssrf-protection";
  assert.deepEqual(configOf([ssrf, "-inference-pool=ns/pool"]).inferencePool, {
    namespace: "ns",
    name: "pool",
    group: "inference.networking.k8s.io",
  });
  assert.deepEqual(configOf([ssrf, "-inference-pool=pool"]).inferencePool, {
    namespace: "",
    name: "pool",
    group: "inference.networking.k8s.io",
  });
  assert.deepEqual(
    configOf([ssrf, "-pool-group=inference.networking.x-k8s.io"], {
      INFERENCE_POOL: "a/b",
    }).inferencePool,
    { namespace: "a", name: "b", group: "inference.networking.x-k8s.io" },
  );
  // The deprecated pair, from flags or the environment; -inference-pool wins.
  assert.deepEqual(
    configOf([ssrf, "-inference-pool-namespace=n1", "-inference-pool-name=p1"])
      .inferencePool,
    { namespace: "n1", name: "p1", group: "inference.networking.k8s.io" },
  );
  assert.deepEqual(
    configOf([ssrf], {
      INFERENCE_POOL_NAMESPACE: "n2",
      INFERENCE_POOL_NAME: "p2",
    })
      .inferencePool?.name,
    "p2",
  );
  assert.deepEqual(
    configOf([ssrf, "-inference-pool=x/y", "-inference-pool-name=p1"])
      .inferencePool
      ?.name,
    "y",
  );
  assert.ok(
    warningsOf([ssrf, "-inference-pool-name=p1"]).includes(
      "Flag --inference-pool-name has been deprecated, use --inference-pool instead",
    ),
  );
  assert.equal(configOf(["-inference-pool=x/y"]).inferencePool, undefined);
});

Deno.test("SSRF flags are validated with the Go sidecar's messages", () => {
  const cases: [string[], string, 1 | 2][] = [
    [
      ["-inference-pool=a/b/c"],
      "--inference-pool must be in format 'namespace/name' or 'name', not multiple slashes",
      2,
    ],
    [
      ["-inference-pool=/b"],
      "--inference-pool cannot have empty namespace or name",
      2,
    ],
    [
      ["-inference-pool=a/"],
      "--inference-pool cannot have empty namespace or name",
      2,
    ],
    [
      ["-enable-ssrf-protection"],
      "--inference-pool, --inference-pool-name, INFERENCE_POOL, or INFERENCE_POOL_NAME environment variable is required when --enable-ssrf-protection is true",
      1,
    ],
    [
      ["-pool-group=example.com"],
      'Invalid value "example.com" for flag "-pool-group": expected one of inference.networking.k8s.io, inference.networking.x-k8s.io',
      2,
    ],
    [
      ["-allowed-prefillers=10.0.0.0/8,nope:99999"],
      'Invalid value "nope:99999" for flag "-allowed-prefillers": port "99999" of "nope:99999" is not from 1 to 65535',
      2,
    ],
    [
      ["-enable-tls=prefiller,gpu"],
      "--enable-tls stages must be one of: prefiller, decoder, encoder",
      2,
    ],
    [
      ["-tls-insecure-skip-verify=all"],
      "--tls-insecure-skip-verify stages must be one of: prefiller, decoder, encoder",
      2,
    ],
    [
      ["-allowlist-sync-timeout=forever"],
      'Invalid value "forever" for flag "-allowlist-sync-timeout": expected a positive duration such as "30s" or "500ms"',
      2,
    ],
  ];
  for (const [args, message, exitCode] of cases) {
    const error = errorOf(args);
    assert.equal(error.message, message, args.join(" "));
    assert.equal(error.exitCode, exitCode, args.join(" "));
  }
});

Deno.test("-allowed-prefillers is repeatable and comma separated; works without -enable-ssrf-protection", () => {
  const config = configOf([
    "-allowed-prefillers=10.0.0.0/8, 192.168.1.5:8000",
    "-allowed-prefillers=prefill.ns.svc",
    "-allowlist-sync-timeout=500ms",
  ]);
  assert.deepEqual(config.allowedPrefillers, [
    "10.0.0.0/8",
    "192.168.1.5:8000",
    "prefill.ns.svc",
  ]);
  assert.equal(config.ssrfProtection, false);
  assert.equal(config.allowlistSyncTimeoutMs, 500);
});

Deno.test("TLS stages come from the list flags and the original's deprecated bools", () => {
  const config = configOf([
    "-enable-tls=decoder",
    "-enable-tls=encoder,decoder",
    "-prefiller-use-tls",
    "-decoder-use-tls=false",
    "-tls-insecure-skip-verify=encoder",
    "-prefiller-tls-insecure-skip-verify=true",
    "-ca-cert=/etc/ca/bundle.pem",
  ]);
  assert.deepEqual(config.tlsStages, ["decoder", "encoder", "prefiller"]);
  assert.deepEqual(config.insecureSkipVerifyStages, ["encoder", "prefiller"]);
  assert.equal(config.caCertPath, "/etc/ca/bundle.pem");
  const warnings = warningsOf([
    "-prefiller-use-tls",
    "-decoder-tls-insecure-skip-verify",
  ]);
  assert.ok(
    warnings.includes(
      "Flag --prefiller-use-tls has been deprecated, use --enable-tls=prefiller instead",
    ),
  );
  assert.ok(
    warnings.includes(
      'Stage "decoder" skips TLS verification but does not use TLS: add it to "-enable-tls"',
    ),
  );
});
