/**
 * @module The sidecar's command line: the resolved {@linkcode Config}, parsed from Go-syntax
 * flags (table in `flag_table.ts`) and the environment, and validated. Pure: `main.ts` passes
 * `Deno.args` and the environment, prints and exits.
 */

import {
  FlagError,
  type ParsedFlags,
  parseFlags,
  parseGoBool,
} from "./flags.ts";

import {
  CONNECTOR_NAMES,
  type ConnectorName,
  DEFAULT_CONNECTOR,
  defaultOf,
  LOGGING_NOTE,
  lookupFlag,
  PARSER_SPECS,
  type ParserSpecs,
  PREFILLER_SAMPLING_ENV,
} from "./flag_table.ts";
import { formatUsage } from "./usage.ts";
// --- SSRF protection and upstream TLS (issue 11) ---
import {
  INFERENCE_POOL_ENV,
  INFERENCE_POOL_NAME_ENV,
  INFERENCE_POOL_NAMESPACE_ENV,
  POOL_GROUPS,
  TLS_STAGES,
  type TlsStage,
} from "./flag_table.ts";
import { parseStaticEntry } from "./allowlist/static_list.ts";
import type { PoolGroup } from "./allowlist/pool_spec.ts";

export {
  CONNECTOR_NAMES,
  type ConnectorName,
  formatUsage,
  PREFILLER_SAMPLING_ENV,
};

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
  /** `-workers` (not in the Go sidecar): listener threads sharing the port, 1..64. */
  readonly workers: number;
  // --- SSRF protection and upstream TLS (issue 11) ---
  /** `-enable-ssrf-protection`: admit only ready pods of the InferencePool on its target ports. */
  readonly ssrfProtection: boolean;
  /** `-inference-pool` (or the deprecated pair) and `-pool-group`; undefined when not given. */
  readonly inferencePool: InferencePoolRef | undefined;
  /** `-allowed-prefillers`: static allowlist entries (validated), admitted besides the pool. */
  readonly allowedPrefillers: readonly string[];
  /** `-allowlist-sync-timeout`: bound on start-up's first read of the pool, in ms. */
  readonly allowlistSyncTimeoutMs: number;
  /** `-enable-tls` and the deprecated `-*-use-tls`: stages reached over HTTPS. */
  readonly tlsStages: readonly TlsStage[];
  /** `-tls-insecure-skip-verify` and the deprecated bools: stages whose certificates are not verified. */
  readonly insecureSkipVerifyStages: readonly TlsStage[];
  /** `-ca-cert`: PEM bundle trusted for upstream TLS besides the default roots; "" for none. */
  readonly caCertPath: string;
}

