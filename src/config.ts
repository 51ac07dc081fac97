/**
 * @module The sidecar's command line: one flag table (Go spellings), the resolved
 * {@linkcode Config}, usage text and validation. Pure: `main.ts` passes `Deno.args` and the
 * environment, prints and exits.
 */

import {
  FlagError,
  type FlagKind,
  type ParsedFlags,
  parseFlags,
  parseGoBool,
} from "./flags.ts";

/** P/D connector names accepted by `-kv-connector` (Go spellings). */
export const CONNECTOR_NAMES = [
  "nixlv2",
  "nixl",
  "lmcache",
  "sglang",
  "shared-storage",
] as const;

/** One of {@linkcode CONNECTOR_NAMES}. */
export type ConnectorName = typeof CONNECTOR_NAMES[number];

/** Resolved sidecar configuration; read-only once parsed. */
export interface Config {
  /** `-port`: the port the sidecar listens on, 1..65535. */
  readonly port: number;
  /** `-listen-host` (not in the Go sidecar): "::" means all interfaces, like Go's ":port". */
  readonly listenHost: string;
  /** `-vllm-port`: the local vLLM (decoder) port. */
  readonly vllmPort: number;
  /** `-kv-connector`, or the deprecated `-connector` when `-kv-connector` is empty. */
  readonly connector: ConnectorName;
  /** `-secure-proxy`: serve TLS on the sidecar's listener. */
  readonly secureProxy: boolean;
  /** `-cert-path`: directory holding tls.crt and tls.key; "" means self-signed at start. */
  readonly certPath: string;
  /** `-enable-prefiller-sampling`, else env ENABLE_PREFILLER_SAMPLING: random prefill target. */
  readonly enablePrefillerSampling: boolean;
  /** `-v` or `-zap-log-level`: 0 info, 1 debug, -1 error, -2 panic; routing at 4, bodies at 5. */
  readonly verbosity: number;
}

/** Options for {@linkcode ConfigError}. */
export interface ConfigErrorOptions {
  /** 2: unknown flag, bad value or syntax; 1: values that parse but make no sense together. */
  readonly exitCode: 1 | 2;
  /** Flag name without dashes. */
  readonly flag?: string | undefined;
  readonly cause?: unknown;
}

/** A command line the sidecar cannot run with; `main.ts` prints the message and exits. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly exitCode: 1 | 2;
  readonly flag?: string;

  constructor(message: string, options: ConfigErrorOptions) {
    super(
      message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.exitCode = options.exitCode;
    if (options.flag !== undefined) this.flag = options.flag;
  }
}

/** What the command line asks for: print usage, or run with a config. */
export type CommandLine =
  | { readonly kind: "help"; readonly usage: string }
  | {
    readonly kind: "run";
    readonly config: Config;
    /** Messages for the start-up log: deprecated or ineffective flags. */
    readonly warnings: readonly string[];
  };

/** Environment variable read when `-enable-prefiller-sampling` is not given (as the Go sidecar). */
export const PREFILLER_SAMPLING_ENV = "ENABLE_PREFILLER_SAMPLING";

const DEFAULT_PROGRAM = "llm-d-routing-sidecar";
const DEFAULT_CONNECTOR: ConnectorName = "nixlv2";
const LOGGING_NOTE = "this sidecar always logs JSON lines to stderr";

/**
 * - supported: parsed and used.
 * - no-effect: klog/zap output plumbing that did nothing useful in Go either; parsed, warned.
 * - not-yet: a feature of the Go sidecar not built here yet; rejected (exit 2), never ignored.
 * - unsupported: klog log files and per-file filters, which we cannot honour; rejected (exit 2).
 */
type FlagStatus = "supported" | "no-effect" | "not-yet" | "unsupported";

interface FlagEntry {
  readonly kind: FlagKind;
  readonly status: FlagStatus;
  readonly help: string;
  /** Shown in the usage text; omitted for zero values, like Go's PrintDefaults. */
  readonly default?: string | number | boolean;
  /** Accepted values of an enumerated string flag. */
  readonly choices?: readonly string[];
}

