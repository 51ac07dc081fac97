/**
 * @module
 * The `-print-config` table: every setting of the effective configuration,
 * its value and where it came from (flag, yaml, env or default).
 */

import type { Config, ConfigSources } from "./config.ts";
import { flagNameOf, type SettingSource } from "./config_sources.ts";
import { formatGoDuration } from "./duration.ts";
import { POD_IP_ENV, SGLANG_BOOTSTRAP_PORT_ENV } from "./flag_table.ts";
import { DURATION_SETTINGS } from "./resilience_flags.ts";

/** Settings shown under another name than their field's kebab-case: the flag or variable. */
const DISPLAY_NAMES: Readonly<Record<string, string>> = {
  connector: "kv-connector",
  verbosity: "v",
  podIp: POD_IP_ENV,
  sglangBootstrapPort: SGLANG_BOOTSTRAP_PORT_ENV,
  ssrfProtection: "enable-ssrf-protection",
  tlsStages: "enable-tls",
  insecureSkipVerifyStages: "tls-insecure-skip-verify",
  caCertPath: "ca-cert",
};

/**
 * One line per setting, `SETTING  VALUE  SOURCE`, in aligned columns. Values are JSON (strings
 * quoted), durations in Go syntax. The source is `flag`, `yaml`, `env` or `default`, followed by the flag, key or
 * variable that gave the value when it is not the setting's own (`flag -vllm-port`).
 */
export function formatEffectiveConfig(
  config: Config,
  sources: ConfigSources,
): string {
  const bySetting: Readonly<Record<string, SettingSource>> = sources;
  const rows: [string, string, string][] = [["SETTING", "VALUE", "SOURCE"]];
  for (const [field, value] of Object.entries(config)) {
    const source = bySetting[field];
    if (source === undefined) continue;
    const name = Object.hasOwn(DISPLAY_NAMES, field)
      ? DISPLAY_NAMES[field] ?? field
      : flagNameOf(field);
    const shown = DURATION_SETTINGS.has(field) && typeof value === "number"
      ? formatGoDuration(value)
      // An unset optional setting (no InferencePool) shows as JSON's null.
      : JSON.stringify(value ?? null);
    rows.push([
      name,
      shown,
      describeSource(source, name),
    ]);
  }
  const widths = [0, 1].map((column) =>
    Math.max(...rows.map((row) => row[column]?.length ?? 0))
  );
  const lines = rows.map(([name, value, source]) =>
    `${name.padEnd(widths[0] ?? 0)}  ${value.padEnd(widths[1] ?? 0)}  ${source}`
  );
  return lines.join("\n") + "\n";
}

/** The layer, then the flag, key or variable that gave the value when it is not the setting's own. */
function describeSource(source: SettingSource, setting: string): string {
  if (source.kind === "default") return "default";
  if (source.name === setting) return source.kind;
  const name = source.kind === "flag" ? `-${source.name}` : source.name;
  return `${source.kind} ${name}`;
}
