/**
 * @module The sidecar's command line: the resolved {@linkcode Config}, parsed from Go-syntax
 * flags (table in `flag_table.ts`), the YAML configuration they name (`config_yaml.ts`) and
 * the environment, and validated. `main.ts` passes `Deno.args` and the environment, prints
 * and exits; the only input read here is the `-configuration-file`, through a replaceable reader.
 */

import {
  FlagError,
  type ParsedFlags,
  parseFlags,
  parseGoBool,
} from "./flags.ts";

import { ConfigError, invalidValue } from "./config_error.ts";
import {
  completeSources,
  DEFAULT_SOURCE,
  layerConfiguration,
  type LayeredValues,
  type ReadFile,
  settingLabel,
  type SettingSource,
  type Sourced,
  sourceOf,
  withLayerContext,
} from "./config_sources.ts";
import { resolveConnectorSettings } from "./connector_flags.ts";
import { resolveStageSettings } from "./stage_flags.ts";
import {
  type ResilienceSettings,
  resolveResilienceSettings,
} from "./resilience_flags.ts";
import {
  CONNECTOR_NAMES,
  type ConnectorName,
  defaultOf,
  type EcConnectorName,
  type Env,
  ENV_VARS,
  LOGGING_NOTE,
  lookupFlag,
  MAX_IDLE_CONNS_PER_HOST,
  PARSER_SPECS,
  type ParserSpecs,
  PREFILLER_SAMPLING_ENV,
  similarFlagName,
  type TlsStage,
} from "./flag_table.ts";
import { isInt32, parseChoice } from "./flag_values.ts";
import { formatUsage } from "./usage.ts";
import { formatEffectiveConfig } from "./print_config.ts";
import {
  resolveSecuritySettings,
  type SecuritySettings,
} from "./security_flags.ts";

export { ConfigError, type ConfigErrorOptions } from "./config_error.ts";
export type { ReadFile, SettingSource } from "./config_sources.ts";
export type { InferencePoolRef } from "./security_flags.ts";
export { describeConfig } from "./print_config.ts";
export {
  CONNECTOR_NAMES,
  type ConnectorName,
  type EcConnectorName,
  type Env,
  ENV_VARS,
  formatUsage,
  PREFILLER_SAMPLING_ENV,
};

/**
 * Resolved sidecar configuration; read-only once parsed. Timeouts, retries
 * and shutdown settings come from {@linkcode ResilienceSettings}.
 */
export interface Config extends ResilienceSettings, SecuritySettings {
  /** `-port`: rank 0's listening port; rank r listens on `port + r` (see {@linkcode listenPort}). */
  readonly port: number;
  /** `-listen-host` (not in the Go sidecar): "::" means all interfaces, like Go's ":port". */
  readonly listenHost: string;
  /**
   * `-model-server-port`, else the deprecated `-vllm-port`: rank 0's local model server
   * (decoder); rank r's is `modelServerPort + r` (see {@linkcode decoderHostPort}).
   */
  readonly modelServerPort: number;
  /** `-kv-connector`, or the deprecated `-connector` when `-kv-connector` is empty. */
  readonly connector: ConnectorName;
  /** `-data-parallel-size`: the model server's data-parallel ranks, one listener each; >= 1. */
  readonly dataParallelSize: number;
  /**
   * The rank this config's listener serves, 0..dataParallelSize-1: 0 as parsed, set per
   * listener by {@linkcode configForRank}. `port` and `modelServerPort` stay rank 0's, so
   * every rank derives the same layout (the Go sidecar's `dpBasePort`).
   */
  readonly dataParallelRank: number;
  /** Env POD_IP, "" when unset: the host of the `x-data-parallel-host-port` keys (Go: `:port`). */
  readonly podIp: string;
  /** `-enable-p2p-pull`: the P2P tier runs next to NIXL; only with the nixlv2 connector. */
  readonly enableP2pPull: boolean;
  /** `-p2p-connector-port`, else env P2P_CONNECTOR_PORT: rank 0's OffloadingConnector P2P port. */
  readonly p2pConnectorPort: number;
  /** `-mooncake-bootstrap-port`, else env MOONCAKE_BOOTSTRAP_PORT: the prefillers' bootstrap port. */
  readonly mooncakeBootstrapPort: number;
  /** Env SGLANG_BOOTSTRAP_PORT (default 8998): `bootstrap_port` of the sglang connector's legs. */
  readonly sglangBootstrapPort: number;
  /** `-secure-proxy`: serve TLS on the sidecar's listener. */
  readonly secureProxy: boolean;
  /** `-cert-path`: directory holding tls.crt and tls.key; "" means self-signed at start. */
  readonly certPath: string;
  /** `-enable-prefiller-sampling`, else env ENABLE_PREFILLER_SAMPLING: random prefill target. */
  readonly enablePrefillerSampling: boolean;
  /** `-v` or `-zap-log-level`: 0 info, 1 debug, -1 error, -2 panic; routing at 4, bodies at 5. */
  readonly verbosity: number;
  /** `-workers` (not in the Go sidecar): listener threads sharing the port, 1..64. */
  readonly workers: number;
  /** `-metrics-port`: port of the Prometheus `/metrics` listener; 0 means none. */
  readonly metricsPort: number;
  /** `-tracing`: the sidecar's own OpenTelemetry spans and trace context on both legs. */
  readonly tracing: boolean;
  /** `-ec-connector`: the encoder stage's protocol; "" disables the stage. */
  readonly ecConnector: EcConnectorName | "";
  /** `-decode-chunk-size`: tokens per chat decode chunk; 0 disables chunked decode. */
  readonly decodeChunkSize: number;
  /**
   * `-watch-client-connections` (not in the Go sidecar): the peer watch,
   * which notices a client gone while its request waits despite Deno 2.9.6
   * (src/peer_watch.ts); needs `--allow-all`.
   */
  readonly watchClientConnections: boolean;
  /** `-max-request-body-bytes` (not in the Go sidecar): a larger request body is answered 413. */
  readonly maxRequestBodyBytes: number;
  /**
   * `-max-connections` (not in the Go sidecar): client connections each
   * listener serves at once, more waiting in the listen queue; 0 sets no cap.
   */
  readonly maxConnections: number;
  /** `-max-idle-conns-per-host`: idle keep-alive connections kept per upstream host. */
  readonly maxIdleConnsPerHost: number;
  /**
   * `-max-client-resets` (not in the Go sidecar): a connection whose client
   * cancels this many requests, most of its own, is closed; 0 never.
   */
  readonly maxClientResets: number;
}