const CONNECTOR_LIST = CONNECTOR_NAMES.join(", ");

/**
 * Every flag of the Go sidecars (ORIG llm-d-routing-sidecar and LATEST pd-sidecar). Supporting a
 * "not-yet" flag means changing its status here and reading its value in parseCommandLine.
 * Help strings are adapted from the Go sources.
 */
const FLAGS = {
  "port": {
    kind: "string",
    status: "supported",
    default: "8000",
    help: "the port the sidecar is listening on",
  },
  "listen-host": {
    kind: "string",
    status: "supported",
    default: "::",
    help:
      'the address the sidecar listens on; "::" is all interfaces, IPv4 and IPv6 ' +
      "(not in the Go sidecar)",
  },
  "vllm-port": {
    kind: "string",
    status: "supported",
    default: "8001",
    help: "the port vLLM is listening on",
  },
  "kv-connector": {
    kind: "string",
    status: "supported",
    default: DEFAULT_CONNECTOR,
    help:
      `the KV protocol between prefiller and decoder. Supported: ${CONNECTOR_LIST}`,
  },
  "connector": {
    kind: "string",
    status: "supported",
    help:
      "Deprecated: use -kv-connector instead. The P/D connector being used. " +
      `Supported: ${CONNECTOR_LIST}`,
  },
  "secure-proxy": {
    kind: "bool",
    status: "supported",
    default: true,
    help: "Enables secure proxy (TLS on the sidecar's listener)",
  },
  "cert-path": {
    kind: "string",
    status: "supported",
    help:
      "The path to the certificate for secure proxy. The certificate and private key files " +
      "are assumed to be named tls.crt and tls.key, respectively. If not set, and secure-proxy " +
      "is enabled, then a self-signed certificate is used (for testing).",
  },
  "enable-prefiller-sampling": {
    kind: "bool",
    status: "supported",
    help:
      "if true, the target prefill instance will be selected randomly from among the " +
      `provided prefill host values (defaults to ${PREFILLER_SAMPLING_ENV} env var)`,
  },
  "v": {
    kind: "int",
    status: "supported",
    help:
      "number for the log level verbosity (routing decisions at 4, request bodies at 5)",
  },
  "zap-log-level": {
    kind: "string",
    status: "supported",
    default: "info",
    help:
      "Zap Level to configure the verbosity of logging. Can be one of 'debug', 'info', " +
      "'error', 'panic' or any integer value > 0 which corresponds to custom debug levels " +
      "of increasing verbosity",
  },
  "h": { kind: "bool", status: "supported", help: "show this help and exit" },
  "help": {
    kind: "bool",
    status: "supported",
    help: "show this help and exit",
  },

  "zap-encoder": {
    kind: "string",
    status: "no-effect",
    choices: ["json", "console"],
    help: "Zap log encoding",
  },
  "zap-time-encoding": {
    kind: "string",
    status: "no-effect",
    choices: ["epoch", "millis", "nano", "iso8601", "rfc3339", "rfc3339nano"],
    help: "Zap time encoding",
  },
  "logtostderr": {
    kind: "bool",
    status: "no-effect",
    help: "log to standard error",
  },
  "alsologtostderr": {
    kind: "bool",
    status: "no-effect",
    help: "log to standard error too",
  },
  "stderrthreshold": {
    kind: "string",
    status: "no-effect",
    help: "klog stderr threshold",
  },
  "skip_headers": {
    kind: "bool",
    status: "no-effect",
    help: "klog: no header prefixes",
  },
  "skip_log_headers": {
    kind: "bool",
    status: "no-effect",
    help: "klog: no file headers",
  },
  "one_output": {
    kind: "bool",
    status: "no-effect",
    help: "klog: one output per severity",
  },
  "add_dir_header": {
    kind: "bool",
    status: "no-effect",
    help: "klog: file directory in header",
  },

  "data-parallel-size": {
    kind: "int",
    status: "not-yet",
    help: "the vLLM DATA-PARALLEL-SIZE value",
  },
  "ec-connector": {
    kind: "string",
    status: "not-yet",
    help: "the EC protocol between encoder and prefiller (for EPD mode)",
  },
  "enable-ssrf-protection": {
    kind: "bool",
    status: "not-yet",
    help: "enable SSRF protection using InferencePool allowlisting",
  },
  "pool-group": {
    kind: "string",
    status: "not-yet",
    help: "group of the InferencePool this Endpoint Picker is associated with",
  },
  "inference-pool": {
    kind: "string",
    status: "not-yet",
    help: "InferencePool in namespace/name or name format",
  },
  "inference-pool-namespace": {
    kind: "string",
    status: "not-yet",
    help: "Deprecated: use -inference-pool instead",
  },
  "inference-pool-name": {
    kind: "string",
    status: "not-yet",
    help: "Deprecated: use -inference-pool instead",
  },
  "enable-tls": {
    kind: "list",
    status: "not-yet",
    help: "stages to enable TLS for: prefiller, decoder, encoder",
  },
  "tls-insecure-skip-verify": {
    kind: "list",
    status: "not-yet",
    help: "stages to skip TLS verification for: prefiller, decoder, encoder",
  },
  "prefiller-use-tls": {
    kind: "bool",
    status: "not-yet",
    help: "Deprecated: use -enable-tls=prefiller instead",
  },
  "decoder-use-tls": {
    kind: "bool",
    status: "not-yet",
    help: "Deprecated: use -enable-tls=decoder instead",
  },
  "prefiller-tls-insecure-skip-verify": {
    kind: "bool",
    status: "not-yet",
    help: "Deprecated: use -tls-insecure-skip-verify=prefiller instead",
  },
  "decoder-tls-insecure-skip-verify": {
    kind: "bool",
    status: "not-yet",
    help: "Deprecated: use -tls-insecure-skip-verify=decoder instead",
  },
  "max-idle-conns-per-host": {
    kind: "int",
    status: "not-yet",
    help:
      "max idle keep-alive connections per host for reverse proxy transports",
  },
  "decode-chunk-size": {
    kind: "int",
    status: "not-yet",
    help:
      "enables chunked decode mode when > 0; value is the token budget per chunk",
  },
  "configuration": {
    kind: "string",
    status: "not-yet",
    help: "inline YAML configuration",
  },
  "configuration-file": {
    kind: "string",
    status: "not-yet",
    help: "path to a YAML configuration file",
  },
  "zap-devel": {
    kind: "bool",
    status: "not-yet",
    help: "Zap development mode defaults",
  },
  "zap-stacktrace-level": {
    kind: "string",
    status: "not-yet",
    help: "Zap level at and above which stacktraces are captured",
  },

  "log_dir": {
    kind: "string",
    status: "unsupported",
    help: "klog: log file directory",
  },
  "log_file": { kind: "string", status: "unsupported", help: "klog: log file" },
  "log_file_max_size": {
    kind: "int",
    status: "unsupported",
    help: "klog: log file size",
  },
  "vmodule": {
    kind: "string",
    status: "unsupported",
    help: "klog: per-file verbosity",
  },
  "log_backtrace_at": {
    kind: "string",
    status: "unsupported",
    help: "klog: stack trace at",
  },
} as const satisfies Readonly<Record<string, FlagEntry>>;

