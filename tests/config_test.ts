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
  modelServerPort: 8001,
  connector: "nixlv2",
  dataParallelSize: 1,
  dataParallelRank: 0,
  podIp: "",
  enableP2pPull: false,
  p2pConnectorPort: 7777,
  mooncakeBootstrapPort: 8998,
  sglangBootstrapPort: 8998,
  secureProxy: true,
  certPath: "",
  enablePrefillerSampling: false,
  verbosity: 0,
  workers: 1,
  metricsPort: 9090,
  tracing: false,
  watchClientConnections: false,
  ecConnector: "",
  decodeChunkSize: 0,
  ssrfProtection: false,
  inferencePool: undefined,
  allowedPrefillers: [],
  allowlistSyncTimeoutMs: 30_000,
  tlsStages: [],
  insecureSkipVerifyStages: [],
  caCertPath: "",
  maxRequestBodyBytes: 33554432,
  maxConnections: 0,
  maxIdleConnsPerHost: 1024,
  maxClientResets: 100,
  connectTimeout: 5000,
  prefillTimeout: 300_000,
  encoderTimeout: 300_000,
  decodeFirstByteTimeout: 0,
  streamIdleTimeout: 0,
  clientBodyTimeout: 60_000,
  prefillMaxRetries: 0,
  prefillRetryBackoff: 200,
  prefillFailurePolicy: "fail",
  shutdownGrace: 60_000,
  shutdownDrainDelay: 5000,
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

