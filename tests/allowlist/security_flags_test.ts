import assert from "node:assert/strict";
import {
  type CommandLine,
  type Config,
  ConfigError,
  parseCommandLine,
  type ResolvedConfig,
  type SettingSource,
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

Deno.test("pool settings given without -enable-ssrf-protection are warned as having no effect", () => {
  assert.deepEqual(warningsOf(["-inference-pool=ns/pool"]), [
    'Flag "-inference-pool" has no effect without -enable-ssrf-protection',
  ]);
  assert.deepEqual(warningsOf(["-configuration={inference-pool: p}"]), [
    'Configuration key "inference-pool" has no effect without -enable-ssrf-protection',
  ]);
  assert.deepEqual(warningsOf(["-inference-pool-name=p"]), [
    "Flag --inference-pool-name has been deprecated, use --inference-pool instead",
    'Flag "-inference-pool-name" has no effect without -enable-ssrf-protection',
  ]);
  // Only what the operator gave: a chart's environment is not warned of.
  assert.deepEqual(warningsOf([], { INFERENCE_POOL: "ns/pool" }), []);
  assert.deepEqual(
    warningsOf(["-enable-ssrf-protection", "-inference-pool=p"]),
    [],
  );
});

Deno.test("the deprecated pool pair is warned as ignored when -inference-pool or INFERENCE_POOL names the pool", () => {
  const ssrf = "-enable-ssrf-protection";
  const deprecated = (name: string) =>
    `Flag --${name} has been deprecated, use --inference-pool instead`;
  assert.deepEqual(
    warningsOf([ssrf, "-inference-pool-namespace=ns", "-inference-pool=p"]),
    [
      deprecated("inference-pool-namespace"),
      'Flag "-inference-pool-namespace" is ignored because "-inference-pool" is set',
    ],
  );
  assert.deepEqual(
    warningsOf([ssrf, "-inference-pool-name=x"], { INFERENCE_POOL: "ns/p" }),
    [
      deprecated("inference-pool-name"),
      'Flag "-inference-pool-name" is ignored because INFERENCE_POOL is set',
    ],
  );
  assert.deepEqual(
    warningsOf([
      ssrf,
      "-inference-pool-namespace=ns",
      "-inference-pool-name=p",
    ]),
    [deprecated("inference-pool-namespace"), deprecated("inference-pool-name")],
  );
  // An empty -inference-pool names no pool: the pair is the one in use.
  assert.deepEqual(
    warningsOf([
      ssrf,
      "-inference-pool=",
      "-inference-pool-namespace=ns",
      "-inference-pool-name=p",
    ]),
    [deprecated("inference-pool-namespace"), deprecated("inference-pool-name")],
  );
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
    // Longer than a timer can wait: it would fire at once.
    [
      ["-allowlist-sync-timeout=999999999m"],
      'Invalid value "999999999m" for flag "-allowlist-sync-timeout": expected a positive duration such as "30s" or "500ms"',
      2,
    ],
    [
      ["-allowlist-sync-timeout=0s"],
      'Invalid value "0s" for flag "-allowlist-sync-timeout": expected a positive duration such as "30s" or "500ms"',
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

/** The value and source of one setting. */
function settingOf<K extends keyof ResolvedConfig["sources"]>(
  args: readonly string[],
  key: K,
  env: Env = {},
): [Config[K], SettingSource] {
  const result = parseCommandLine(args, env);
  assert.notEqual(result.kind, "help");
  const resolved = result as Exclude<CommandLine, { kind: "help" }>;
  return [resolved.config[key], resolved.sources[key]];
}

const yaml = (name: string): SettingSource => ({ kind: "yaml", name });
const flag = (name: string): SettingSource => ({ kind: "flag", name });
const byDefault: SettingSource = { kind: "default" };

Deno.test("YAML enable-ssrf-protection and inference-pool apply unless their flags are given", () => {
  const file = "-configuration={enable-ssrf-protection: true, " +
    "inference-pool: ns/from-yaml, pool-group: inference.networking.x-k8s.io}";
  assert.deepEqual(settingOf([file], "ssrfProtection"), [
    true,
    yaml("enable-ssrf-protection"),
  ]);
  assert.deepEqual(settingOf([file], "inferencePool"), [
    {
      namespace: "ns",
      name: "from-yaml",
      group: "inference.networking.x-k8s.io",
    },
    yaml("inference-pool"),
  ]);
  // Explicit flag > YAML > environment.
  assert.deepEqual(
    settingOf([file, "-inference-pool=flagged"], "inferencePool", {
      INFERENCE_POOL: "env/pool",
    }),
    [
      {
        namespace: "",
        name: "flagged",
        group: "inference.networking.x-k8s.io",
      },
      flag("inference-pool"),
    ],
  );
  assert.deepEqual(
    settingOf(
      ["-configuration=enable-ssrf-protection: true"],
      "inferencePool",
      { INFERENCE_POOL: "env/pool" },
    ),
    [
      { namespace: "env", name: "pool", group: "inference.networking.k8s.io" },
      { kind: "env", name: "INFERENCE_POOL" },
    ],
  );
  assert.deepEqual(
    settingOf([file, "-enable-ssrf-protection=false"], "ssrfProtection"),
    [false, flag("enable-ssrf-protection")],
  );
  // A bad value from YAML names the key it came from.
  const error = errorOf([
    "-configuration={enable-ssrf-protection: true, inference-pool: a/b/c}",
  ]);
  assert.equal(
    error.message,
    "--inference-pool must be in format 'namespace/name' or 'name', not multiple slashes " +
      '(from configuration key "inference-pool")',
  );
  assert.equal(error.exitCode, 2);
});

Deno.test("YAML enable-tls is a list; the deprecated YAML bools add to it unless -enable-tls is given", () => {
  const file = "-configuration={enable-tls: [decoder, encoder], " +
    "prefiller-use-tls: true, tls-insecure-skip-verify: [encoder]}";
  assert.deepEqual(settingOf([file], "tlsStages"), [
    ["decoder", "encoder", "prefiller"],
    yaml("enable-tls"),
  ]);
  assert.deepEqual(settingOf([file], "insecureSkipVerifyStages"), [
    ["encoder"],
    yaml("tls-insecure-skip-verify"),
  ]);
  // Go: YAML prefiller-use-tls applies only if -enable-tls is not on the command line.
  assert.deepEqual(settingOf([file, "-enable-tls=decoder"], "tlsStages"), [
    ["decoder"],
    flag("enable-tls"),
  ]);
  assert.deepEqual(
    settingOf(["-configuration=decoder-use-tls: true"], "tlsStages"),
    [["decoder"], yaml("decoder-use-tls")],
  );
  assert.deepEqual(settingOf([], "tlsStages"), [[], byDefault]);
  assert.ok(
    warningsOf([file]).includes(
      'Configuration key "prefiller-use-tls" is deprecated, use "enable-tls: [prefiller]" instead',
    ),
  );
  const error = errorOf(["-configuration=enable-tls: [prefiller, gpu]"]);
  assert.equal(
    error.message,
    "--enable-tls stages must be one of: prefiller, decoder, encoder " +
      '(from configuration key "enable-tls")',
  );
});

Deno.test("allowed-prefillers, ca-cert and the deprecated pool pair are command-line flags only", () => {
  for (
    const name of [
      "allowed-prefillers",
      "allowlist-sync-timeout",
      "ca-cert",
      "inference-pool-name",
    ]
  ) {
    const error = errorOf([`-configuration=${name}: x`]);
    assert.equal(error.exitCode, 2, name);
    assert.equal(
      error.message,
      `failed to unmarshal sidecar configuration: line 1: unknown key "${name}": ` +
        `"-${name}" is a command-line flag only`,
    );
  }
  assert.deepEqual(
    settingOf(["-allowed-prefillers=10.0.0.0/8"], "allowedPrefillers"),
    [["10.0.0.0/8"], flag("allowed-prefillers")],
  );
});

Deno.test("-print-config shows the security settings under their flags' names", () => {
  const result = parseCommandLine([
    "-configuration={enable-ssrf-protection: true, enable-tls: [prefiller]}",
    "-prefiller-tls-insecure-skip-verify",
    "-allowlist-sync-timeout=2s",
    "-ca-cert=/etc/ca.pem",
    "-print-config",
  ], { INFERENCE_POOL: "ns/pool" });
  assert.equal(result.kind, "print-config");
  const text = result.kind === "print-config" ? result.text : "";
  const rows = new Map(
    text.trim().split("\n").map((line) => {
      const [name, ...rest] = line.split(/ {2,}/);
      return [name ?? "", rest];
    }),
  );
  assert.deepEqual(rows.get("enable-ssrf-protection"), ["true", "yaml"]);
  assert.deepEqual(rows.get("inference-pool"), [
    '{"namespace":"ns","name":"pool","group":"inference.networking.k8s.io"}',
    "env INFERENCE_POOL",
  ]);
  assert.deepEqual(rows.get("enable-tls"), ['["prefiller"]', "yaml"]);
  assert.deepEqual(rows.get("tls-insecure-skip-verify"), [
    '["prefiller"]',
    "flag -prefiller-tls-insecure-skip-verify",
  ]);
  assert.deepEqual(rows.get("allowlist-sync-timeout-ms"), [
    "2000",
    "flag -allowlist-sync-timeout",
  ]);
  assert.deepEqual(rows.get("ca-cert"), ['"/etc/ca.pem"', "flag"]);
  assert.deepEqual(rows.get("allowed-prefillers"), ["[]", "default"]);
});