/** Where each setting of a {@linkcode Config} came from (the rank is not a setting). */
export type ConfigSources = Readonly<
  Record<Exclude<keyof Config, "dataParallelRank">, SettingSource>
>;

/** A configuration that parsed and validated, with what the start-up log should say. */
export interface ResolvedConfig {
  readonly config: Config;
  /** Messages for the start-up log: deprecated or ineffective flags and keys. */
  readonly warnings: readonly string[];
  /** Which layer (flag, yaml, env, default) gave each setting. */
  readonly sources: ConfigSources;
}

/** What the command line asks for: print usage, print the configuration, or run with it. */
export type CommandLine =
  | { readonly kind: "help"; readonly usage: string }
  | ({ readonly kind: "run" } & ResolvedConfig)
  | ({
    readonly kind: "print-config";
    /** The `-print-config` table: setting, value and source per line. */
    readonly text: string;
  } & ResolvedConfig);

/** Dependencies of {@linkcode parseCommandLine}. */
export interface CommandLineOptions {
  /** Reads `-configuration-file`; the default reads the disk, bounded to 64 KiB. */
  readonly readFile?: ReadFile;
}

type Parsed = ParsedFlags<ParserSpecs>;

/**
 * Parses the sidecar's command line (Go `flag` syntax), the YAML configuration it names and
 * the environment, in the Go sidecar's precedence: explicit flag > YAML > environment >
 * default. Throws {@linkcode ConfigError} with exit code 2 for bad input, 1 for contradictory
 * values.
 */
export function parseCommandLine(
  args: readonly string[],
  env: Env,
  options: CommandLineOptions = {},
): CommandLine {
  if (hasHelpFlag(args)) return { kind: "help", usage: formatUsage() };
  const parsed = parseArgs(args);
  const layered = layerConfiguration(parsed, options.readFile);
  let resolved: ResolvedConfig;
  try {
    resolved = resolveConfig(parsed, layered, env);
  } catch (error) {
    throw withLayerContext(error, layered.given);
  }
  if (parsed.values["print-config"] === true) {
    const text = formatEffectiveConfig(resolved.config, resolved.sources);
    return { kind: "print-config", text, ...resolved };
  }
  return { kind: "run", ...resolved };
}

