import assert from "node:assert/strict";
import {
  type CommandLine,
  type Config,
  ConfigError,
  CONNECTOR_NAMES,
  describeConfig,
  formatUsage,
  parseCommandLine,
} from "../src/config.ts";

type Env = Readonly<Record<string, string | undefined>>;
type Run = Extract<CommandLine, { kind: "run" }>;

const DEFAULTS: Config = {
  port: 8000,
  listenHost: "::",
  vllmPort: 8001,
  connector: "nixlv2",
  secureProxy: true,
  certPath: "",
  enablePrefillerSampling: false,
  verbosity: 0,
  workers: 1,
  ssrfProtection: false,
  inferencePool: undefined,
  allowedPrefillers: [],
  allowlistSyncTimeoutMs: 30_000,
  tlsStages: [],
  insecureSkipVerifyStages: [],
  caCertPath: "",
};

function run(args: readonly string[], env: Env = {}): Run {
  const result = parseCommandLine(args, env);
  assert.equal(result.kind, "run");
  return result as Run;
}

function configOf(args: readonly string[], env: Env = {}): Config {
  return run(args, env).config;
}

function configErrorOf(args: readonly string[], env: Env = {}): ConfigError {
  try {
    parseCommandLine(args, env);
  } catch (error) {
    assert.ok(
      error instanceof ConfigError,
      `expected a ConfigError, got ${String(error)}`,
    );
    return error;
  }
  assert.fail(`expected ${JSON.stringify(args)} to be rejected`);
}

Deno.test("parseCommandLine returns the defaults without flags", () => {
  const result = run([]);
  assert.deepEqual(result.config, DEFAULTS);
  assert.deepEqual(result.warnings, []);
});

Deno.test("parseCommandLine accepts Go single-dash syntax -port=8000", () => {
  assert.equal(configOf(["-port=9000"]).port, 9000);
});

Deno.test("parseCommandLine accepts each flag in both Go syntaxes", () => {
  const cases: [string, string, Partial<Config>][] = [
    ["port", "9000", { port: 9000 }],
    ["vllm-port", "8200", { vllmPort: 8200 }],
    ["listen-host", "127.0.0.1", { listenHost: "127.0.0.1" }],
    ["kv-connector", "sglang", { connector: "sglang" }],
    ["cert-path", "/etc/tls", { certPath: "/etc/tls" }],
    ["v", "4", { verbosity: 4 }],
    ["zap-log-level", "debug", { verbosity: 1 }],
  ];
  for (const [flag, value, expected] of cases) {
    for (
      const args of [[`-${flag}=${value}`], [`--${flag}`, value], [
        `-${flag}`,
        value,
      ]]
    ) {
      assert.deepEqual(
        configOf(args),
        { ...DEFAULTS, ...expected },
        args.join(" "),
      );
    }
  }
});

Deno.test("parseCommandLine reads boolean flags bare and with =", () => {
  assert.equal(configOf(["-secure-proxy=false"]).secureProxy, false);
  assert.equal(configOf(["--secure-proxy=0"]).secureProxy, false);
  assert.equal(
    configOf(["--secure-proxy=false", "-secure-proxy"]).secureProxy,
    true,
  );
  assert.equal(
    configOf(["-enable-prefiller-sampling"]).enablePrefillerSampling,
    true,
  );
  assert.equal(
    configOf(["--enable-prefiller-sampling=True"]).enablePrefillerSampling,
    true,
  );
});

Deno.test("parseCommandLine takes the deployment's LATEST arguments", () => {
  const config = configOf([
    "--port=8000",
    "--vllm-port=8200",
    "--secure-proxy=false",
  ]);
  assert.deepEqual(config, { ...DEFAULTS, vllmPort: 8200, secureProxy: false });
});

Deno.test("parseCommandLine takes the ORIG test pod's single-dash arguments", () => {
  const result = run([
    "-port=8000",
    "-vllm-port=8200",
    "-connector=nixlv2",
    "-v=6",
  ]);
  assert.deepEqual(result.config, {
    ...DEFAULTS,
    vllmPort: 8200,
    verbosity: 6,
  });
  assert.deepEqual(result.warnings, [
    "Flag --connector has been deprecated, use --kv-connector instead",
  ]);
});