const VLLM_PORT_DEPRECATED =
  "Flag --vllm-port has been deprecated, use --model-server-port instead; " +
  "--vllm-port will be removed after the deprecation period";

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
    ["model-server-port", "8200", { modelServerPort: 8200 }],
    ["vllm-port", "8200", { modelServerPort: 8200 }],
    ["mooncake-bootstrap-port", "9000", { mooncakeBootstrapPort: 9000 }],
    ["p2p-connector-port", "7000", { p2pConnectorPort: 7000 }],
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
  assert.deepEqual(config, {
    ...DEFAULTS,
    modelServerPort: 8200,
    secureProxy: false,
  });
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
    modelServerPort: 8200,
    verbosity: 6,
  });
  assert.deepEqual(result.warnings, [
    VLLM_PORT_DEPRECATED,
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

Deno.test("parseCommandLine rejects an unknown connector with Go's message and exit 2", () => {
  for (const flag of ["kv-connector", "connector"]) {
    const error = configErrorOf([`--${flag}=NIXLV2`]);
    assert.equal(error.exitCode, 2);
    assert.equal(error.flag, flag);
    assert.equal(
      error.message,
      `--${flag} must be one of: ` +
        "nixlv2, nixl, lmcache, sglang, shared-storage, mooncake, offloading",
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

Deno.test("parseCommandLine takes a negative -v as klog does, meaning errors only", () => {
  const result = run(["-v=-1"]);
  assert.equal(result.config.verbosity, -1);
  assert.deepEqual(result.warnings, []);
  assert.equal(configOf(["-v", "-2147483648"]).verbosity, -2147483648);
});

Deno.test("parseCommandLine maps -zap-log-level names and integers to verbosity", () => {
  const cases: [string, number][] = [
    ["debug", 1],
    ["info", 0],
    ["error", -1],
    ["panic", -2],
    ["DEBUG", 1],
    ["3", 3],
    // strconv.Atoi reads a leading "+".
    ["+3", 3],
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
      // klog reads -v with strconv.ParseInt(s, 10, 32).
      ["-v=2147483648"],
      "v",
      'Invalid value "2147483648" for flag "-v": expected a 32-bit integer',
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

Deno.test("parseCommandLine names the flag a misspelt one in case or separator meant", () => {
  const cases: [string, string][] = [
    ["-kv_connector=lmcache", "kv-connector"],
    ["--Port=9000", "port"],
    ["-skip-headers", "skip_headers"],
    ["-LOG-DIR=/tmp", "log_dir"],
  ];
  for (const [arg, meant] of cases) {
    const error = configErrorOf([arg]);
    const given = arg.replace(/^-+/, "").split("=")[0];
    assert.deepEqual([error.exitCode, error.flag, error.message], [
      2,
      given,
      `Unknown flag "-${given}"; did you mean "-${meant}"?`,
    ]);
  }
});

Deno.test("parseCommandLine rejects flags of features not built yet with exit 2", () => {
  const notYet = [
    "moriio-write-mode",
    "moriio-dp-size",
    "moriio-remote-hosts",
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

Deno.test("parseCommandLine takes -stderrthreshold as klog does: a severity in any case or a 32-bit integer", () => {
  for (
    const value of ["INFO", "warning", "Error", "fatal", "0", "+3", "-1", "9"]
  ) {
    const result = run([`-stderrthreshold=${value}`]);
    assert.deepEqual(result.config, DEFAULTS, value);
    assert.deepEqual(result.warnings, [
      'Flag "-stderrthreshold" has no effect: this sidecar always logs JSON lines to stderr',
    ]);
  }
});

Deno.test("parseCommandLine refuses a -stderrthreshold klog cannot read, with exit 2", () => {
  for (const value of ["foo", "", "WARN", "1.5", "2147483648"]) {
    const error = configErrorOf(["-stderrthreshold", value]);
    assert.deepEqual([error.exitCode, error.flag, error.message], [
      2,
      "stderrthreshold",
      `Invalid value "${value}" for flag "-stderrthreshold": ` +
      "expected a severity (INFO, WARNING, ERROR, FATAL, any case) or a 32-bit integer",
    ]);
  }
});

Deno.test("parseCommandLine checks every occurrence of a checked or level flag, as Go sets each in turn: a bad value before a good one is refused", () => {
  for (
    const [args, flag, value] of [
      [
        ["-stderrthreshold=foo", "-stderrthreshold=2"],
        "stderrthreshold",
        "foo",
      ],
      [["-zap-encoder=xml", "--zap-encoder", "json"], "zap-encoder", "xml"],
      [
        ["-zap-log-level=bogus", "-zap-log-level=info"],
        "zap-log-level",
        "bogus",
      ],
      [["-zap-log-level=bogus", "-v=4"], "zap-log-level", "bogus"],
      [["-v=2147483648", "-v=1"], "v", "2147483648"],
    ] as const
  ) {
    const error = configErrorOf([...args]);
    assert.deepEqual([error.exitCode, error.flag], [2, flag]);
    assert.match(error.message, new RegExp(`^Invalid value "${value}"`));
  }
  // Good values, repeated: one warning per flag, not per occurrence.
  const result = run(["-stderrthreshold=2", "-stderrthreshold=ERROR"]);
  assert.equal(
    result.warnings.filter((line) => line.includes("-stderrthreshold")).length,
    1,
  );
});

Deno.test("parseCommandLine reads -zap-devel as Development Mode's debug level, unless a level is given", () => {
  assert.equal(configOf(["-zap-devel"]).verbosity, 1);
  assert.equal(configOf(["--zap-devel=true"]).verbosity, 1);
  assert.equal(configOf(["-zap-devel=false"]).verbosity, 0);
  assert.equal(configOf(["-zap-devel", "-zap-log-level=info"]).verbosity, 0);
  assert.equal(configOf(["-zap-log-level=error", "-zap-devel"]).verbosity, -1);
  assert.equal(configOf(["-zap-devel", "-v=4"]).verbosity, 4);
  assert.deepEqual(run(["-zap-devel"]).warnings, []);
});

Deno.test("parseCommandLine accepts -zap-stacktrace-level with a warning, and refuses a level zap does not know", () => {
  const result = run(["-zap-stacktrace-level=Error"]);
  assert.deepEqual(result.config, DEFAULTS);
  assert.deepEqual(result.warnings, [
    'Flag "-zap-stacktrace-level" has no effect: this sidecar always logs JSON lines to stderr',
  ]);
  for (const level of ["warn", "debug"]) {
    const error = configErrorOf([`-zap-stacktrace-level=${level}`]);
    assert.deepEqual([error.exitCode, error.flag], [2, "zap-stacktrace-level"]);
  }
});

Deno.test("parseCommandLine reads -max-idle-conns-per-host, 0 or less meaning Go's 1024", () => {
  assert.equal(configOf([]).maxIdleConnsPerHost, 1024);
  assert.equal(configOf(["-max-idle-conns-per-host=8"]).maxIdleConnsPerHost, 8);
  assert.equal(
    configOf(["-max-idle-conns-per-host=0"]).maxIdleConnsPerHost,
    1024,
  );
  assert.equal(
    configOf(["-max-idle-conns-per-host=-3"]).maxIdleConnsPerHost,
    1024,
  );
  assert.equal(
    configOf(["-configuration={max-idle-conns-per-host: 16}"])
      .maxIdleConnsPerHost,
    16,
  );
  const error = configErrorOf(["-max-idle-conns-per-host=many"]);
  assert.deepEqual([error.exitCode, error.flag], [
    2,
    "max-idle-conns-per-host",
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

Deno.test("parseCommandLine takes zap encoder values as controller-runtime does: any case, nanos", () => {
  const result = run([
    "--zap-encoder=JSON",
    "--zap-time-encoding=nanos",
    "--zap-time-encoding=RFC3339Nano",
  ]);
  assert.deepEqual(result.config, DEFAULTS);
  const error = configErrorOf(["--zap-time-encoding=nano"]);
  assert.deepEqual([error.exitCode, error.flag, error.message], [
    2,
    "zap-time-encoding",
    'Invalid value "nano" for flag "-zap-time-encoding": ' +
    "expected one of epoch, millis, nanos, iso8601, rfc3339, rfc3339nano",
  ]);
});

Deno.test("parseCommandLine rejects bad port values with Go's messages", () => {
  for (const flag of ["port", "model-server-port", "vllm-port"]) {
    const cases: [string, 1 | 2, string][] = [
      ["abc", 2, `--${flag} must be a valid integer, got "abc"`],
      ["", 2, `--${flag} must be a valid integer, got ""`],
      ["80.5", 2, `--${flag} must be a valid integer, got "80.5"`],
      ["0", 2, `--${flag} start port 0 is out of valid range [1, 65535]`],
      ["-1", 2, `--${flag} start port -1 is out of valid range [1, 65535]`],
      [
        "65536",
        2,
        `--${flag} start port 65536 is out of valid range [1, 65535]`,
      ],
    ];
    for (const [value, exitCode, message] of cases) {
      // An empty -model-server-port means "use -vllm-port", tested below.
      if (flag === "model-server-port" && value === "") continue;
      // -port=1 keeps the two port flags apart when the other one is tested.
      const other = flag === "port" ? [] : ["-port=1"];
      const error = configErrorOf([...other, `-${flag}=${value}`]);
      assert.deepEqual(
        [error.exitCode, error.flag, error.message],
        [exitCode, flag, message],
        `${flag}=${value}`,
      );
    }
  }
  assert.equal(
    configOf(["-port=1", "-vllm-port=65535"]).modelServerPort,
    65535,
  );
  assert.equal(configOf(["-port=+8000"]).port, 8000);
});

Deno.test("parseCommandLine checks every rank's port is in range, exit 1", () => {
  const cases: [string[], string, string][] = [
    [
      ["-port=65535", "-data-parallel-size=2"],
      "port",
      "--port port range [65535, 65536] exceeds maximum port value",
    ],
    [
      ["-model-server-port=65534", "-data-parallel-size=3"],
      "model-server-port",
      "--model-server-port port range [65534, 65536] exceeds maximum port value",
    ],
    [
      ["-data-parallel-size=65535"],
      "port",
      "--port invalid port range",
    ],
  ];
  for (const [args, flag, message] of cases) {
    const error = configErrorOf(args);
    assert.deepEqual([error.exitCode, error.flag, error.message], [
      1,
      flag,
      message,
    ]);
  }
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

Deno.test("parseCommandLine rejects port equal to the model-server port with exit 1", () => {
  for (const flag of ["vllm-port", "model-server-port"]) {
    const error = configErrorOf(["-port=8200", `-${flag}=8200`]);
    assert.deepEqual([error.exitCode, error.flag, error.message], [
      1,
      "port",
      `Flags "-port" and "-${flag}" are both 8200: the sidecar would proxy to itself`,
    ]);
  }
  assert.match(
    configErrorOf(["-port=8001"]).message,
    /"-model-server-port" are both 8001/,
  );
});

Deno.test("parseCommandLine rejects overlapping rank port ranges with exit 1", () => {
  const error = configErrorOf([
    "-port=8000",
    "-model-server-port=8002",
    "-data-parallel-size=4",
  ]);
  assert.deepEqual([error.exitCode, error.flag, error.message], [
    1,
    "port",
    'Ports 8000-8003 of "-port" and 8002-8005 of "-model-server-port" overlap with ' +
    '"-data-parallel-size=4": the sidecar would proxy to itself',
  ]);
  const apart = configOf([
    "-port=8000",
    "-model-server-port=8200",
    "-data-parallel-size=8",
  ]);
  assert.equal(apart.dataParallelSize, 8);
  assert.equal(
    configOf(["-port=8000", "-model-server-port=8004", "-data-parallel-size=4"])
      .modelServerPort,
    8004,
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
      "-moriio-write-mode",
      "-moriio-dp-size",
    ]
  ) {
    assert.ok(trailer.includes(flag), flag);
    assert.equal(usage.includes(`  ${flag} `), false, flag);
  }
});

Deno.test("parseCommandLine reads -metrics-port and -tracing, from flags or YAML", () => {
  assert.equal(configOf([]).metricsPort, 9090);
  assert.equal(configOf([]).tracing, false);
  const flags = configOf(["-metrics-port=0", "-tracing"]);
  assert.equal(flags.metricsPort, 0);
  assert.equal(flags.tracing, true);
  const yaml = configOf(["-configuration=metrics-port: 9191\ntracing: true"]);
  assert.equal(yaml.metricsPort, 9191);
  assert.equal(yaml.tracing, true);
  const error = configErrorOf(["-metrics-port=70000"]);
  assert.equal(error.exitCode, 2);
  assert.equal(error.flag, "metrics-port");
});

Deno.test("describeConfig returns a plain object for the start-up log", () => {
  const config = configOf([
    "-port=9000",
    "-listen-host=127.0.0.1",
    "-model-server-port=8200",
    "-kv-connector=sglang",
    "-data-parallel-size=2",
    "-secure-proxy=false",
    "-enable-prefiller-sampling",
    "-v=4",
    "-workers=3",
  ], { POD_IP: "10.0.0.7", SGLANG_BOOTSTRAP_PORT: "9100" });
  assert.deepEqual(describeConfig(config), {
    port: 9000,
    listen_host: "127.0.0.1",
    model_server_port: 8200,
    kv_connector: "sglang",
    data_parallel_size: 2,
    pod_ip: "10.0.0.7",
    enable_p2p_pull: false,
    p2p_connector_port: 7777,
    mooncake_bootstrap_port: 8998,
    sglang_bootstrap_port: 9100,
    secure_proxy: false,
    cert_path: "",
    enable_prefiller_sampling: true,
    verbosity: 4,
    workers: 3,
    metrics_port: 9090,
    tracing: false,
    watch_client_connections: false,
    ec_connector: "",
    decode_chunk_size: 0,
    enable_ssrf_protection: false,
    inference_pool: undefined,
    allowed_prefillers: [],
    allowlist_sync_timeout_ms: 30_000,
    enable_tls: [],
    tls_insecure_skip_verify: [],
    ca_cert: "",
    max_request_body_bytes: 33554432,
    max_client_resets: 100,
    max_connections: 0,
    max_idle_conns_per_host: 1024,
    connect_timeout: "5s",
    prefill_timeout: "5m0s",
    encoder_timeout: "5m0s",
    decode_first_byte_timeout: "0s",
    stream_idle_timeout: "0s",
    client_body_timeout: "1m0s",
    prefill_max_retries: 0,
    prefill_retry_backoff: "200ms",
    prefill_failure_policy: "fail",
    shutdown_grace: "1m0s",
    shutdown_drain_delay: "5s",
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

Deno.test("parseCommandLine prefers -model-server-port over -vllm-port and warns", () => {
  const both = run(["-vllm-port=8300", "-model-server-port=8200"]);
  assert.equal(both.config.modelServerPort, 8200);
  assert.deepEqual(both.warnings, [
    VLLM_PORT_DEPRECATED,
    'Flag "-vllm-port" is ignored because "-model-server-port" is set',
  ]);
  const legacy = run(["--vllm-port", "8300"]);
  assert.equal(legacy.config.modelServerPort, 8300);
  assert.deepEqual(legacy.warnings, [VLLM_PORT_DEPRECATED]);
  assert.deepEqual(run(["-model-server-port=8300"]).warnings, []);
});

Deno.test("parseCommandLine reads an empty -model-server-port as not given, as Go does", () => {
  assert.equal(
    configOf(["-model-server-port=", "-vllm-port=8300"]).modelServerPort,
    8300,
  );
  assert.equal(configOf(["-model-server-port="]).modelServerPort, 8001);
});

Deno.test("parseCommandLine names -model-server-port in port errors when both port flags are given", () => {
  const error = configErrorOf(["-model-server-port=0", "-vllm-port=8200"]);
  assert.equal(
    error.message,
    "--model-server-port start port 0 is out of valid range [1, 65535]",
  );
});

Deno.test("parseCommandLine rejects -data-parallel-size below 1 with Go's message, exit 2", () => {
  for (const value of ["0", "-3"]) {
    const error = configErrorOf([`-data-parallel-size=${value}`]);
    assert.deepEqual([error.exitCode, error.flag, error.message], [
      2,
      "data-parallel-size",
      `--data-parallel-size must be a positive integer, got ${value}`,
    ]);
  }
  assert.equal(
    configErrorOf(["-data-parallel-size=two"]).message,
    'Invalid value "two" for flag "-data-parallel-size": expected an integer',
  );
});

Deno.test("parseCommandLine reads -data-parallel-size", () => {
  const config = configOf([
    "--data-parallel-size",
    "4",
    "-model-server-port=8200",
  ]);
  assert.equal(config.dataParallelSize, 4);
  assert.equal(config.dataParallelRank, 0);
});

Deno.test("parseCommandLine reports the first invalid setting in the Go sidecar's order", () => {
  // Each entry is invalid on its own; with the next one added, its message still wins.
  const ordered: [string[], string][] = [
    [["-data-parallel-size=0"], "--data-parallel-size must be"],
    [["-port=x"], "--port must be"],
    [["-model-server-port=y"], "--model-server-port must be"],
    [["-kv-connector=z"], "--kv-connector must be"],
    [["-connector=w"], "--connector must be"],
    [["-mooncake-bootstrap-port=0"], "--mooncake-bootstrap-port must be"],
    [["-p2p-connector-port=0"], "--p2p-connector-port must be"],
    [
      ["-enable-p2p-pull", "-kv-connector=sglang"],
      "--enable-p2p-pull requires",
    ],
  ];
  for (let i = 0; i < ordered.length; i++) {
    const [args, prefix] = ordered[i] ?? [[], ""];
    const later = ordered.slice(i + 1).flatMap(([laterArgs]) =>
      laterArgs.filter((arg) => !arg.startsWith("-kv-connector=sglang"))
    );
    for (const combined of [args, [...later, ...args]]) {
      const message = configErrorOf(combined).message;
      assert.ok(
        message.startsWith(prefix),
        `${combined.join(" ")}: ${message}`,
      );
    }
  }
});

Deno.test("parseCommandLine accepts -enable-p2p-pull only with nixlv2, exit 1 otherwise", () => {
  const config = configOf(["-enable-p2p-pull", "-p2p-connector-port=7100"]);
  assert.equal(config.enableP2pPull, true);
  assert.equal(config.p2pConnectorPort, 7100);
  for (const connector of ["offloading", "sglang", "mooncake"]) {
    const error = configErrorOf([
      "-enable-p2p-pull=true",
      `-kv-connector=${connector}`,
    ]);
    assert.deepEqual([error.exitCode, error.flag, error.message], [
      1,
      "enable-p2p-pull",
      `--enable-p2p-pull requires --kv-connector=nixlv2 (got "${connector}")`,
    ]);
  }
});

Deno.test("parseCommandLine rejects connector ports out of range with Go's messages, whatever the connector", () => {
  for (const flag of ["mooncake-bootstrap-port", "p2p-connector-port"]) {
    for (const value of ["0", "65536", "-5"]) {
      const error = configErrorOf([`--${flag}=${value}`]);
      assert.deepEqual([error.exitCode, error.flag, error.message], [
        2,
        flag,
        `--${flag} must be between 1 and 65535, got ${value}`,
      ]);
    }
  }
});

Deno.test("parseCommandLine checks the last rank's P2P port when P2P is used, exit 1", () => {
  for (const args of [["-kv-connector=offloading"], ["-enable-p2p-pull"]]) {
    const error = configErrorOf([
      ...args,
      "-p2p-connector-port=65534",
      "-data-parallel-size=3",
      "-model-server-port=8200",
    ]);
    assert.deepEqual([error.exitCode, error.flag, error.message], [
      1,
      "p2p-connector-port",
      "--p2p-connector-port 65534 plus data-parallel rank 2 exceeds 65535",
    ]);
  }
  // Go checks it whatever the connector; a sidecar that never uses the port starts.
  const unused = run([
    "-p2p-connector-port=65534",
    "-data-parallel-size=3",
    "-model-server-port=8200",
  ]);
  assert.deepEqual(unused.warnings, [
    'Flag "-p2p-connector-port" has no effect without ' +
    "-kv-connector=offloading or -enable-p2p-pull",
  ]);
});

Deno.test("parseCommandLine warns that a connector port flag has no effect on another connector", () => {
  assert.deepEqual(run(["-mooncake-bootstrap-port=9000"]).warnings, [
    'Flag "-mooncake-bootstrap-port" has no effect without -kv-connector=mooncake',
  ]);
  assert.deepEqual(
    run(["-mooncake-bootstrap-port=9000", "-kv-connector=mooncake"]).warnings,
    [],
  );
  assert.deepEqual(
    run(["-p2p-connector-port=7100", "-kv-connector=offloading"]).warnings,
    [],
  );
});

Deno.test("parseCommandLine reads connector ports from the environment when the flag is absent", () => {
  const env = {
    MOONCAKE_BOOTSTRAP_PORT: "9000",
    P2P_CONNECTOR_PORT: "7100",
    SGLANG_BOOTSTRAP_PORT: "9100",
    POD_IP: "fd00::7",
  };
  const result = run([], env);
  assert.deepEqual(
    [
      result.config.mooncakeBootstrapPort,
      result.config.p2pConnectorPort,
      result.config.sglangBootstrapPort,
      result.config.podIp,
    ],
    [9000, 7100, 9100, "fd00::7"],
  );
  assert.deepEqual(result.warnings, []);
  const flags = configOf([
    "-mooncake-bootstrap-port=9001",
    "-p2p-connector-port=7101",
  ], env);
  assert.deepEqual([flags.mooncakeBootstrapPort, flags.p2pConnectorPort], [
    9001,
    7101,
  ]);
  assert.equal(
    configOf([], { SGLANG_BOOTSTRAP_PORT: "" }).sglangBootstrapPort,
    8998,
  );
});

Deno.test("parseCommandLine uses the default for a non-integer port variable and warns", () => {
  const cases: [string, keyof Config, number][] = [
    ["MOONCAKE_BOOTSTRAP_PORT", "mooncakeBootstrapPort", 8998],
    ["P2P_CONNECTOR_PORT", "p2pConnectorPort", 7777],
    ["SGLANG_BOOTSTRAP_PORT", "sglangBootstrapPort", 8998],
  ];
  for (const [name, field, fallback] of cases) {
    for (const connector of ["mooncake", "offloading", "sglang"]) {
      const result = run([`-kv-connector=${connector}`], { [name]: "abc" });
      assert.equal(result.config[field], fallback, `${name} ${connector}`);
      assert.deepEqual(result.warnings, [
        `Environment variable ${name} has invalid value "abc": using ${fallback}`,
      ]);
    }
  }
});

Deno.test("parseCommandLine refuses an out-of-range port variable only for the connector that uses it", () => {
  const cases: [string, string, keyof Config, number][] = [
    ["MOONCAKE_BOOTSTRAP_PORT", "mooncake", "mooncakeBootstrapPort", 8998],
    ["P2P_CONNECTOR_PORT", "offloading", "p2pConnectorPort", 7777],
    ["SGLANG_BOOTSTRAP_PORT", "sglang", "sglangBootstrapPort", 8998],
  ];
  for (const [name, user, field, fallback] of cases) {
    const error = configErrorOf([`-kv-connector=${user}`], { [name]: "0" });
    assert.deepEqual([error.exitCode, error.message], [
      2,
      `Environment variable ${name} has invalid value "0": ` +
      "expected a port number from 1 to 65535",
    ]);
    // Go refuses MOONCAKE_BOOTSTRAP_PORT=0 even on a nixlv2 sidecar, which never reads it.
    const result = run([], { [name]: "0" });
    assert.equal(result.config[field], fallback);
    assert.deepEqual(result.warnings, [
      `Environment variable ${name} has invalid value "0": using ${fallback}`,
    ]);
  }
  assert.equal(
    configErrorOf(["-enable-p2p-pull"], { P2P_CONNECTOR_PORT: "70000" })
      .exitCode,
    2,
  );
});

Deno.test("parseCommandLine starts nixlv2 on an empty -kv-connector and warns", () => {
  const result = run(["--kv-connector="]);
  assert.equal(result.config.connector, "nixlv2");
  assert.deepEqual(result.warnings, [
    'Flag "-kv-connector" is empty: using "nixlv2"',
  ]);
});

Deno.test("formatUsage lists every connector flag with its default", () => {
  const usage = formatUsage();
  const expected = [
    "  -model-server-port string\n    \tthe port the model server (vLLM or SGLang) is listening on; " +
    "with -data-parallel-size N, rank r's model server listens on this port + r " +
    '(default "8001")\n',
    "  -vllm-port string\n    \tDeprecated: use -model-server-port instead.",
    "  -data-parallel-size int\n",
    "(default 1)\n",
    "  -mooncake-bootstrap-port int\n",
    "(default 8998)\n",
    "  -p2p-connector-port int\n",
    "(default 7777)\n",
    "  -enable-p2p-pull\n",
    "  -kv-connector string\n    \tthe KV protocol between prefiller and decoder. Supported: " +
    "nixlv2, nixl, lmcache, sglang, shared-storage, mooncake, offloading " +
    '(default "nixlv2")\n',
  ];
  for (const text of expected) assert.ok(usage.includes(text), text);
});

Deno.test("formatUsage lists the configuration flags and -print-config as supported", () => {
  const usage = formatUsage();
  const flagSection = usage.slice(0, usage.indexOf("\n\n"));
  assert.ok(flagSection.includes("  -configuration string\n"));
  assert.ok(flagSection.includes("  -configuration-file string\n"));
  assert.ok(flagSection.includes("  -print-config\n"));
});

Deno.test("the stage flags and keys set the encoder connector and the decode chunk size", () => {
  const config = configOf(["-ec-connector=ec-nixl", "-decode-chunk-size=16"]);
  assert.equal(config.ecConnector, "ec-nixl");
  assert.equal(config.decodeChunkSize, 16);
  const yaml = configOf([
    "-configuration={ec-connector: ec-example, decode-chunk-size: 8}",
    "-decode-chunk-size=4",
  ]);
  assert.equal(yaml.ecConnector, "ec-example");
  assert.equal(yaml.decodeChunkSize, 4, "the flag beats the key");
});

Deno.test("the stage flags refuse an unknown encoder connector and a negative chunk size with Go's messages", () => {
  const ec = configErrorOf(["-ec-connector=ec-lmcache"]);
  assert.deepEqual([ec.exitCode, ec.flag, ec.message], [
    2,
    "ec-connector",
    "--ec-connector must be one of: ec-example, ec-nixl",
  ]);
  const chunk = configErrorOf(["-decode-chunk-size=-1"]);
  assert.deepEqual([chunk.exitCode, chunk.flag, chunk.message], [
    2,
    "decode-chunk-size",
    "--decode-chunk-size must be a non-negative integer (0 disables chunked decode), got -1",
  ]);
});

Deno.test("numeric flags outside their range are refused, naming what they take; their bounds are accepted", () => {
  const refused: [string, string][] = [
    ["-workers=0", '"-workers": expected a number from 1 to 64'],
    ["-workers=65", '"-workers": expected a number from 1 to 64'],
    [
      "-metrics-port=65536",
      '"-metrics-port": expected a port from 1 to 65535, or 0 for no metrics listener',
    ],
    [
      "-max-request-body-bytes=0",
      '"-max-request-body-bytes": expected a number of bytes greater than 0',
    ],
    [
      "-max-connections=-1",
      '"-max-connections": expected a number of connections, or 0 for no cap',
    ],
  ];
  for (const [flag, message] of refused) {
    const error = configErrorOf([flag]);
    assert.equal(error.exitCode, 2, flag);
    assert.ok(error.message.includes(message), error.message);
  }
  const bounds = configOf([
    "-workers=64",
    "-metrics-port=65535",
    "-max-request-body-bytes=1",
    "-max-connections=0",
  ]);
  assert.equal(bounds.workers, 64);
  assert.equal(bounds.metricsPort, 65535);
  assert.equal(bounds.maxRequestBodyBytes, 1);
  assert.equal(bounds.maxConnections, 0);
});