/** The table without its literal types, for lookups by any string. */
const FLAG_TABLE: Readonly<Record<string, FlagEntry>> = FLAGS;

type FlagTable = typeof FLAGS;
type FlagName = keyof FlagTable;
type ParsedName = {
  [N in FlagName]: FlagTable[N]["status"] extends "supported" | "no-effect" ? N
    : never;
}[FlagName];
type ParserSpecs = { readonly [N in ParsedName]: FlagTable[N]["kind"] };
type Parsed = ParsedFlags<ParserSpecs>;

const PARSER_SPECS = buildParserSpecs();

function buildParserSpecs(): ParserSpecs {
  const specs: Record<string, FlagKind> = {};
  for (const [name, entry] of flagEntries()) {
    if (entry.status === "supported" || entry.status === "no-effect") {
      specs[name] = entry.kind;
    }
  }
  // Sound: the loop keeps exactly the entries whose status ParsedName selects.
  return specs as ParserSpecs;
}

function flagEntries(): [string, FlagEntry][] {
  return Object.entries(FLAG_TABLE);
}

/**
 * Parses the sidecar's command line (Go `flag` syntax) and environment. Throws
 * {@linkcode ConfigError} with exit code 2 for bad input, 1 for contradictory values.
 */
export function parseCommandLine(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): CommandLine {
  if (hasHelpFlag(args)) return { kind: "help", usage: formatUsage() };
  const parsed = parseArgs(args);
  const { values } = parsed;
  const warnings: string[] = [];
  const secureProxy = values["secure-proxy"] ?? true;
  const certPath = values["cert-path"] ?? "";
  const config: Config = {
    port: parsePort(values.port ?? "8000", "port"),
    listenHost: parseListenHost(values["listen-host"] ?? "::"),
    vllmPort: parsePort(values["vllm-port"] ?? "8001", "vllm-port"),
    connector: resolveConnector(parsed, warnings),
    secureProxy,
    certPath,
    enablePrefillerSampling: resolveSampling(parsed, env, warnings),
    verbosity: resolveVerbosity(parsed),
  };
  validateNoEffectFlags(parsed, warnings);
  if (!secureProxy && certPath !== "") {
    warnings.push('Flag "-cert-path" has no effect with "-secure-proxy=false"');
  }
  if (config.port === config.vllmPort) {
    throw new ConfigError(
      `Flags "-port" and "-vllm-port" are both ${config.port}: the sidecar would proxy to itself`,
      { exitCode: 1, flag: "port" },
    );
  }
  return { kind: "run", config, warnings };
}