Deno.test("parseCommandLine lets the last of a repeated flag win", () => {
  assert.equal(configOf(["-port=9000", "--port", "9001"]).port, 9001);
});

Deno.test("parseCommandLine reads ENABLE_PREFILLER_SAMPLING with Go ParseBool", () => {
  for (const value of ["1", "t", "T", "TRUE", "true", "True"]) {
    assert.equal(
      configOf([], { ENABLE_PREFILLER_SAMPLING: value })
        .enablePrefillerSampling,
      true,
      value,
    );
  }
  for (const value of ["0", "f", "false", "", undefined]) {
    const result = run([], { ENABLE_PREFILLER_SAMPLING: value });
    assert.equal(result.config.enablePrefillerSampling, false, String(value));
    assert.deepEqual(result.warnings, []);
  }
});

Deno.test("parseCommandLine treats an invalid ENABLE_PREFILLER_SAMPLING as false and warns", () => {
  const result = run([], { ENABLE_PREFILLER_SAMPLING: "yes" });
  assert.equal(result.config.enablePrefillerSampling, false);
  assert.deepEqual(result.warnings, [
    'Environment variable ENABLE_PREFILLER_SAMPLING has invalid value "yes": using false',
  ]);
});

Deno.test("parseCommandLine prefers -enable-prefiller-sampling over the environment", () => {
  const env = { ENABLE_PREFILLER_SAMPLING: "true" };
  assert.equal(
    configOf(["-enable-prefiller-sampling=false"], env).enablePrefillerSampling,
    false,
  );
  const invalid = run(["-enable-prefiller-sampling"], {
    ENABLE_PREFILLER_SAMPLING: "yes",
  });
  assert.equal(invalid.config.enablePrefillerSampling, true);
  assert.deepEqual(invalid.warnings, []);
});

Deno.test("parseCommandLine copies deprecated -connector into the connector and warns", () => {
  const result = run(["-connector=shared-storage"]);
  assert.equal(result.config.connector, "shared-storage");
  assert.deepEqual(result.warnings, [
    "Flag --connector has been deprecated, use --kv-connector instead",
  ]);
});

Deno.test("parseCommandLine copies -connector when -kv-connector is empty", () => {
  assert.equal(
    configOf(["--kv-connector=", "--connector", "sglang"]).connector,
    "sglang",
  );
  assert.equal(configOf(["--kv-connector="]).connector, "nixlv2");
});

Deno.test("parseCommandLine prefers -kv-connector over -connector and says so", () => {
  const result = run(["-connector=lmcache", "-kv-connector=sglang"]);
  assert.equal(result.config.connector, "sglang");
  assert.deepEqual(result.warnings, [
    "Flag --connector has been deprecated, use --kv-connector instead",
    'Flag "-connector" is ignored because "-kv-connector" is set',
  ]);
});

Deno.test("parseCommandLine accepts every connector name", () => {
  for (const name of CONNECTOR_NAMES) {
    assert.equal(configOf([`-kv-connector=${name}`]).connector, name);
  }
});

Deno.test("parseCommandLine warns that the nixl connector is deprecated", () => {
  assert.deepEqual(run(["--kv-connector=nixl"]).warnings, [
    'Connector "nixl" is deprecated and will be removed in a future release in favor of "nixlv2"',
  ]);
});

Deno.test("parseCommandLine rejects an unknown connector with exit 2 naming the flag", () => {
  for (const flag of ["kv-connector", "connector"]) {
    const error = configErrorOf([`--${flag}=mooncake`]);
    assert.equal(error.exitCode, 2);
    assert.equal(error.flag, flag);
    assert.equal(
      error.message,
      `Invalid value "mooncake" for flag "-${flag}": ` +
        "expected one of nixlv2, nixl, lmcache, sglang, shared-storage",
    );
  }
});

Deno.test("parseCommandLine validates -connector even when -kv-connector overrides it", () => {
  const error = configErrorOf(["-kv-connector=nixlv2", "-connector=NIXLV2"]);
  assert.equal(error.flag, "connector");
  assert.equal(error.exitCode, 2);
});

