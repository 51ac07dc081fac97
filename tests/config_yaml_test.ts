import assert from "node:assert/strict";
import { ConfigError } from "../src/config_error.ts";
import {
  MAX_CONFIGURATION_BYTES,
  parseConfigurationYaml,
  YAML_KEYS,
  type YamlKind,
  type YamlValues,
} from "../src/config_yaml.ts";
import { type FlagEntry, lookupFlag } from "../src/flag_table.ts";

const PREFIX = "failed to unmarshal sidecar configuration: ";

function parse(text: string): YamlValues {
  return parseConfigurationYaml(text, { flag: "configuration" });
}

/** Treats every flag as supported, to reach the keys whose flags are not built yet. */
function parseAllSupported(text: string): YamlValues {
  return parseConfigurationYaml(text, {
    flag: "configuration",
    lookup: (name) => {
      const entry = lookupFlag(name);
      return entry && { ...entry, status: "supported" } satisfies FlagEntry;
    },
  });
}

function errorOf(text: string, parser = parse): ConfigError {
  try {
    parser(text);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error;
  }
  assert.fail(`expected ${JSON.stringify(text.slice(0, 80))} to be refused`);
}

function messageOf(text: string, parser = parse): string {
  const error = errorOf(text, parser);
  assert.equal(error.exitCode, 2);
  assert.ok(error.message.startsWith(PREFIX), error.message);
  return error.message.slice(PREFIX.length);
}

const SAMPLES: Readonly<Record<YamlKind, [string, unknown]>> = {
  int: ["9001", 9001],
  bool: ["false", false],
  string: ["shared-storage", "shared-storage"],
  list: ["[prefiller, decoder]", ["prefiller", "decoder"]],
};

const YAML_ENTRIES = Object.entries(YAML_KEYS) as [
  string,
  { readonly kind: YamlKind },
][];

Deno.test("YAML_KEYS holds every key of both Go sidecars, plus this sidecar's own", () => {
  const latest = [
    "port",
    "vllm-port",
    "data-parallel-size",
    "kv-connector",
    "connector",
    "ec-connector",
    "enable-ssrf-protection",
    "enable-prefiller-sampling",
    "secure-proxy",
    "cert-path",
    "enable-tls",
    "tls-insecure-skip-verify",
    "prefiller-use-tls",
    "decoder-use-tls",
    "prefiller-tls-insecure-skip-verify",
    "decoder-tls-insecure-skip-verify",
    "inference-pool",
    "pool-group",
    "max-idle-conns-per-host",
    "decode-chunk-size",
  ];
  const next = [
    "model-server-port",
    "mooncake-bootstrap-port",
    "p2p-connector-port",
    "enable-p2p-pull",
    "prefill-max-retries",
    "prefill-retry-backoff",
    "tracing",
    "metrics-port",
  ];
  assert.deepEqual(
    Object.keys(YAML_KEYS).sort(),
    [...latest, ...next, ...OWN_KEYS].sort(),
  );
});

/** Keys only this sidecar has. */
const OWN_KEYS = [
  "listen-host",
  "workers",
  "max-request-body-bytes",
  "max-connections",
  "max-client-resets",
  "watch-client-connections",
  "prefill-failure-policy",
  "connect-timeout",
  "prefill-timeout",
  "encoder-timeout",
  "decode-first-byte-timeout",
  "stream-idle-timeout",
  "client-body-timeout",
  "shutdown-grace",
  "shutdown-drain-delay",
];

Deno.test("every YAML key has a flag of a matching kind", () => {
  for (const [name, key] of YAML_ENTRIES) {
    const flag = lookupFlag(name);
    assert.ok(flag, name);
    // Go's YAML struct types the string port flags as ints.
    const expected = key.kind === "int" && flag.kind === "string"
      ? ["port", "vllm-port", "model-server-port"].includes(name)
      : key.kind === flag.kind;
    assert.ok(expected, `${name}: YAML ${key.kind}, flag ${flag.kind}`);
  }
});

Deno.test("a YAML key yields only to flags of the table, and each pair yields both ways", () => {
  for (const [name, key] of Object.entries(YAML_KEYS)) {
    for (const other of key.yieldsTo ?? []) {
      assert.ok(lookupFlag(other), `${name} yields to unknown "${other}"`);
      const back = YAML_KEYS[other]?.yieldsTo;
      if (back !== undefined) {
        assert.ok(back.includes(name), `${other} -> ${name}`);
      }
    }
  }
});