function resolveConfig(
  parsed: Parsed,
  layered: LayeredValues,
  env: Env,
): ResolvedConfig {
  const { values, given } = layered;
  const warnings: string[] = [];
  const input = { ...layered, env };
  const connector = resolveConnectorSettings(input, warnings);
  const secureProxy = values["secure-proxy"] ?? defaultOf("secure-proxy");
  const certPath = values["cert-path"] ?? "";
  const sampling = resolveSampling(layered, env, warnings);
  const verbosity = resolveVerbosity(parsed);
  const { settings } = connector;
  // SSRF protection and upstream TLS (issue 11).
  const security = resolveSecuritySettings(input, warnings);
  const config: Config = {
    port: settings.port,
    listenHost: parseListenHost(
      values["listen-host"] ?? defaultOf("listen-host"),
    ),
    modelServerPort: settings.modelServerPort,
    connector: settings.connector,
    dataParallelSize: settings.dataParallelSize,
    dataParallelRank: 0,
    podIp: settings.podIp,
    enableP2pPull: settings.enableP2pPull,
    p2pConnectorPort: settings.p2pConnectorPort,
    mooncakeBootstrapPort: settings.mooncakeBootstrapPort,
    sglangBootstrapPort: settings.sglangBootstrapPort,
    secureProxy,
    certPath,
    enablePrefillerSampling: sampling.value,
    verbosity: verbosity.value,
    workers: inRange(
      "workers",
      values.workers ?? defaultOf("workers"),
      [1, MAX_WORKERS],
      `a number from 1 to ${MAX_WORKERS}`,
    ),
    metricsPort: inRange(
      "metrics-port",
      values["metrics-port"] ?? defaultOf("metrics-port"),
      [0, 65535],
      "a port from 1 to 65535, or 0 for no metrics listener",
    ),
    tracing: values.tracing ?? false,
    watchClientConnections: values["watch-client-connections"] ?? false,
    ...resolveStageSettings(values),
    ...security.settings,
    maxRequestBodyBytes: inRange(
      "max-request-body-bytes",
      values["max-request-body-bytes"] ?? defaultOf("max-request-body-bytes"),
      [1, Number.MAX_SAFE_INTEGER],
      "a number of bytes greater than 0",
    ),
    maxConnections: inRange(
      "max-connections",
      values["max-connections"] ?? defaultOf("max-connections"),
      [0, Infinity],
      "a number of connections, or 0 for no cap",
    ),
    maxIdleConnsPerHost: positiveOrGoDefault(
      values["max-idle-conns-per-host"],
      MAX_IDLE_CONNS_PER_HOST,
    ),
    maxClientResets: inRange(
      "max-client-resets",
      values["max-client-resets"] ?? defaultOf("max-client-resets"),
      [0, Number.MAX_SAFE_INTEGER],
      "a number of cancelled requests, or 0 for no check",
    ),
    ...resolveResilienceSettings(values),
  };
  validateNoEffectFlags(parsed, warnings);
  if (!secureProxy && certPath !== "") {
    warnings.push(
      `${settingLabel("cert-path", given)} has no effect with ` +
        (given["secure-proxy"] === "yaml"
          ? '"secure-proxy: false"'
          : '"-secure-proxy=false"'),
    );
  }
  const { dataParallelRank: _rank, ...settingValues } = config;
  const sources = completeSources(settingValues, given, {
    ...connector.sources,
    ...security.sources,
    enablePrefillerSampling: sampling.source,
    verbosity: verbosity.source,
  });
  return { config, warnings, sources };
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
  const similar = error.reason === "unknown-flag" && error.flag !== undefined
    ? similarFlagName(error.flag)
    : undefined;
  if (similar !== undefined) {
    return new ConfigError(
      `${error.message}; did you mean "-${similar}"?`,
      options,
    );
  }
  return new ConfigError(error.message, options);
}

const MAX_WORKERS = 64;

/** `value` when above 0, else `goDefault`: Go's transports read 0 or less as their default. */
function positiveOrGoDefault(
  value: number | undefined,
  goDefault: number,
): number {
  return value !== undefined && value > 0 ? value : goDefault;
}