Deno.test("parseCommandLine maps -v=N to verbosity N", () => {
  assert.equal(configOf(["-v=5"]).verbosity, 5);
  assert.equal(configOf(["--v", "0"]).verbosity, 0);
});

Deno.test("parseCommandLine maps -zap-log-level names and integers to verbosity", () => {
  const cases: [string, number][] = [
    ["debug", 1],
    ["info", 0],
    ["error", -1],
    ["panic", -2],
    ["DEBUG", 1],
    ["3", 3],
  ];
  for (const [level, verbosity] of cases) {
    assert.equal(
      configOf([`--zap-log-level=${level}`]).verbosity,
      verbosity,
      level,
    );
  }
});

Deno.test("parseCommandLine lets the later of -v and -zap-log-level win", () => {
  assert.equal(configOf(["-v=5", "--zap-log-level=error"]).verbosity, -1);
  assert.equal(configOf(["--zap-log-level=error", "-v=5"]).verbosity, 5);
});

Deno.test("parseCommandLine rejects bad verbosity values with exit 2", () => {
  const cases: [string[], string, string][] = [
    [
      ["-v=-1"],
      "v",
      'Invalid value "-1" for flag "-v": expected an integer of 0 or more',
    ],
    [
      ["-v=high"],
      "v",
      'Invalid value "high" for flag "-v": expected an integer',
    ],
    [
      ["--zap-log-level=0"],
      "zap-log-level",
      'Invalid value "0" for flag "-zap-log-level": ' +
      "expected debug, info, error, panic or an integer greater than 0",
    ],
    [
      ["--zap-log-level=warn"],
      "zap-log-level",
      'Invalid value "warn" for flag "-zap-log-level": ' +
      "expected debug, info, error, panic or an integer greater than 0",
    ],
  ];
  for (const [args, flag, message] of cases) {
    const error = configErrorOf(args);
    assert.deepEqual([error.exitCode, error.flag, error.message], [
      2,
      flag,
      message,
    ]);
  }
});

Deno.test("parseCommandLine returns usage for -h, -help and --help anywhere", () => {
  const argLists = [
    ["-h"],
    ["--h"],
    ["-help"],
    ["--help"],
    ["-help=false"],
    ["-port=9000", "--help"],
    ["--no-such-flag", "-h"],
    ["-secure-proxy", "false", "-h"],
  ];
  for (const args of argLists) {
    assert.deepEqual(parseCommandLine(args, {}), {
      kind: "help",
      usage: formatUsage(),
    });
  }
});

Deno.test("parseCommandLine does not read -h after -- as help", () => {
  const error = configErrorOf(["--", "-h"]);
  assert.equal(
    error.message,
    'Unexpected argument "-h" after "--": the sidecar takes no positional arguments',
  );
  assert.equal(error.exitCode, 2);
});

Deno.test("parseCommandLine rejects an unknown flag with exit 2 naming it", () => {
  const error = configErrorOf(["-port=9000", "--no-such-flag=1"]);
  assert.equal(error.exitCode, 2);
  assert.equal(error.flag, "no-such-flag");
  assert.equal(error.message, 'Unknown flag "-no-such-flag"');
});

Deno.test("parseCommandLine rejects flags of features not built yet with exit 2", () => {
  const notYet = [
    "data-parallel-size",
    "ec-connector",
    "max-idle-conns-per-host",
    "decode-chunk-size",
    "configuration",
    "configuration-file",
    "zap-devel",
    "zap-stacktrace-level",
  ];
  for (const flag of notYet) {
    for (const args of [[`--${flag}=1`], [`-${flag}`, "1"], [`-${flag}`]]) {
      const error = configErrorOf(args);
      assert.equal(error.exitCode, 2, flag);
      assert.equal(error.flag, flag);
      assert.equal(
        error.message,
        `Flag "-${flag}" is not supported yet by this sidecar`,
      );
    }
  }
});

Deno.test("parseCommandLine rejects klog file and filter flags with exit 2", () => {
  for (
    const flag of [
      "log_dir",
      "log_file",
      "log_file_max_size",
      "vmodule",
      "log_backtrace_at",
    ]
  ) {
    const error = configErrorOf([`-${flag}=x`]);
    assert.equal(error.exitCode, 2);
    assert.equal(error.flag, flag);
    assert.equal(
      error.message,
      `Flag "-${flag}" is not supported by this sidecar: ` +
        "this sidecar always logs JSON lines to stderr, filtered by -v only",
    );
  }
});

