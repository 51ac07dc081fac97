/**
 * @module
 * The connector and data-parallel settings of the Go sidecars, resolved from
 * flags and environment and checked in the newest Go sidecar's order with its
 * messages (`--port must be a valid integer, got "x"`, ...): the data-parallel
 * size, the listening and model-server port ranges, the connector and its
 * ports. Where Go lets a value that cannot work through, or blocks start on a
 * setting nothing uses, this module does the opposite and says so.
 */

import { ConfigError } from "./config_error.ts";
import {
  DEFAULT_SOURCE,
  deprecationNotice,
  quotedSetting,
  type ResolvedSettings,
  settingLabel,
  type SettingsInput,
  type Sourced,
  sourceOf,
} from "./config_sources.ts";
import {
  CONNECTOR_NAMES,
  type ConnectorName,
  DEFAULT_CONNECTOR,
  DEFAULT_SGLANG_BOOTSTRAP_PORT,
  defaultOf,
  type Env,
  MOONCAKE_BOOTSTRAP_PORT_ENV,
  P2P_CONNECTOR_PORT_ENV,
  POD_IP_ENV,
  SGLANG_BOOTSTRAP_PORT_ENV,
} from "./flag_table.ts";
import { parseDecimal } from "./flags.ts";
import { parseGoChoice } from "./flag_values.ts";

/** Which flag set the model-server port, for messages: Go names the one the operator used. */
type ModelServerFlag = "model-server-port" | "vllm-port";

/** The connector and data-parallel settings. */
export interface ConnectorSettings {
  readonly dataParallelSize: number;
  readonly port: number;
  readonly modelServerPort: number;
  readonly connector: ConnectorName;
  readonly mooncakeBootstrapPort: number;
  readonly p2pConnectorPort: number;
  readonly enableP2pPull: boolean;
  readonly sglangBootstrapPort: number;
  readonly podIp: string;
}

const MAX_PORT = 65535;

/**
 * Resolves the connector and data-parallel settings; throws {@linkcode ConfigError} with the
 * Go sidecar's message for the first invalid one, in Go's order. Appends warnings.
 */
export function resolveConnectorSettings(
  input: SettingsInput,
  warnings: string[],
): ResolvedSettings<ConnectorSettings> {
  const { values, env } = input;
  const dataParallelSize = parseDataParallelSize(
    values["data-parallel-size"] ?? defaultOf("data-parallel-size"),
  );
  const port = parsePortRange(values.port ?? defaultOf("port"), {
    flag: "port",
    count: dataParallelSize,
  });
  const modelServer = resolveModelServerPort(input, warnings);
  const modelServerPort = parsePortRange(modelServer.text, {
    flag: modelServer.flag,
    count: dataParallelSize,
    setting: modelServer.setting,
  });
  const resolvedConnector = resolveConnector(input, warnings);
  const connector = resolvedConnector.value;
  const enableP2pPull = values["enable-p2p-pull"] ?? false;
  const mooncake = resolvePortSetting(input, warnings, {
    flag: "mooncake-bootstrap-port",
    envName: MOONCAKE_BOOTSTRAP_PORT_ENV,
    fallback: defaultOf("mooncake-bootstrap-port"),
    usedBy: connector === "mooncake" ? undefined : "-kv-connector=mooncake",
  });
  const p2pUsed = connector === "offloading" ||
    (connector === "nixlv2" && enableP2pPull);
  const p2p = resolvePortSetting(input, warnings, {
    flag: "p2p-connector-port",
    envName: P2P_CONNECTOR_PORT_ENV,
    fallback: defaultOf("p2p-connector-port"),
    usedBy: p2pUsed
      ? undefined
      : "-kv-connector=offloading or -enable-p2p-pull",
  });
  if (p2pUsed) checkP2pRanks(p2p.value, dataParallelSize);
  if (enableP2pPull && connector !== "nixlv2") {
    throw new ConfigError(
      `--enable-p2p-pull requires --kv-connector=nixlv2 (got "${connector}")`,
      { exitCode: 1, flag: "enable-p2p-pull" },
    );
  }
  const sglang = resolveEnvPort(env, warnings, {
    envName: SGLANG_BOOTSTRAP_PORT_ENV,
    fallback: DEFAULT_SGLANG_BOOTSTRAP_PORT,
    used: connector === "sglang",
  });
  const podIp = env[POD_IP_ENV] ?? "";
  const settings = {
    dataParallelSize,
    port,
    modelServerPort,
    connector,
    mooncakeBootstrapPort: mooncake.value,
    p2pConnectorPort: p2p.value,
    enableP2pPull,
    sglangBootstrapPort: sglang.value,
    podIp,
  };
  checkPortsApart(settings, modelServer.flag);
  const sources = {
    modelServerPort: sourceOf(modelServer.setting, input.given),
    connector: resolvedConnector.source,
    mooncakeBootstrapPort: mooncake.source,
    p2pConnectorPort: p2p.source,
    sglangBootstrapPort: sglang.source,
    podIp: podIp === ""
      ? DEFAULT_SOURCE
      : { kind: "env", name: POD_IP_ENV } as const,
  };
  return { settings, sources };
}