/** The InferencePool the allowlist follows; an empty namespace means the sidecar's own. */
export interface InferencePoolRef {
  readonly namespace: string;
  readonly name: string;
  readonly group: PoolGroup;
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

type Parsed = ParsedFlags<ParserSpecs>;

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
  const secureProxy = values["secure-proxy"] ?? defaultOf("secure-proxy");
  const certPath = values["cert-path"] ?? "";
  const config: Config = {
    port: parsePort(values.port ?? defaultOf("port"), "port"),
    listenHost: parseListenHost(
      values["listen-host"] ?? defaultOf("listen-host"),
    ),
    vllmPort: parsePort(
      values["vllm-port"] ?? defaultOf("vllm-port"),
      "vllm-port",
    ),
    connector: resolveConnector(parsed, warnings),
    secureProxy,
    certPath,
    enablePrefillerSampling: resolveSampling(parsed, env, warnings),
    verbosity: resolveVerbosity(parsed),
    workers: parseWorkers(values.workers ?? defaultOf("workers")),
    // SSRF protection and upstream TLS (issue 11).
    ...resolveSecurity(parsed, env, warnings),
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

const MAX_WORKERS = 64;

function parseWorkers(count: number): number {
  if (count < 1 || count > MAX_WORKERS) {
    throw invalidValue(
      "workers",
      String(count),
      `a number from 1 to ${MAX_WORKERS}`,
    );
  }
  return count;
}

/** `text` if it is one of `choices`; a ConfigError naming them otherwise. */
function parseChoice<T extends string>(
  flag: string,
  text: string,
  choices: readonly T[],
): T {
  const choice = choices.find((candidate) => candidate === text);
  if (choice === undefined) {
    throw invalidValue(flag, text, `one of ${choices.join(", ")}`);
  }
  return choice;
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
  return parseChoice(flag, text, CONNECTOR_NAMES);
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
    const entry = lookupFlag(name);
    if (entry?.status !== "no-effect" || seen.has(name)) continue;
    seen.add(name);
    const value = parsed.values[name];
    if (entry.choices !== undefined && typeof value === "string") {
      parseChoice(name, value, entry.choices);
    }
    warnings.push(`Flag "-${name}" has no effect: ${LOGGING_NOTE}`);
  }
}

/** `host:port` of the local decoder vLLM, which shares the pod's loopback. */
export function decoderHostPort(config: Pick<Config, "vllmPort">): string {
  return `127.0.0.1:${config.vllmPort}`;
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
    workers: config.workers,
    // SSRF protection and upstream TLS (issue 11).
    enable_ssrf_protection: config.ssrfProtection,
    inference_pool: config.inferencePool,
    allowed_prefillers: config.allowedPrefillers,
    allowlist_sync_timeout_ms: config.allowlistSyncTimeoutMs,
    enable_tls: config.tlsStages,
    tls_insecure_skip_verify: config.insecureSkipVerifyStages,
    ca_cert: config.caCertPath,
  };
}

// --- SSRF protection and upstream TLS (issue 11) ---

type SecurityConfig = Pick<
  Config,
  | "ssrfProtection"
  | "inferencePool"
  | "allowedPrefillers"
  | "allowlistSyncTimeoutMs"
  | "tlsStages"
  | "insecureSkipVerifyStages"
  | "caCertPath"
>;

function resolveSecurity(
  parsed: Parsed,
  env: Readonly<Record<string, string | undefined>>,
  warnings: string[],
): SecurityConfig {
  const { values } = parsed;
  const ssrfProtection = values["enable-ssrf-protection"] ?? false;
  const inferencePool = resolveInferencePool(parsed, env, warnings);
  if (ssrfProtection && inferencePool === undefined) {
    // LATEST's message for a missing name; the namespace defaults to the sidecar's own.
    throw new ConfigError(
      "--inference-pool, --inference-pool-name, INFERENCE_POOL, or INFERENCE_POOL_NAME " +
        "environment variable is required when --enable-ssrf-protection is true",
      { exitCode: 1, flag: "inference-pool" },
    );
  }
  const allowedPrefillers = (values["allowed-prefillers"] ?? []).map((entry) =>
    entry.trim()
  ).filter((entry) => entry !== "");
  for (const entry of allowedPrefillers) {
    try {
      parseStaticEntry(entry);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new ConfigError(
        `Invalid value "${entry}" for flag "-allowed-prefillers": ${reason}`,
        { exitCode: 2, flag: "allowed-prefillers" },
      );
    }
  }
  const tlsStages = resolveStages(parsed, "enable-tls", warnings, {
    prefiller: "prefiller-use-tls",
    decoder: "decoder-use-tls",
  });
  const insecureSkipVerifyStages = resolveStages(
    parsed,
    "tls-insecure-skip-verify",
    warnings,
    {
      prefiller: "prefiller-tls-insecure-skip-verify",
      decoder: "decoder-tls-insecure-skip-verify",
    },
  );
  for (const stage of insecureSkipVerifyStages) {
    if (!tlsStages.includes(stage)) {
      warnings.push(
        `Stage "${stage}" skips TLS verification but does not use TLS: add it to "-enable-tls"`,
      );
    }
  }
  return {
    ssrfProtection,
    inferencePool: ssrfProtection ? inferencePool : undefined,
    allowedPrefillers,
    allowlistSyncTimeoutMs: parseDuration(
      values["allowlist-sync-timeout"] ?? defaultOf("allowlist-sync-timeout"),
      "allowlist-sync-timeout",
    ),
    tlsStages,
    insecureSkipVerifyStages,
    caCertPath: values["ca-cert"] ?? "",
  };
}