Deno.test("parseConfigurationYaml accepts each supported key with its type", () => {
  let supported = 0;
  for (const [name, { kind }] of YAML_ENTRIES) {
    if (lookupFlag(name)?.status !== "supported") continue;
    supported++;
    const [text, expected] = SAMPLES[kind];
    const value = lookupFlag(name)?.kind === "string" && kind === "int"
      ? String(expected)
      : expected;
    assert.deepEqual(parse(`${name}: ${text}`), { [name]: value }, name);
  }
  assert.ok(supported >= 14, `only ${supported} supported keys`);
});

Deno.test("parseConfigurationYaml turns the int port keys into the string port flags' text", () => {
  assert.deepEqual(
    parse("port: 9000\nvllm-port: 8200\nmodel-server-port: 8300"),
    {
      "port": "9000",
      "vllm-port": "8200",
      "model-server-port": "8300",
    },
  );
});

/** Parses as if the flag of `notYet` were not supported yet (every key's flag is supported today). */
function parseWithNotYet(notYet: string): (text: string) => YamlValues {
  return (text) =>
    parseConfigurationYaml(text, {
      flag: "configuration",
      lookup: (name) => {
        const entry = lookupFlag(name);
        return entry && name === notYet
          ? { ...entry, status: "not-yet" } satisfies FlagEntry
          : entry;
      },
    });
}

Deno.test("parseConfigurationYaml refuses a key whose flag is not supported yet, naming it", () => {
  for (const [name, { kind }] of YAML_ENTRIES) {
    if (lookupFlag(name)?.status !== "supported") continue;
    for (const value of [SAMPLES[kind][0], "", "null"]) {
      const error = errorOf(
        `# comment\n${name}: ${value}`,
        parseWithNotYet(name),
      );
      assert.equal(error.exitCode, 2);
      assert.equal(error.flag, "configuration");
      assert.equal(
        error.message,
        `${PREFIX}line 2: key "${name}" is not supported yet by this sidecar`,
      );
    }
  }
});

Deno.test("parseConfigurationYaml accepts the not-yet keys' types once their flags are supported", () => {
  for (const [name, { kind }] of YAML_ENTRIES) {
    const [text, expected] = SAMPLES[kind];
    const value = lookupFlag(name)?.kind === "string" && kind === "int"
      ? String(expected)
      : expected;
    assert.deepEqual(parseAllSupported(`${name}: ${text}`), {
      [name]: value,
    });
  }
});

Deno.test("parseConfigurationYaml refuses an unknown key, naming it and its line", () => {
  assert.equal(
    messageOf("port: 9000\nbogus: 1\n"),
    'line 2: unknown key "bogus"',
  );
  assert.equal(
    messageOf("Port: 9000"),
    'line 1: unknown key "Port"; did you mean "port"?',
  );
  assert.equal(
    messageOf("{kv_connector: nixlv2}"),
    'line 1: unknown key "kv_connector"; did you mean "kv-connector"?',
  );
  assert.equal(
    messageOf("zap-log-level: debug"),
    'line 1: unknown key "zap-log-level": "-zap-log-level" is a command-line flag only',
  );
  assert.equal(
    messageOf("print-config: true"),
    'line 1: unknown key "print-config": "-print-config" is a command-line flag only',
  );
  assert.equal(messageOf("<<: {port: 1}"), 'line 1: unknown key "<<"');
  assert.equal(messageOf("1: 2"), 'line 1: unknown key "1"');
  assert.equal(messageOf("? [a]\n: 1"), "line 1: keys must be plain strings");
});

Deno.test("parseConfigurationYaml reads YAML 1.1 booleans, as the Go sidecar's parser does", () => {
  const cases: [string, boolean][] = [
    ["yes", true],
    ["no", false],
    ["on", true],
    ["off", false],
    ["True", true],
    ["FALSE", false],
    ["y", true],
  ];
  for (const [text, expected] of cases) {
    assert.deepEqual(parse(`secure-proxy: ${text}`), {
      "secure-proxy": expected,
    }, text);
  }
});