function parseDataParallelSize(size: number): number {
  if (size < 1) {
    throw new ConfigError(
      `--data-parallel-size must be a positive integer, got ${size}`,
      { exitCode: 2, flag: "data-parallel-size" },
    );
  }
  return size;
}

/**
 * A string port flag whose `count` consecutive ports (one per data-parallel rank) must all be
 * valid; Go's checks and messages, prefixed with the flag.
 */
function parsePortRange(
  text: string,
  range: {
    readonly flag: string;
    readonly count: number;
    /** The flag or key that gave the value, when the message names another (Go's rule). */
    readonly setting?: string;
  },
): number {
  const { flag, count } = range;
  const setting = range.setting ?? flag;
  const port = parseDecimal(text);
  if (port === undefined) {
    throw new ConfigError(`--${flag} must be a valid integer, got "${text}"`, {
      exitCode: 2,
      flag: setting,
    });
  }
  if (count >= MAX_PORT) {
    throw new ConfigError(`--${flag} invalid port range`, {
      exitCode: 1,
      flag: setting,
    });
  }
  if (port < 1 || port > MAX_PORT) {
    throw new ConfigError(
      `--${flag} start port ${port} is out of valid range [1, ${MAX_PORT}]`,
      { exitCode: 2, flag: setting },
    );
  }
  const last = port + count - 1;
  if (last > MAX_PORT) {
    throw new ConfigError(
      `--${flag} port range [${port}, ${last}] exceeds maximum port value`,
      { exitCode: 1, flag: setting },
    );
  }
  return port;
}

/**
 * NEXT §1.2: `-model-server-port` wins over its deprecated alias `-vllm-port`; an empty
 * `-model-server-port` means "not given", as in Go. `flag` is the name Go's messages use:
 * `--vllm-port` only when that flag was given on the command line.
 */
function resolveModelServerPort(
  input: SettingsInput,
  warnings: string[],
): {
  readonly text: string;
  readonly flag: ModelServerFlag;
  readonly setting: ModelServerFlag;
} {
  const { values, given } = input;
  const current = values["model-server-port"];
  const legacy = values["vllm-port"];
  if (legacy !== undefined) {
    warnings.push(
      deprecationNotice("vllm-port", given, {
        flag: "model-server-port",
        key: "model-server-port",
        flagNote: "; --vllm-port will be removed after the deprecation period",
      }),
    );
  }
  if (current !== undefined && current !== "") {
    if (legacy !== undefined && legacy !== current) {
      warnings.push(
        `${settingLabel("vllm-port", given)} is ignored because ` +
          `${quotedSetting("model-server-port", given)} is set`,
      );
    }
    return {
      text: current,
      flag: "model-server-port",
      setting: "model-server-port",
    };
  }
  if (legacy !== undefined) {
    const flag = given["vllm-port"] === "flag"
      ? "vllm-port"
      : "model-server-port";
    return { text: legacy, flag, setting: "vllm-port" };
  }
  return {
    text: defaultOf("model-server-port"),
    flag: "model-server-port",
    setting: "model-server-port",
  };
}

/**
 * LATEST §1.3 step 2: the deprecated `-connector` fills an empty `-kv-connector`. Each is
 * checked under its own name (Go reports a bad `--connector` as `--kv-connector`).
 */
function resolveConnector(
  input: SettingsInput,
  warnings: string[],
): Sourced<ConnectorName> {
  const { values, given } = input;
  const kvText = values["kv-connector"];
  const kv = kvText === undefined || kvText === ""
    ? undefined
    : parseGoChoice("kv-connector", kvText, { choices: CONNECTOR_NAMES });
  let legacy: ConnectorName | undefined;
  if (values.connector !== undefined) {
    warnings.push(
      deprecationNotice("connector", given, {
        flag: "kv-connector",
        key: "kv-connector",
      }),
    );
    // Validated even when -kv-connector overrides it, as Go's Validate() does.
    legacy = parseGoChoice("connector", values.connector, {
      choices: CONNECTOR_NAMES,
    });
    if (kv !== undefined && kv !== legacy) {
      warnings.push(
        `${settingLabel("connector", given)} is ignored because ` +
          `${quotedSetting("kv-connector", given)} is set`,
      );
    }
  }
  if (kvText === "" && legacy === undefined) {
    // LATEST falls back to the default; NEXT refuses. Starting is what both kinds of
    // deployment need; the warning shows the templating slip.
    warnings.push(
      `${
        settingLabel("kv-connector", given)
      } is empty: using "${DEFAULT_CONNECTOR}"`,
    );
  }
  const connector = kv ?? legacy ?? DEFAULT_CONNECTOR;
  if (connector === "nixl") {
    // Same advice as the original sidecar's start-up warning.
    warnings.push(
      'Connector "nixl" is deprecated and will be removed in a future release in favor of "nixlv2"',
    );
  }
  const source = kv !== undefined
    ? sourceOf("kv-connector", given)
    : legacy !== undefined
    ? sourceOf("connector", given)
    : DEFAULT_SOURCE;
  return { value: connector, source };
}