/** Go's flag package answers -h and -help (any dashes, any value) with usage, wherever they are. */
function hasHelpFlag(args: readonly string[]): boolean {
  const end = args.indexOf("--");
  const flags = end === -1 ? args : args.slice(0, end);
  return flags.some((arg) => /^--?(?:h|help)(?:=.*)?$/s.test(arg));
}

function parseArgs(args: readonly string[]): Parsed {
  let parsed: Parsed;
  try {
    parsed = parseFlags(args, PARSER_SPECS);
  } catch (error) {
    if (error instanceof FlagError) throw fromFlagError(error);
    throw error;
  }
  const [extra] = parsed.rest;
  if (extra !== undefined) {
    throw new ConfigError(
      `Unexpected argument "${extra}" after "--": the sidecar takes no positional arguments`,
      { exitCode: 2 },
    );
  }
  return parsed;
}

function fromFlagError(error: FlagError): ConfigError {
  const options = { exitCode: 2, flag: error.flag, cause: error } as const;
  const entry = error.reason === "unknown-flag"
    ? lookupFlag(error.flag)
    : undefined;
  if (entry?.status === "not-yet") {
    return new ConfigError(
      `Flag "-${error.flag}" is not supported yet by this sidecar`,
      options,
    );
  }
  if (entry?.status === "unsupported") {
    return new ConfigError(
      `Flag "-${error.flag}" is not supported by this sidecar: ${LOGGING_NOTE}, ` +
        "filtered by -v only",
      options,
    );
  }
  return new ConfigError(error.message, options);
}

function lookupFlag(name: string | undefined): FlagEntry | undefined {
  return name !== undefined && Object.hasOwn(FLAG_TABLE, name)
    ? FLAG_TABLE[name]
    : undefined;
}