Deno.test("parseConfigurationYaml refuses values of the wrong type, naming the key", () => {
  const cases: [string, string][] = [
    ['port: "8000"', 'key "port": expected an integer, got string "8000"'],
    ["workers: 1.5", 'key "workers": expected an integer, got number 1.5'],
    [
      "data-parallel-size: 99999999999999999999",
      'key "data-parallel-size": expected an integer, got number 100000000000000000000',
    ],
    ["secure-proxy: 1", 'key "secure-proxy": expected a boolean, got number 1'],
    [
      'secure-proxy: "true"',
      'key "secure-proxy": expected a boolean, got string "true"',
    ],
    ["cert-path: [a]", 'key "cert-path": expected a string, got a list'],
    ["cert-path: {a: b}", 'key "cert-path": expected a string, got a mapping'],
    ["port: [1]", 'key "port": expected an integer, got a list'],
    [
      "port: 2001-12-14",
      'key "port": expected an integer, got timestamp 2001-12-14T00:00:00.000Z',
    ],
    ["port: !!binary aGk=", 'key "port": expected an integer, got binary data'],
  ];
  for (const [text, detail] of cases) {
    assert.equal(messageOf(text), `line 1: ${detail}`, text);
  }
});

Deno.test("parseConfigurationYaml keeps a string key's scalar as written", () => {
  assert.deepEqual(
    parse("cert-path: 1.10\nlisten-host: yes\nkv-connector: 'sglang'"),
    { "cert-path": "1.10", "listen-host": "yes", "kv-connector": "sglang" },
  );
  assert.deepEqual(parse('cert-path: ""'), { "cert-path": "" });
});

Deno.test("parseConfigurationYaml leaves a key with a null value unset, as Go does", () => {
  for (const text of ["port:", "port: ~", "port: null", "{port: }"]) {
    assert.deepEqual(parse(text), {}, text);
  }
});

Deno.test("parseConfigurationYaml applies zero values: port 0, false, empty string", () => {
  assert.deepEqual(
    parse(
      "port: 0\nsecure-proxy: false\nkv-connector: ''\ndata-parallel-size: 0",
    ),
    {
      "port": "0",
      "secure-proxy": false,
      "kv-connector": "",
      "data-parallel-size": 0,
    },
  );
});

Deno.test("parseConfigurationYaml reads an empty, comment-only or null document as no settings", () => {
  for (const text of ["", "\n\n", "# nothing here\n", "null", "~", "---\n"]) {
    assert.deepEqual(parse(text), {}, JSON.stringify(text));
  }
});

Deno.test("parseConfigurationYaml refuses a top level that is not a mapping", () => {
  const cases: [string, string][] = [
    ["- port: 1", "a list"],
    ["hello", 'string "hello"'],
    ["8000", "number 8000"],
    ["true", "boolean true"],
  ];
  for (const [text, got] of cases) {
    assert.equal(
      messageOf(text),
      `the configuration must be a mapping of keys to values, got ${got}`,
    );
  }
});

Deno.test("parseConfigurationYaml refuses a key given twice, naming both lines", () => {
  assert.equal(
    messageOf("port: 1\nworkers: 2\nport: 2"),
    'line 3: key "port" is given twice, first at line 1',
  );
  assert.equal(
    messageOf("{port: 1, port: 1}"),
    'line 1: key "port" is given twice, first at line 1',
  );
});

Deno.test("parseConfigurationYaml refuses broken YAML with the parser's message and line", () => {
  assert.match(
    messageOf("{port: 8200, vllm-port: 'sh'"),
    /^line 1: Flow map must end with a \}/,
  );
  assert.match(
    messageOf("port: 1\nworkers: 'open"),
    /^line 2: Missing closing 'quote/,
  );
  assert.match(messageOf("port: 1\n---\nport: 2"), /multiple documents/);
  assert.match(messageOf("port: !custom 1"), /Unresolved tag: !custom/);
});

Deno.test("parseConfigurationYaml resolves an alias to a scalar and refuses a dangling one", () => {
  assert.deepEqual(
    parse("mooncake-bootstrap-port: &p 9000\np2p-connector-port: *p"),
    { "mooncake-bootstrap-port": 9000, "p2p-connector-port": 9000 },
  );
  assert.match(messageOf("port: *nowhere"), /^line 1: key "port": .*nowhere/);
});