/** `value` of `-flag` when it lies in [min, max], else the flag's error saying what it takes. */
function inRange(
  flag: string,
  value: number,
  [min, max]: readonly [number, number],
  expected: string,
): number {
  if (value < min || value > max) {
    throw invalidValue(flag, String(value), expected);
  }
  return value;
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

function resolveSampling(
  layered: LayeredValues,
  env: Env,
  warnings: string[],
): Sourced<boolean> {
  const name = "enable-prefiller-sampling";
  const given = layered.values[name];
  if (given !== undefined) {
    return { value: given, source: sourceOf(name, layered.given) };
  }
  const text = env[PREFILLER_SAMPLING_ENV] ?? "";
  const value = parseGoBool(text);
  if (value === undefined) {
    if (text !== "") {
      // Go silently falls back to false; say so.
      warnings.push(
        `Environment variable ${PREFILLER_SAMPLING_ENV} has invalid value "${text}": using false`,
      );
    }
    return { value: false, source: DEFAULT_SOURCE };
  }
  return { value, source: { kind: "env", name: PREFILLER_SAMPLING_ENV } };
}

/**
 * -v (klog, ORIG) and -zap-log-level (LATEST) set the same thing; the later
 * one wins. Without either, -zap-devel means debug, as controller-runtime's
 * Development Mode does.
 */
function resolveVerbosity(parsed: Parsed): Sourced<number> {
  // Go's flag package sets each occurrence in turn, so a bad value is
  // refused even when a later one replaces it.
  parsed.order.forEach((name, index) => {
    const text = parsed.texts[index];
    if (text === undefined) return;
    if (name === "zap-log-level") parseZapLevel(text);
    if (name === "v" && !isInt32(Number(text))) {
      throw invalidValue("v", text, "a 32-bit integer");
    }
  });
  const last = parsed.order.findLast((name) =>
    name === "v" || name === "zap-log-level"
  );
  const { v, "zap-log-level": zapLevel } = parsed.values;
  if (last === "v" && v !== undefined) {
    // klog reads -v as a 32-bit integer and takes a negative one: V(0) lines
    // are then off, so only errors are logged, as with zap's "error" level.
    return { value: v, source: { kind: "flag", name: "v" } };
  }
  if (last === "zap-log-level" && zapLevel !== undefined) {
    return {
      value: parseZapLevel(zapLevel),
      source: { kind: "flag", name: "zap-log-level" },
    };
  }
  if (parsed.values["zap-devel"] === true) {
    return {
      value: ZAP_DEBUG,
      source: { kind: "flag", name: "zap-devel" },
    };
  }
  return { value: 0, source: DEFAULT_SOURCE };
}

/** The verbosity of zap's `debug` level. */
const ZAP_DEBUG = 1;

const ZAP_LEVELS: Readonly<Record<string, number>> = {
  debug: ZAP_DEBUG,
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
  // strconv.Atoi, as controller-runtime reads it: a leading "+" is allowed.
  const number = /^\+?\d+$/.test(text) ? Number(text) : 0;
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
  parsed.order.forEach((name, index) => {
    const entry = lookupFlag(name);
    if (entry?.status !== "no-effect") return;
    // Every occurrence is checked, as Go's flag package sets (and refuses) each in turn.
    const value = parsed.texts[index];
    if (value !== undefined && typeof parsed.values[name] === "string") {
      if (entry.choices !== undefined) {
        parseChoice(name, value, entry.choices, { anyCase: true });
      }
      entry.check?.(name, value);
    }
    if (seen.has(name)) return;
    seen.add(name);
    warnings.push(`Flag "-${name}" has no effect: ${LOGGING_NOTE}`);
  });
}

/** The port the listener of `config`'s data-parallel rank serves. */
export function listenPort(
  config: Pick<Config, "port" | "dataParallelRank">,
): number {
  return config.port + config.dataParallelRank;
}

/**
 * `host:port` of the local model server (decoder) of `config`'s rank; it
 * shares the pod's loopback. `127.0.0.1` spares a resolver round trip, but a
 * decoder spoken to over verified TLS is named `localhost`, as Go names it:
 * the name is what its certificate is checked against, and one issued for
 * `localhost` alone, which the Go sidecar accepts, was refused.
 */
export function decoderHostPort(
  config: Pick<
    Config,
    | "modelServerPort"
    | "dataParallelRank"
    | "tlsStages"
    | "insecureSkipVerifyStages"
  >,
): string {
  const { tls, verify } = stageTlsOf(config, "decoder");
  const host = tls && verify ? "localhost" : "127.0.0.1";
  return `${host}:${config.modelServerPort + config.dataParallelRank}`;
}

/** Whether `stage` is reached over TLS (`-enable-tls`), and whether its certificate is verified. */
export function stageTlsOf(
  config: Pick<Config, "tlsStages" | "insecureSkipVerifyStages">,
  stage: TlsStage,
): { readonly tls: boolean; readonly verify: boolean } {
  return {
    tls: config.tlsStages.includes(stage),
    verify: !config.insecureSkipVerifyStages.includes(stage),
  };
}

/** `config` as the listener of data-parallel rank `rank` uses it. */
export function configForRank(config: Config, rank: number): Config {
  return { ...config, dataParallelRank: rank };
}