Deno.test("parseCommandLine accepts logging flags without effect and warns once each", () => {
  const result = run([
    "-logtostderr",
    "-alsologtostderr=false",
    "-stderrthreshold=2",
    "-skip_headers",
    "-one_output=true",
    "-add_dir_header",
    "-skip_log_headers",
    "--zap-encoder=console",
    "--zap-time-encoding",
    "iso8601",
    "-logtostderr=true",
  ]);
  assert.deepEqual(result.config, DEFAULTS);
  const note = "has no effect: this sidecar always logs JSON lines to stderr";
  assert.deepEqual(result.warnings, [
    `Flag "-logtostderr" ${note}`,
    `Flag "-alsologtostderr" ${note}`,
    `Flag "-stderrthreshold" ${note}`,
    `Flag "-skip_headers" ${note}`,
    `Flag "-one_output" ${note}`,
    `Flag "-add_dir_header" ${note}`,
    `Flag "-skip_log_headers" ${note}`,
    `Flag "-zap-encoder" ${note}`,
    `Flag "-zap-time-encoding" ${note}`,
  ]);
});

Deno.test("parseCommandLine rejects zap encoder values zap would reject", () => {
  const error = configErrorOf(["--zap-encoder=xml"]);
  assert.deepEqual([error.exitCode, error.flag, error.message], [
    2,
    "zap-encoder",
    'Invalid value "xml" for flag "-zap-encoder": expected one of json, console',
  ]);
});

Deno.test("parseCommandLine rejects bad port values with exit 2", () => {
  for (const flag of ["port", "vllm-port"]) {
    for (const value of ["0", "65536", "abc", "", "-1", "80.5", "123456"]) {
      const error = configErrorOf([`-${flag}=${value}`]);
      assert.equal(error.exitCode, 2, `${flag}=${value}`);
      assert.equal(error.flag, flag);
      assert.equal(
        error.message,
        `Invalid value "${value}" for flag "-${flag}": expected a port number from 1 to 65535`,
      );
    }
  }
  assert.equal(configOf(["-port=1", "-vllm-port=65535"]).vllmPort, 65535);
});

Deno.test("parseCommandLine rejects bad syntax and values with exit 2", () => {
  const cases: [string[], string | undefined, string][] = [
    [["-secure-proxy=yes"], "secure-proxy", "expected a boolean"],
    [["--port"], "port", 'Flag "-port" needs a value'],
    [["-kv-connector", "-port", "9000"], "kv-connector", "needs a value"],
    [["---port=1"], undefined, 'Bad flag syntax "---port=1"'],
    [["serve"], undefined, 'Unexpected argument "serve"'],
    [["-"], undefined, 'Unexpected argument "-"'],
    [
      ["--listen-host="],
      "listen-host",
      'Invalid value "" for flag "-listen-host"',
    ],
    [["--listen-host=[::1]"], "listen-host", "without brackets"],
  ];
  for (const [args, flag, message] of cases) {
    const error = configErrorOf(args);
    assert.equal(error.exitCode, 2, args.join(" "));
    assert.equal(error.flag, flag, args.join(" "));
    assert.ok(error.message.includes(message), error.message);
  }
});

Deno.test("parseCommandLine rejects -secure-proxy false -port 9000 and explains =", () => {
  const error = configErrorOf(["-secure-proxy", "false", "-port", "9000"]);
  assert.equal(error.exitCode, 2);
  assert.equal(error.flag, "secure-proxy");
  assert.equal(
    error.message,
    'Unexpected argument "false" after flag "-secure-proxy": boolean flags take their value ' +
      'with "=", e.g. "-secure-proxy=false"',
  );
});

Deno.test("parseCommandLine rejects port equal to vllm-port with exit 1", () => {
  const error = configErrorOf(["-port=8200", "-vllm-port=8200"]);
  assert.equal(error.exitCode, 1);
  assert.equal(error.flag, "port");
  assert.equal(
    error.message,
    'Flags "-port" and "-vllm-port" are both 8200: the sidecar would proxy to itself',
  );
});