Deno.test("parseConfigurationYaml refuses a configuration over 64 KiB before parsing it", () => {
  const text = `cert-path: "${"x".repeat(MAX_CONFIGURATION_BYTES)}"`;
  assert.equal(
    messageOf(text),
    `the configuration is ${text.length} bytes, more than the 65536 allowed`,
  );
  // Counted in UTF-8 bytes, not UTF-16 code units.
  const wide = `cert-path: "${"é".repeat(MAX_CONFIGURATION_BYTES / 2)}"`;
  assert.match(messageOf(wide), /more than the 65536 allowed$/);
});

Deno.test("parseConfigurationYaml refuses deep nesting before the recursive parser sees it", () => {
  // Each within the 64 KiB cap, where the parser alone would take seconds.
  const cases = [
    `port: ${"[".repeat(30_000)}${"]".repeat(30_000)}`,
    `port: ${"{a: ".repeat(10_000)}1${"}".repeat(10_000)}`,
    "- ".repeat(30_000),
    "? ".repeat(30_000),
    `\n\nport: [[[[[[[[[[1]]]]]]]]]]`,
  ];
  for (const text of cases) {
    assert.match(
      messageOf(text),
      /^line \d+: nested deeper than 8 levels$/,
      text.slice(0, 20),
    );
  }
  assert.equal(
    messageOf(`\n\nport: [[[[[[[[[[1]]]]]]]]]]`),
    "line 3: nested deeper than 8 levels",
  );
});

Deno.test("parseConfigurationYaml refuses more than 16 expansions of one anchor, the library's limit", () => {
  const aliases = (count: number) => Array(count).fill("*a").join(", ");
  const text = (count: number) =>
    `enable-tls: &a [prefiller]\ntls-insecure-skip-verify: [${aliases(count)}]`;
  assert.match(
    messageOf(text(17), parseAllSupported),
    /^line 2: key "tls-insecure-skip-verify": Excessive alias count/,
  );
  assert.match(
    messageOf(text(4), parseAllSupported),
    /^line 2: key "tls-insecure-skip-verify": item 1: expected a string, got a list$/,
  );
});

Deno.test("parseConfigurationYaml refuses an alias bomb under unknown keys without expanding it", () => {
  const layers = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
  for (let index = 1; index < 12; index++) {
    const name = String.fromCharCode(97 + index);
    const previous = String.fromCharCode(96 + index);
    layers.push(
      `${name}: &${name} [${Array(9).fill(`*${previous}`).join(", ")}]`,
    );
  }
  assert.equal(messageOf(layers.join("\n")), 'line 1: unknown key "a"');
});

Deno.test("parseConfigurationYaml reads list keys as sequences of strings", () => {
  assert.deepEqual(
    parseAllSupported(
      "enable-tls:\n  - prefiller\n  - decoder\ntls-insecure-skip-verify: []",
    ),
    { "enable-tls": ["prefiller", "decoder"], "tls-insecure-skip-verify": [] },
  );
  assert.deepEqual(parseAllSupported("enable-tls: [1.10, yes]"), {
    "enable-tls": ["1.10", "yes"],
  });
  const cases: [string, string][] = [
    [
      "enable-tls: prefiller,decoder",
      'key "enable-tls": expected a list of strings such as [a, b], got string "prefiller,decoder"',
    ],
    [
      "enable-tls: [prefiller, [decoder]]",
      'key "enable-tls": item 2: expected a string, got a list',
    ],
    [
      "enable-tls: [prefiller, ~]",
      'key "enable-tls": item 2: expected a string, got null',
    ],
    [
      `enable-tls: [${Array(33).fill("x").join(", ")}]`,
      'key "enable-tls": expected at most 32 items, got 33',
    ],
  ];
  for (const [text, detail] of cases) {
    assert.equal(messageOf(text, parseAllSupported), `line 1: ${detail}`);
  }
});

Deno.test("parseConfigurationYaml names the flag its text came from", () => {
  const error = (() => {
    try {
      parseConfigurationYaml("bogus: 1", { flag: "configuration-file" });
    } catch (error) {
      return error;
    }
  })();
  assert.ok(error instanceof ConfigError);
  assert.equal(error.flag, "configuration-file");
});