function invalidValue(
  flag: string,
  value: string,
  expected: string,
): ConfigError {
  return new ConfigError(
    `Invalid value "${value}" for flag "-${flag}": expected ${expected}`,
    {
      exitCode: 2,
      flag,
    },
  );
}

function parsePort(text: string, flag: string): number {
  // Go keeps ports as strings and fails late (or binds a random port for "0"); we check now.
  const port = /^\d{1,5}$/.test(text) ? Number(text) : 0;
  if (port < 1 || port > 65535) {
    throw invalidValue(flag, text, "a port number from 1 to 65535");
  }
  return port;
}

function parseListenHost(text: string): string {
  if (text === "" || /[\s[\]/]/.test(text)) {
    throw invalidValue(
      "listen-host",
      text,
      'a host name or IP address without brackets or port, e.g. "::" or "127.0.0.1"',
    );
  }
  return text;
}

function parseConnector(text: string, flag: string): ConnectorName {
  const name = CONNECTOR_NAMES.find((candidate) => candidate === text);
  if (name === undefined) {
    throw invalidValue(flag, text, `one of ${CONNECTOR_LIST}`);
  }
  return name;
}

/** LATEST §1.3 step 2: the deprecated -connector fills an empty -kv-connector. */
function resolveConnector(parsed: Parsed, warnings: string[]): ConnectorName {
  const { values } = parsed;
  const kvText = values["kv-connector"];
  const kv = kvText === undefined || kvText === ""
    ? undefined
    : parseConnector(kvText, "kv-connector");
  let legacy: ConnectorName | undefined;
  if (values.connector !== undefined) {
    // pflag's MarkDeprecated wording.
    warnings.push(
      "Flag --connector has been deprecated, use --kv-connector instead",
    );
    // Validated even when -kv-connector overrides it, as Go's Validate() does.
    legacy = parseConnector(values.connector, "connector");
    if (kv !== undefined && kv !== legacy) {
      warnings.push(
        'Flag "-connector" is ignored because "-kv-connector" is set',
      );
    }
  }
  const connector = kv ?? legacy ?? DEFAULT_CONNECTOR;
  if (connector === "nixl") {
    // Same advice as the original sidecar's start-up warning.
    warnings.push(
      'Connector "nixl" is deprecated and will be removed in a future release in favor of "nixlv2"',
    );
  }
  return connector;
}

function resolveSampling(
  parsed: Parsed,
  env: Readonly<Record<string, string | undefined>>,
  warnings: string[],
): boolean {
  const flag = parsed.values["enable-prefiller-sampling"];
  if (flag !== undefined) return flag;
  const text = env[PREFILLER_SAMPLING_ENV] ?? "";
  const value = parseGoBool(text);
  if (value === undefined && text !== "") {
    // Go silently falls back to false; say so.
    warnings.push(
      `Environment variable ${PREFILLER_SAMPLING_ENV} has invalid value "${text}": using false`,
    );
  }
  return value ?? false;
}

/** -v (klog, ORIG) and -zap-log-level (LATEST) set the same thing; the later one wins. */
function resolveVerbosity(parsed: Parsed): number {
  const last = parsed.order.findLast((name) =>
    name === "v" || name === "zap-log-level"
  );
  const { v, "zap-log-level": zapLevel } = parsed.values;
  if (last === "v" && v !== undefined) {
    if (v < 0) throw invalidValue("v", String(v), "an integer of 0 or more");
    return v;
  }
  if (last === "zap-log-level" && zapLevel !== undefined) {
    return parseZapLevel(zapLevel);
  }
  return 0;
}

const ZAP_LEVELS: Readonly<Record<string, number>> = {
  debug: 1,
  info: 0,
  error: -1,
  panic: -2,
};