/** LATEST §1.3 step 3: `-inference-pool` (or INFERENCE_POOL) wins over the deprecated pair. */
function resolveInferencePool(
  parsed: Parsed,
  env: Readonly<Record<string, string | undefined>>,
  warnings: string[],
): InferencePoolRef | undefined {
  const { values } = parsed;
  const group = parseChoice(
    "pool-group",
    values["pool-group"] ?? defaultOf("pool-group"),
    POOL_GROUPS,
  );
  for (
    const name of ["inference-pool-namespace", "inference-pool-name"] as const
  ) {
    if (values[name] !== undefined) {
      warnings.push(
        `Flag --${name} has been deprecated, use --inference-pool instead`,
      );
    }
  }
  const combined = values["inference-pool"] ?? env[INFERENCE_POOL_ENV] ?? "";
  if (combined !== "") {
    const parts = combined.split("/");
    if (parts.length > 2) {
      throw new ConfigError(
        "--inference-pool must be in format 'namespace/name' or 'name', not multiple slashes",
        { exitCode: 2, flag: "inference-pool" },
      );
    }
    const [first = "", second] = parts;
    const namespace = second === undefined ? "" : first;
    const name = second ?? first;
    if (name === "" || (second !== undefined && namespace === "")) {
      throw new ConfigError(
        "--inference-pool cannot have empty namespace or name",
        { exitCode: 2, flag: "inference-pool" },
      );
    }
    return { namespace, name, group };
  }
  const namespace = values["inference-pool-namespace"] ??
    env[INFERENCE_POOL_NAMESPACE_ENV] ?? "";
  const name = values["inference-pool-name"] ?? env[INFERENCE_POOL_NAME_ENV] ??
    "";
  return name === "" ? undefined : { namespace, name, group };
}

/** A stage list flag plus the deprecated per-stage bools that add to it (LATEST §1.3 step 4). */
function resolveStages(
  parsed: Parsed,
  flag: "enable-tls" | "tls-insecure-skip-verify",
  warnings: string[],
  deprecated: {
    readonly prefiller: keyof Parsed["values"];
    readonly decoder: keyof Parsed["values"];
  },
): TlsStage[] {
  const stages: TlsStage[] = [];
  for (const text of parsed.values[flag] ?? []) {
    const stage = TLS_STAGES.find((candidate) => candidate === text.trim());
    if (stage === undefined) {
      throw new ConfigError(
        `--${flag} stages must be one of: ${TLS_STAGES.join(", ")}`,
        { exitCode: 2, flag },
      );
    }
    if (!stages.includes(stage)) stages.push(stage);
  }
  for (const stage of ["prefiller", "decoder"] as const) {
    const name = deprecated[stage];
    const given = parsed.values[name];
    if (given === undefined) continue;
    const replacement = flag === "enable-tls"
      ? `--enable-tls=${stage}`
      : `--tls-insecure-skip-verify=${stage}`;
    warnings.push(
      `Flag --${name} has been deprecated, use ${replacement} instead`,
    );
    if (given === true && !stages.includes(stage)) stages.push(stage);
  }
  return stages;
}

/** A Go-style duration limited to what the flag needs: `500ms`, `30s`, `2m`. */
function parseDuration(text: string, flag: string): number {
  const match = /^(\d{1,9})(ms|s|m)$/.exec(text);
  const units: Readonly<Record<string, number>> = {
    ms: 1,
    s: 1_000,
    m: 60_000,
  };
  const value = match ? Number(match[1]) * (units[match[2] ?? ""] ?? 0) : 0;
  if (value <= 0) {
    throw invalidValue(
      flag,
      text,
      'a positive duration such as "30s" or "500ms"',
    );
  }
  return value;
}
// --- end of issue 11 ---
