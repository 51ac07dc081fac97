import assert from "node:assert/strict";
import { createMockVllm } from "../scripts/mock_vllm/mod.ts";
import {
  type CommandLine,
  type CommandLineOptions,
  type Config,
  ConfigError,
  parseCommandLine,
  type ResolvedConfig,
  type SettingSource,
} from "../src/config.ts";
import { readConfigurationFile } from "../src/config_file.ts";
import { layerValues } from "../src/config_sources.ts";
import { parseFlags } from "../src/flags.ts";
import {
  BUNDLE,
  freePort,
  RUN_FLAGS,
  runBundle,
  startBundle,
} from "./support/process.ts";

type Env = Readonly<Record<string, string | undefined>>;

/** How long a child process that might block on a FIFO may take before the test fails. */
const CHILD_DEADLINE_MS = 20_000;

function resolve(
  args: readonly string[],
  env: Env = {},
  options: CommandLineOptions = {},
): ResolvedConfig {
  const result = parseCommandLine(args, env, options);
  assert.notEqual(result.kind, "help");
  return result as Exclude<CommandLine, { kind: "help" }>;
}

function errorOf(
  args: readonly string[],
  env: Env = {},
  options: CommandLineOptions = {},
): ConfigError {
  try {
    parseCommandLine(args, env, options);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error;
  }
  assert.fail(`expected ${JSON.stringify(args)} to be refused`);
}

/** The value and source of one setting. */
function setting<K extends keyof ResolvedConfig["sources"]>(
  resolved: ResolvedConfig,
  key: K,
): [Config[K], SettingSource] {
  return [resolved.config[key], resolved.sources[key]];
}

const yaml = (name: string): SettingSource => ({ kind: "yaml", name });
const flag = (name: string): SettingSource => ({ kind: "flag", name });
const env = (name: string): SettingSource => ({ kind: "env", name });
const byDefault: SettingSource = { kind: "default" };

async function withTempDir<T>(
  body: (dir: string) => T | Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "config_file_test_" });
  try {
    return await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function readError(path: string, maxBytes?: number): ConfigError {
  try {
    readConfigurationFile(path, maxBytes);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.exitCode, 2);
    assert.equal(error.flag, "configuration-file");
    return error;
  }
  assert.fail(`expected reading "${path}" to fail`);
}