/** controller-runtime's level flag: a name (case-insensitive) or an integer N > 0 meaning V(N). */
function parseZapLevel(text: string): number {
  const lower = text.toLowerCase();
  const named = Object.hasOwn(ZAP_LEVELS, lower)
    ? ZAP_LEVELS[lower]
    : undefined;
  if (named !== undefined) return named;
  const number = /^\d+$/.test(text) ? Number(text) : 0;
  if (number < 1 || !Number.isSafeInteger(number)) {
    throw invalidValue(
      "zap-log-level",
      text,
      "debug, info, error, panic or an integer greater than 0",
    );
  }
  return number;
}

function validateNoEffectFlags(parsed: Parsed, warnings: string[]): void {
  const seen = new Set<string>();
  for (const name of parsed.order) {
    const entry: FlagEntry = FLAGS[name];
    if (entry.status !== "no-effect" || seen.has(name)) continue;
    seen.add(name);
    const value = parsed.values[name];
    if (
      entry.choices !== undefined && typeof value === "string" &&
      !entry.choices.includes(value)
    ) {
      throw invalidValue(name, value, `one of ${entry.choices.join(", ")}`);
    }
    warnings.push(`Flag "-${name}" has no effect: ${LOGGING_NOTE}`);
  }
}

/** Usage text in Go's flag.PrintDefaults style, then the flags accepted or rejected by name. */
export function formatUsage(program: string = DEFAULT_PROGRAM): string {
  // Byte order, as Go sorts: "-" < "_" < letters.
  const entries = flagEntries().sort(([a], [b]) => a < b ? -1 : 1);
  const lines = [`Usage of ${program}:`];
  for (const [name, entry] of entries) {
    if (entry.status === "supported") lines.push(formatFlag(name, entry));
  }
  const namesWith = (status: FlagStatus): string[] =>
    entries.flatMap(([name, entry]) =>
      entry.status === status ? [`-${name}`] : []
    );
  lines.push(
    "",
    'Flags take one or two dashes: -port=9000, --port 9000. Booleans take their value with "=":',
    "-secure-proxy=false.",
    "",
    `Accepted for compatibility, without effect (${LOGGING_NOTE}):`,
    ...wrapNames(namesWith("no-effect")),
    "",
    "Not supported yet (rejected with exit code 2):",
    ...wrapNames(namesWith("not-yet")),
    "",
    "Not supported (rejected with exit code 2):",
    ...wrapNames(namesWith("unsupported")),
  );
  return lines.join("\n") + "\n";
}

/** Mirrors Go's PrintDefaults: "  -name type" then the help on the next line after "    \t". */
function formatFlag(name: string, entry: FlagEntry): string {
  const type = entry.kind === "bool" ? "" : ` ${typeName(entry.kind)}`;
  const head = `  -${name}${type}`;
  // Go keeps a one-letter boolean's help on the same line.
  const separator = head.length <= 4 ? "\t" : "\n    \t";
  return `${head}${separator}${entry.help}${formatDefault(entry.default)}`;
}

function typeName(kind: FlagKind): string {
  return kind === "list" ? "strings" : kind;
}

function formatDefault(value: string | number | boolean | undefined): string {
  if (value === undefined || value === "" || value === 0 || value === false) {
    return "";
  }
  const text = typeof value === "string"
    ? JSON.stringify(value)
    : String(value);
  return ` (default ${text})`;
}

function wrapNames(names: readonly string[]): string[] {
  const lines: string[] = [];
  let line = "";
  for (const name of names) {
    const next = line === "" ? `  ${name}` : `${line}, ${name}`;
    if (next.length > 78 && line !== "") {
      lines.push(`${line},`);
      line = `  ${name}`;
    } else {
      line = next;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}

/** The configuration as a plain object for the start-up log line (snake_case keys). */
export function describeConfig(config: Config): Record<string, unknown> {
  return {
    port: config.port,
    listen_host: config.listenHost,
    vllm_port: config.vllmPort,
    kv_connector: config.connector,
    secure_proxy: config.secureProxy,
    cert_path: config.certPath,
    enable_prefiller_sampling: config.enablePrefillerSampling,
    verbosity: config.verbosity,
  };
}
