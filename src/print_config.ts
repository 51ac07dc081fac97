/**
 * @module
 * The effective configuration as people see it: the `-print-config` table
 * (every setting, its value and where it came from: flag, yaml, env or
 * default) and the start-up log line's object. Both name a setting by the
 * flag or variable that sets it.
 */

import type { Config, ConfigSources } from "./config.ts";
import { flagNameOf, type SettingSource } from "./config_sources.ts";
import { formatGoDuration } from "./duration.ts";
import {
  type ENV_VARS,
  type FlagName,
  POD_IP_ENV,
  SGLANG_BOOTSTRAP_PORT_ENV,
} from "./flag_table.ts";
import { DURATION_SETTINGS } from "./resilience_flags.ts";

/** A setting of a {@linkcode Config}: every field but the listener's rank. */
type Setting = keyof ConfigSources;

/** Settings shown under another name than their field's kebab-case: the flag or variable. */
const DISPLAY_NAMES: Readonly<
  Partial<Record<Setting, FlagName | typeof ENV_VARS[number]>>
> = {
  connector: "kv-connector",
  verbosity: "v",
  podIp: POD_IP_ENV,
  sglangBootstrapPort: SGLANG_BOOTSTRAP_PORT_ENV,
  ssrfProtection: "enable-ssrf-protection",
  tlsStages: "enable-tls",
  insecureSkipVerifyStages: "tls-insecure-skip-verify",
  caCertPath: "ca-cert",
};

/** The log line's keys are the display names in snake case, but `-v` is logged as `verbosity`. */
const LOG_NAMES: Readonly<Partial<Record<Setting, string>>> = {
  verbosity: "verbosity",
};

/** One setting as shown: its name, and its value with durations as Go text. */
interface ShownSetting {
  readonly setting: Setting;
  readonly name: string;
  readonly value: unknown;
  /** Whether `value` is a duration's Go text, shown bare. */
  readonly duration: boolean;
}

/** Every setting of `config`, in the config's order, as both views show it. */
function shownSettings(config: Config): ShownSetting[] {
  const { dataParallelRank: _rank, ...settings } = config;
  return Object.entries(settings).map(([field, value]) => {
    // Sound: the keys of a Config without its rank are exactly the settings.
    const setting = field as Setting;
    const duration = DURATION_SETTINGS.has(field) && typeof value === "number";
    return {
      setting,
      name: DISPLAY_NAMES[setting] ?? flagNameOf(field),
      value: duration ? formatGoDuration(value) : value,
      duration,
    };
  });
}

/**
 * One line per setting, `SETTING  VALUE  SOURCE`, in aligned columns. Values are JSON (strings
 * quoted), durations in Go syntax. The source is `flag`, `yaml`, `env` or `default`, followed by the flag, key or
 * variable that gave the value when it is not the setting's own (`flag -vllm-port`).
 */
export function formatEffectiveConfig(
  config: Config,
  sources: ConfigSources,
): string {
  const rows: [string, string, string][] = [["SETTING", "VALUE", "SOURCE"]];
  for (const { setting, name, value, duration } of shownSettings(config)) {
    const shown = duration
      ? String(value)
      // An unset optional setting (no InferencePool) shows as JSON's null.
      : JSON.stringify(value ?? null);
    rows.push([name, shown, describeSource(sources[setting], name)]);
  }
  const widths = [0, 1].map((column) =>
    Math.max(...rows.map((row) => row[column]?.length ?? 0))
  );
  const lines = rows.map(([name, value, source]) =>
    `${name.padEnd(widths[0] ?? 0)}  ${value.padEnd(widths[1] ?? 0)}  ${source}`
  );
  return lines.join("\n") + "\n";
}

/** The configuration as a plain object for the start-up log line (snake_case keys). */
export function describeConfig(config: Config): Record<string, unknown> {
  return Object.fromEntries(
    shownSettings(config).map(({ setting, name, value }) => [
      LOG_NAMES[setting] ?? name.toLowerCase().replaceAll("-", "_"),
      value,
    ]),
  );
}

/** The layer, then the flag, key or variable that gave the value when it is not the setting's own. */
function describeSource(source: SettingSource, setting: string): string {
  if (source.kind === "default") return "default";
  if (source.name === setting) return source.kind;
  const name = source.kind === "flag" ? `-${source.name}` : source.name;
  return `${source.kind} ${name}`;
}