Deno.test("readConfigurationFile reads a UTF-8 file, without its byte order mark", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sidecar.yaml`;
    await Deno.writeTextFile(path, "\uFEFFport: 9000\ncert-path: /tls/é\n");
    assert.equal(
      readConfigurationFile(path),
      "port: 9000\ncert-path: /tls/é\n",
    );
  });
});

Deno.test("readConfigurationFile refuses a missing file, a directory and a device with Go's prefix", async () => {
  await withTempDir((dir) => {
    const prefix = "failed to read sidecar configuration from file: ";
    assert.equal(
      readError(`${dir}/none.yaml`).message,
      `${prefix}"${dir}/none.yaml": no such file or directory`,
    );
    assert.equal(
      readError(dir).message,
      `${prefix}"${dir}": not a regular file`,
    );
    assert.equal(
      readError("/dev/zero").message,
      `${prefix}"/dev/zero": not a regular file`,
    );
  });
});

Deno.test("readConfigurationFile refuses a file over the cap, and bytes that are not UTF-8", async () => {
  await withTempDir(async (dir) => {
    const big = `${dir}/big.yaml`;
    await Deno.writeFile(big, new Uint8Array(64 * 1024 + 1).fill(0x20));
    assert.match(readError(big).message, /: larger than 65536 bytes$/);
    const exact = `${dir}/exact.yaml`;
    await Deno.writeFile(exact, new Uint8Array(64 * 1024).fill(0x20));
    assert.equal(readConfigurationFile(exact).length, 64 * 1024);
    assert.match(readError(exact, 100).message, /: larger than 100 bytes$/);
    const latin1 = `${dir}/latin1.yaml`;
    await Deno.writeFile(latin1, new Uint8Array([0x70, 0x3a, 0x20, 0xe9]));
    assert.match(readError(latin1).message, /: not UTF-8 text$/);
  });
});

Deno.test("the bundle refuses a FIFO as -configuration-file instead of waiting for a writer", async () => {
  await withTempDir(async (dir) => {
    const fifo = `${dir}/fifo.yaml`;
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.equal(made.code, 0);
    // In a child process with a deadline: a regression would block in open() forever.
    const output = await new Deno.Command(Deno.execPath(), {
      args: [...RUN_FLAGS, BUNDLE, `-configuration-file=${fifo}`],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(CHILD_DEADLINE_MS),
    }).output();
    assert.equal(output.code, 2);
    assert.match(
      new TextDecoder().decode(output.stderr),
      /^failed to read sidecar configuration from file: ".*fifo.yaml": not a regular file\n/,
    );
  });
});

Deno.test("an int setting comes from the flag, else YAML, else the environment, else the default", () => {
  const name = "mooncake-bootstrap-port";
  const variables = { MOONCAKE_BOOTSTRAP_PORT: "9100" };
  const file = `{${name}: 9200}`;
  const cases: [string[], Env, [number, SettingSource]][] = [
    [[], {}, [8998, byDefault]],
    [[], variables, [9100, env("MOONCAKE_BOOTSTRAP_PORT")]],
    [[`-configuration=${file}`], variables, [9200, yaml(name)]],
    [[`-configuration=${file}`, `-${name}=9300`], variables, [
      9300,
      flag(name),
    ]],
    [[`-${name}=9300`, `-configuration=${file}`], {}, [9300, flag(name)]],
  ];
  for (const [args, variablesGiven, expected] of cases) {
    assert.deepEqual(
      setting(resolve(args, variablesGiven), "mooncakeBootstrapPort"),
      expected,
      args.join(" "),
    );
  }
});

Deno.test("a bool setting comes from the flag, else YAML (false included), else the environment", () => {
  const name = "enable-prefiller-sampling";
  const variables = { ENABLE_PREFILLER_SAMPLING: "true" };
  const cases: [string[], Env, [boolean, SettingSource]][] = [
    [[], {}, [false, byDefault]],
    [[], variables, [true, env("ENABLE_PREFILLER_SAMPLING")]],
    [[`-configuration=${name}: false`], variables, [false, yaml(name)]],
    [[`-configuration=${name}: on`], {}, [true, yaml(name)]],
    [[`-configuration=${name}: false`, `-${name}`], variables, [
      true,
      flag(name),
    ]],
    [[`-configuration=${name}: true`, `-${name}=false`], variables, [
      false,
      flag(name),
    ]],
  ];
  for (const [args, variablesGiven, expected] of cases) {
    assert.deepEqual(
      setting(resolve(args, variablesGiven), "enablePrefillerSampling"),
      expected,
      args.join(" "),
    );
  }
});

Deno.test("string settings come from the flag, else YAML, else the default", () => {
  const file = "{kv-connector: sglang, listen-host: 127.0.0.1, port: 9000}";
  const fromYaml = resolve([`-configuration=${file}`]);
  assert.deepEqual(setting(fromYaml, "connector"), [
    "sglang",
    yaml("kv-connector"),
  ]);
  assert.deepEqual(setting(fromYaml, "listenHost"), [
    "127.0.0.1",
    yaml("listen-host"),
  ]);
  assert.deepEqual(setting(fromYaml, "port"), [9000, yaml("port")]);
  const fromFlags = resolve([
    `-configuration=${file}`,
    "-kv-connector=mooncake",
    "-listen-host=::1",
    "-port=9001",
  ]);
  assert.deepEqual(setting(fromFlags, "connector"), [
    "mooncake",
    flag("kv-connector"),
  ]);
  assert.deepEqual(setting(fromFlags, "listenHost"), [
    "::1",
    flag("listen-host"),
  ]);
  assert.deepEqual(setting(fromFlags, "port"), [9001, flag("port")]);
  assert.deepEqual(setting(resolve([]), "connector"), ["nixlv2", byDefault]);
});

Deno.test("a list setting comes from the flag, else YAML; repeated flags still append", () => {
  const specs = { "enable-tls": "list", "decoder-use-tls": "bool" } as const;
  const yamlValues = {
    "enable-tls": ["prefiller"],
    "decoder-use-tls": true,
  };
  const fromYaml = layerValues(parseFlags([], specs), yamlValues);
  assert.deepEqual(fromYaml.values["enable-tls"], ["prefiller"]);
  assert.equal(fromYaml.given["enable-tls"], "yaml");
  const fromFlag = layerValues(
    parseFlags(["-enable-tls=decoder", "-enable-tls", "encoder"], specs),
    yamlValues,
  );
  assert.deepEqual(fromFlag.values["enable-tls"], ["decoder", "encoder"]);
  assert.equal(fromFlag.given["enable-tls"], "flag");
  // Go: YAML prefiller-use-tls applies only if neither it nor --enable-tls is on the command line.
  assert.equal(fromFlag.values["decoder-use-tls"], undefined);
  assert.equal(fromYaml.values["decoder-use-tls"], true);
});

Deno.test("the model-server port follows NEXT's order: flags, then YAML, new name before old", () => {
  const cases: [string[], [number, SettingSource]][] = [
    [["-configuration={vllm-port: 8300}"], [8300, yaml("vllm-port")]],
    [["-configuration={model-server-port: 8400, vllm-port: 8300}"], [
      8400,
      yaml("model-server-port"),
    ]],
    [["-configuration={model-server-port: 8400}", "-vllm-port=8500"], [
      8500,
      flag("vllm-port"),
    ]],
    [["-configuration={vllm-port: 8300}", "-model-server-port=8600"], [
      8600,
      flag("model-server-port"),
    ]],
  ];
  for (const [args, expected] of cases) {
    assert.deepEqual(
      setting(resolve(args), "modelServerPort"),
      expected,
      args.join(" "),
    );
  }
  assert.deepEqual(
    resolve(["-configuration={model-server-port: 8400, vllm-port: 8300}"])
      .warnings,
    [
      'Configuration key "vllm-port" is deprecated, use "model-server-port" instead',
      'Configuration key "vllm-port" is ignored because "model-server-port" is set',
    ],
  );
  assert.deepEqual(
    resolve(["-configuration={vllm-port: 8300}", "-model-server-port=8600"])
      .warnings,
    [],
  );
});

Deno.test("an explicit deprecated -connector beats YAML kv-connector", () => {
  const resolved = resolve([
    "-configuration={kv-connector: sglang}",
    "-connector=mooncake",
  ]);
  assert.deepEqual(setting(resolved, "connector"), [
    "mooncake",
    flag("connector"),
  ]);
  assert.deepEqual(
    setting(resolve(["-configuration={connector: sglang}"]), "connector"),
    ["sglang", yaml("connector")],
  );
});

Deno.test("YAML zero values apply and are validated as the flags are, naming the key", () => {
  const cases: [string, 1 | 2, string][] = [
    [
      "port: 0",
      2,
      '--port start port 0 is out of valid range [1, 65535] (from configuration key "port")',
    ],
    [
      "data-parallel-size: 0",
      2,
      '--data-parallel-size must be a positive integer, got 0 (from configuration key "data-parallel-size")',
    ],
    [
      "vllm-port: 0",
      2,
      '--model-server-port start port 0 is out of valid range [1, 65535] (from configuration key "vllm-port")',
    ],
    [
      "mooncake-bootstrap-port: 0",
      2,
      '--mooncake-bootstrap-port must be between 1 and 65535, got 0 (from configuration key "mooncake-bootstrap-port")',
    ],
    [
      "{enable-p2p-pull: true, kv-connector: sglang}",
      1,
      '--enable-p2p-pull requires --kv-connector=nixlv2 (got "sglang") (from configuration key "enable-p2p-pull")',
    ],
    [
      "workers: 0",
      2,
      'Invalid value "0" for flag "-workers": expected a number from 1 to 64 (from configuration key "workers")',
    ],
  ];
  for (const [text, exitCode, message] of cases) {
    const error = errorOf([`-configuration=${text}`]);
    assert.deepEqual([error.exitCode, error.message], [exitCode, message]);
  }
  assert.equal(
    errorOf(["-port=0"]).message,
    "--port start port 0 is out of valid range [1, 65535]",
  );
  const empty = resolve(["-configuration=kv-connector: ''"]);
  assert.deepEqual(setting(empty, "connector"), ["nixlv2", byDefault]);
  assert.deepEqual(empty.warnings, [
    'Configuration key "kv-connector" is empty: using "nixlv2"',
  ]);
});

Deno.test("warnings name the YAML key that caused them", () => {
  const resolved = resolve([
    "-configuration={mooncake-bootstrap-port: 9000, connector: nixlv2, " +
    "secure-proxy: false, cert-path: /tls}",
  ]);
  assert.deepEqual(resolved.warnings, [
    'Configuration key "connector" is deprecated, use "kv-connector" instead',
    'Configuration key "mooncake-bootstrap-port" has no effect without -kv-connector=mooncake',
    'Configuration key "cert-path" has no effect with "secure-proxy: false"',
  ]);
});

Deno.test("-configuration and -configuration-file together are refused with exit 1", () => {
  const error = errorOf(
    [
      "-configuration=port: 9000",
      "-configuration-file=/etc/sidecar.yaml",
    ],
    {},
    { readFile: () => assert.fail("must not read") },
  );
  assert.deepEqual([error.exitCode, error.message], [
    1,
    "flags --configuration and --configuration-file are mutually exclusive",
  ]);
});

Deno.test("an empty -configuration or -configuration-file counts as not given, as in Go", () => {
  const read: string[] = [];
  const readFile = (path: string) => {
    read.push(path);
    return "port: 9000";
  };
  const resolved = resolve(
    ["-configuration=", "-configuration-file", "/etc/sidecar.yaml"],
    {},
    { readFile },
  );
  assert.deepEqual(read, ["/etc/sidecar.yaml"]);
  assert.deepEqual(setting(resolved, "port"), [9000, yaml("port")]);
  assert.deepEqual(
    setting(
      resolve(["-configuration-file="], {}, {
        readFile: () => assert.fail("must not read"),
      }),
      "port",
    ),
    [8000, byDefault],
  );
});

Deno.test("YAML errors through parseCommandLine exit 2 and name the configuration flag", () => {
  const inline = errorOf(["-configuration={port: nine}"]);
  assert.equal(inline.exitCode, 2);
  assert.equal(inline.flag, "configuration");
  assert.match(inline.message, /^failed to unmarshal sidecar configuration: /);
  const file = errorOf(["-configuration-file=/x.yaml"], {}, {
    readFile: () => "port: 9000\nbogus: true\n",
  });
  assert.deepEqual([file.exitCode, file.flag, file.message], [
    2,
    "configuration-file",
    'failed to unmarshal sidecar configuration: line 2: unknown key "bogus"',
  ]);
});

Deno.test("-help wins over a configuration, which is then not read", () => {
  const result = parseCommandLine(
    ["-configuration-file=/x.yaml", "-help"],
    {},
    {
      readFile: () => assert.fail("must not read"),
    },
  );
  assert.equal(result.kind, "help");
});

Deno.test("-print-config prints every setting with its value and source", () => {
  const result = parseCommandLine(
    [
      "-configuration={port: 9100, vllm-port: 8300, secure-proxy: false, ec-connector: ec-nixl, prefill-retry-backoff: 1s}",
      "-kv-connector=sglang",
      "-decode-chunk-size=16",
      "-zap-log-level=debug",
      "-prefill-timeout=90s",
      "-print-config",
    ],
    { POD_IP: "10.0.0.7", P2P_CONNECTOR_PORT: "7300" },
  );
  assert.equal(result.kind, "print-config");
  assert.equal(
    result.kind === "print-config" ? result.text : "",
    [
      "SETTING                    VALUE       SOURCE",
      "port                       9100        yaml",
      'listen-host                "::"        default',
      "model-server-port          8300        yaml vllm-port",
      'kv-connector               "sglang"    flag',
      "data-parallel-size         1           default",
      'POD_IP                     "10.0.0.7"  env',
      "enable-p2p-pull            false       default",
      "p2p-connector-port         7300        env P2P_CONNECTOR_PORT",
      "mooncake-bootstrap-port    8998        default",
      "SGLANG_BOOTSTRAP_PORT      8998        default",
      "secure-proxy               false       yaml",
      'cert-path                  ""          default',
      "enable-prefiller-sampling  false       default",
      "v                          1           flag -zap-log-level",
      "workers                    1           default",
      "metrics-port               9090        default",
      "tracing                    false       default",
      "watch-client-connections   false       default",
      'ec-connector               "ec-nixl"   yaml',
      "decode-chunk-size          16          flag",
      "enable-ssrf-protection     false       default",
      "inference-pool             null        default",
      "allowed-prefillers         []          default",
      "allowlist-sync-timeout-ms  30000       default",
      "enable-tls                 []          default",
      "tls-insecure-skip-verify   []          default",
      'ca-cert                    ""          default',
      "max-request-body-bytes     33554432    default",
      "max-connections            0           default",
      "max-idle-conns-per-host    1024        default",
      "max-client-resets          100         default",
      "connect-timeout            5s          default",
      "prefill-timeout            1m30s       flag",
      "encoder-timeout            5m0s        default",
      "decode-first-byte-timeout  0s          default",
      "stream-idle-timeout        0s          default",
      "client-body-timeout        1m0s        default",
      "prefill-max-retries        0           default",
      "prefill-retry-backoff      1s          yaml",
      'prefill-failure-policy     "fail"      default',
      "shutdown-grace             1m0s        default",
      "shutdown-drain-delay       5s          default",
      "",
    ].join("\n"),
  );
});

Deno.test("-print-config validates the configuration first, and =false runs", () => {
  assert.equal(
    errorOf(["-print-config", "-configuration=port: 0"]).exitCode,
    2,
  );
  assert.equal(parseCommandLine(["-print-config=false"], {}).kind, "run");
});

Deno.test("the bundle prints the configuration of a -configuration-file and exits 0", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sidecar.yaml`;
    await Deno.writeTextFile(
      path,
      "# sidecar\nport: 9100\nmodel-server-port: 8300\nvllm-port: 8200\n",
    );
    const { code, stdout, stderr } = await runBundle([
      `-configuration-file=${path}`,
      "-print-config",
      "-port=9200",
    ], { env: { MOONCAKE_BOOTSTRAP_PORT: "9300" } });
    assert.equal(code, 0, stderr);
    const rows = new Map(
      stdout.trim().split("\n").map((line) => {
        const [name, ...rest] = line.split(/ {2,}/);
        return [name ?? "", rest];
      }),
    );
    assert.deepEqual(rows.get("port"), ["9200", "flag"]);
    assert.deepEqual(rows.get("model-server-port"), ["8300", "yaml"]);
    assert.deepEqual(rows.get("mooncake-bootstrap-port"), [
      "9300",
      "env MOONCAKE_BOOTSTRAP_PORT",
    ]);
    assert.deepEqual(rows.get("workers"), ["1", "default"]);
    assert.equal(
      stderr,
      'Warning: Configuration key "vllm-port" is deprecated, use "model-server-port" instead\n' +
        'Warning: Configuration key "vllm-port" is ignored because "model-server-port" is set\n',
    );
  });
});