/** A port flag with an environment fallback, as `-mooncake-bootstrap-port` and `-p2p-connector-port`. */
interface PortSetting {
  readonly flag: "mooncake-bootstrap-port" | "p2p-connector-port";
  readonly envName: string;
  readonly fallback: number;
  /** What makes the setting matter, when the configuration lacks it; undefined when it is used. */
  readonly usedBy: string | undefined;
}

/**
 * The flag's (or YAML key's) value, else the environment's, else the default. A bad given
 * value is refused with Go's message even when unused (bad input); an environment value
 * blocks start only when the connector uses it, since Go's "checked whatever the connector"
 * lets a stray variable stop a sidecar that never reads it (delta §11 item 13).
 */
function resolvePortSetting(
  input: SettingsInput,
  warnings: string[],
  setting: PortSetting,
): Sourced<number> {
  const { flag, usedBy } = setting;
  const value = input.values[flag];
  if (value === undefined) {
    return resolveEnvPort(input.env, warnings, {
      envName: setting.envName,
      fallback: setting.fallback,
      used: usedBy === undefined,
    });
  }
  if (!isPort(value)) {
    throw new ConfigError(
      `--${flag} must be between 1 and ${MAX_PORT}, got ${value}`,
      { exitCode: 2, flag },
    );
  }
  if (usedBy !== undefined) {
    warnings.push(
      `${settingLabel(flag, input.given)} has no effect without ${usedBy}`,
    );
  }
  return { value, source: sourceOf(flag, input.given) };
}

/**
 * A port from the environment. Unset or empty: the default. Not an integer: Go ignores it
 * silently; we use the default and warn. Out of range: refused when used (Go would send it),
 * else the default with a warning.
 */
function resolveEnvPort(
  env: Env,
  warnings: string[],
  options: {
    readonly envName: string;
    readonly fallback: number;
    readonly used: boolean;
  },
): Sourced<number> {
  const { envName, fallback } = options;
  const text = env[envName] ?? "";
  const defaulted = { value: fallback, source: DEFAULT_SOURCE };
  if (text === "") return defaulted;
  const port = parseDecimal(text);
  if (port !== undefined && isPort(port)) {
    return { value: port, source: { kind: "env", name: envName } };
  }
  if (port !== undefined && options.used) {
    throw new ConfigError(
      `Environment variable ${envName} has invalid value "${text}": ` +
        `expected a port number from 1 to ${MAX_PORT}`,
      { exitCode: 2 },
    );
  }
  warnings.push(
    `Environment variable ${envName} has invalid value "${text}": using ${fallback}`,
  );
  return defaulted;
}

function isPort(port: number): boolean {
  return port >= 1 && port <= MAX_PORT;
}

/** Rank r's P2P port is the base + r (delta §3.6), so the last rank's must exist too. */
function checkP2pRanks(port: number, dataParallelSize: number): void {
  const lastRank = dataParallelSize - 1;
  if (dataParallelSize > 1 && port + lastRank > MAX_PORT) {
    throw new ConfigError(
      `--p2p-connector-port ${port} plus data-parallel rank ${lastRank} exceeds ${MAX_PORT}`,
      { exitCode: 1, flag: "p2p-connector-port" },
    );
  }
}

/** The listening ports and the model-server ports must not meet, or a rank proxies to a sidecar. */
function checkPortsApart(
  settings: ConnectorSettings,
  modelServerFlag: ModelServerFlag,
): void {
  const { port, modelServerPort, dataParallelSize } = settings;
  if (Math.abs(port - modelServerPort) >= dataParallelSize) return;
  const message = dataParallelSize === 1
    ? `Flags "-port" and "-${modelServerFlag}" are both ${port}: the sidecar would proxy to itself`
    : `Ports ${port}-${port + dataParallelSize - 1} of "-port" and ` +
      `${modelServerPort}-${
        modelServerPort + dataParallelSize - 1
      } of "-${modelServerFlag}" ` +
      `overlap with "-data-parallel-size=${dataParallelSize}": the sidecar would proxy to itself`;
  throw new ConfigError(message, { exitCode: 1, flag: "port" });
}