Deno.test("parseCommandLine warns that -cert-path has no effect without secure proxy", () => {
  const result = run(["-secure-proxy=false", "-cert-path=/etc/tls"]);
  assert.equal(result.config.certPath, "/etc/tls");
  assert.deepEqual(result.warnings, [
    'Flag "-cert-path" has no effect with "-secure-proxy=false"',
  ]);
  assert.deepEqual(run(["-cert-path=/etc/tls"]).warnings, []);
});

Deno.test("ConfigError carries the FlagError as its cause", () => {
  const error = configErrorOf(["-nope"]);
  assert.equal(error.name, "ConfigError");
  assert.ok(error.cause instanceof Error);
  assert.equal(error.cause.name, "FlagError");
});

Deno.test("formatUsage prints flags sorted in Go PrintDefaults style", () => {
  const usage = formatUsage("llm-d-routing-sidecar");
  assert.ok(usage.startsWith("Usage of llm-d-routing-sidecar:\n"));
  assert.ok(usage.endsWith("\n"));
  assert.ok(
    usage.includes(
      '  -port string\n    \tthe port the sidecar is listening on (default "8000")\n',
    ),
  );
  assert.ok(usage.includes("  -h\tshow this help and exit\n"));
  assert.ok(usage.includes("  -secure-proxy\n    \tEnables secure proxy"));
  assert.ok(usage.includes("(default true)"));
  assert.ok(
    usage.includes(
      "  -connector string\n    \tDeprecated: use -kv-connector instead.",
    ),
  );
  const flagSection = usage.slice(0, usage.indexOf("\n\n"));
  const names = [...flagSection.matchAll(/^ {2}-([\w-]+)/gm)].map((match) =>
    match[1] ?? ""
  );
  assert.deepEqual(names, [...names].sort());
  assert.ok(names.includes("listen-host"));
});

Deno.test("formatUsage lists the not-yet-supported flags after the supported ones", () => {
  const usage = formatUsage();
  assert.ok(usage.startsWith("Usage of llm-d-routing-sidecar:\n"));
  const trailer = usage.slice(usage.indexOf("Not supported yet"));
  for (
    const flag of [
      "-data-parallel-size",
      "-zap-devel",
    ]
  ) {
    assert.ok(trailer.includes(flag), flag);
    assert.equal(usage.includes(`  ${flag} `), false, flag);
  }
});

Deno.test("describeConfig returns a plain object for the start-up log", () => {
  const config = configOf([
    "-port=9000",
    "-listen-host=127.0.0.1",
    "-vllm-port=8200",
    "-kv-connector=sglang",
    "-secure-proxy=false",
    "-enable-prefiller-sampling",
    "-v=4",
    "-workers=3",
  ]);
  assert.deepEqual(describeConfig(config), {
    port: 9000,
    listen_host: "127.0.0.1",
    vllm_port: 8200,
    kv_connector: "sglang",
    secure_proxy: false,
    cert_path: "",
    enable_prefiller_sampling: true,
    verbosity: 4,
    workers: 3,
    enable_ssrf_protection: false,
    inference_pool: undefined,
    allowed_prefillers: [],
    allowlist_sync_timeout_ms: 30_000,
    enable_tls: [],
    tls_insecure_skip_verify: [],
    ca_cert: "",
  });
  assert.equal(
    JSON.stringify(describeConfig(DEFAULTS)).includes("undefined"),
    false,
  );
});

Deno.test("parseCommandLine rejects -workers outside 1..64 with exit 2", () => {
  for (const value of ["0", "65", "-1"]) {
    assert.throws(
      () => parseCommandLine([`-workers=${value}`], {}),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.exitCode, 2);
        assert.equal(error.flag, "workers");
        return true;
      },
    );
  }
});

Deno.test("-engine, the removed second HTTP engine's flag, is refused as unknown", () => {
  for (const value of ["serve", "wire"]) {
    assert.throws(
      () => configOf([`-engine=${value}`]),
      (error: unknown) =>
        error instanceof ConfigError && error.exitCode === 2 &&
        error.flag === "engine",
    );
  }
  assert.equal(formatUsage().includes("-engine"), false);
});