Deno.test("the bundle serves with the ports and listener of its -configuration-file", async () => {
  await using decode = await createMockVllm({ name: "decoder" });
  await withTempDir(async (dir) => {
    const port = freePort();
    const path = `${dir}/sidecar.yaml`;
    await Deno.writeTextFile(
      path,
      [
        `port: ${port}`,
        `model-server-port: ${decode.port}`,
        "listen-host: 127.0.0.1",
        "secure-proxy: false",
        "kv-connector: nixlv2",
        "",
      ].join("\n"),
    );
    await using sidecar = startBundle([`-configuration-file=${path}`]);
    const logged = await sidecar.waitForLine((line) =>
      line.msg === "Proxy configuration"
    );
    const config = logged.config as Record<string, unknown>;
    assert.deepEqual(
      [config.port, config.model_server_port, config.secure_proxy],
      [port, decode.port, false],
    );
    await sidecar.waitForLine((line) => line.msg === "starting");
    const response = await fetch(`http://127.0.0.1:${port}/v1/models`, {
      signal: AbortSignal.timeout(CHILD_DEADLINE_MS),
    });
    assert.equal(response.status, 200);
    assert.equal((await response.json()).object, "list");
  });
});

Deno.test("the bundle exits 2 with the Go message on a bad -configuration-file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sidecar.yaml`;
    await Deno.writeTextFile(path, "port: 9000\nport: 9001\n");
    const { code, stderr } = await runBundle([`-configuration-file=${path}`]);
    assert.equal(code, 2);
    assert.equal(
      stderr,
      'failed to unmarshal sidecar configuration: line 2: key "port" is given twice, first at line 1\n' +
        'Run "llm-d-routing-sidecar -help" for usage.\n',
    );
  });
});
