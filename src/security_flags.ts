/**
 * @module
 * The SSRF-protection and upstream-TLS settings (issue 11), resolved from the
 * flags with the YAML configuration laid under them and the environment:
 * the InferencePool the allowlist follows, the static allowlist, the stages
 * reached over TLS and those whose certificates are not verified, with the
 * Go sidecar's messages and deprecation rules (LATEST §1.3 steps 3 and 4).
 */

import { ConfigError } from "./config_error.ts";
import {
  DEFAULT_SOURCE,
  deprecationNotice,
  quotedSetting,
  type ResolvedSettings,
  settingLabel,
  type SettingsInput,
  type SettingSource,
  type Sourced,
  sourceOf,
} from "./config_sources.ts";
import {
  defaultOf,
  INFERENCE_POOL_ENV,
  INFERENCE_POOL_NAME_ENV,
  INFERENCE_POOL_NAMESPACE_ENV,
  POOL_GROUPS,
  TLS_STAGES,
  type TlsStage,
} from "./flag_table.ts";
import {
  parseChoice,
  parseDurationValue,
  parseGoChoice,
} from "./flag_values.ts";
import { parseStaticEntry } from "./allowlist/static_list.ts";
import type { PoolGroup } from "./allowlist/pool_spec.ts";

type Values = SettingsInput["values"];

/** The InferencePool the allowlist follows; an empty namespace means the sidecar's own. */
export interface InferencePoolRef {
  readonly namespace: string;
  readonly name: string;
  readonly group: PoolGroup;
}

/** The SSRF-protection and upstream-TLS settings. */
export interface SecuritySettings {
  /** `-enable-ssrf-protection`: admit only ready pods of the InferencePool on its target ports. */
  readonly ssrfProtection: boolean;
  /** `-inference-pool` (or the deprecated pair) and `-pool-group`; undefined without SSRF protection. */
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

/**
 * Resolves the SSRF-protection and upstream-TLS settings; throws {@linkcode ConfigError} for
 * the first invalid one. Appends warnings.
 */
export function resolveSecuritySettings(
  input: SettingsInput,
  warnings: string[],
): ResolvedSettings<SecuritySettings> {
  const { values, given } = input;
  const ssrfProtection = values["enable-ssrf-protection"] ?? false;
  const inferencePool = resolveInferencePool(input, warnings);
  warnUnusedPoolSettings(input, { ssrfProtection, warnings });
  if (ssrfProtection && inferencePool.value === undefined) {
    // LATEST's message for a missing name; the namespace defaults to the sidecar's own.
    throw new ConfigError(
      "--inference-pool, --inference-pool-name, INFERENCE_POOL, or INFERENCE_POOL_NAME " +
        "environment variable is required when --enable-ssrf-protection is true",
      { exitCode: 1, flag: "inference-pool" },
    );
  }
  const allowedPrefillers = parseAllowedPrefillers(
    values["allowed-prefillers"] ?? [],
  );
  const tls = resolveStages(input, warnings, {
    flag: "enable-tls",
    prefiller: "prefiller-use-tls",
    decoder: "decoder-use-tls",
  });
  const skipVerify = resolveStages(input, warnings, {
    flag: "tls-insecure-skip-verify",
    prefiller: "prefiller-tls-insecure-skip-verify",
    decoder: "decoder-tls-insecure-skip-verify",
  });
  for (const stage of skipVerify.value) {
    if (!tls.value.includes(stage)) {
      warnings.push(
        `Stage "${stage}" skips TLS verification but does not use TLS: add it to "-enable-tls"`,
      );
    }
  }
  const settings = {
    ssrfProtection,
    inferencePool: ssrfProtection ? inferencePool.value : undefined,
    allowedPrefillers,
    allowlistSyncTimeoutMs: parseDurationValue(
      "allowlist-sync-timeout",
      values["allowlist-sync-timeout"] ?? defaultOf("allowlist-sync-timeout"),
      { positive: true },
    ),
    tlsStages: tls.value,
    insecureSkipVerifyStages: skipVerify.value,
    caCertPath: values["ca-cert"] ?? "",
  };
  const sources = {
    ssrfProtection: sourceOf("enable-ssrf-protection", given),
    inferencePool: ssrfProtection ? inferencePool.source : DEFAULT_SOURCE,
    allowlistSyncTimeoutMs: sourceOf("allowlist-sync-timeout", given),
    tlsStages: tls.source,
    insecureSkipVerifyStages: skipVerify.source,
    caCertPath: sourceOf("ca-cert", given),
  };
  return { settings, sources };
}

function parseAllowedPrefillers(entries: readonly string[]): string[] {
  const allowed = entries.map((entry) => entry.trim()).filter((entry) =>
    entry !== ""
  );
  for (const entry of allowed) {
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
  return allowed;
}

/** LATEST §1.3 step 3: `-inference-pool` (or INFERENCE_POOL) wins over the deprecated pair. */
function resolveInferencePool(
  input: SettingsInput,
  warnings: string[],
): Sourced<InferencePoolRef | undefined> {
  const { values, env, given } = input;
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
        deprecationNotice(name, given, {
          flag: "inference-pool",
          key: "inference-pool",
        }),
      );
    }
  }
  const flagged = values["inference-pool"];
  const combined = flagged ?? env[INFERENCE_POOL_ENV] ?? "";
  if (combined !== "") {
    const source: SettingSource = flagged === undefined
      ? { kind: "env", name: INFERENCE_POOL_ENV }
      : sourceOf("inference-pool", given);
    return { value: parseInferencePool(combined, group), source };
  }
  const namespace = values["inference-pool-namespace"] ??
    env[INFERENCE_POOL_NAMESPACE_ENV] ?? "";
  const flaggedName = values["inference-pool-name"];
  const name = flaggedName ?? env[INFERENCE_POOL_NAME_ENV] ?? "";
  if (name === "") return { value: undefined, source: DEFAULT_SOURCE };
  const source: SettingSource = flaggedName === undefined
    ? { kind: "env", name: INFERENCE_POOL_NAME_ENV }
    : sourceOf("inference-pool-name", given);
  return { value: { namespace, name, group }, source };
}

/** The settings that name the InferencePool, the one in use first. */
const POOL_SETTINGS = [
  "inference-pool",
  "inference-pool-namespace",
  "inference-pool-name",
] as const;

/**
 * Warns of pool settings given that will not be used: all of them without
 * SSRF protection (the pool alone protects nothing, which an operator may not
 * expect), else the deprecated pair when `-inference-pool` or INFERENCE_POOL
 * names the pool, as Go silently lets it.
 */
function warnUnusedPoolSettings(
  input: SettingsInput,
  options: { readonly ssrfProtection: boolean; readonly warnings: string[] },
): void {
  const { values, env, given } = input;
  const set = POOL_SETTINGS.filter((name) => values[name] !== undefined);
  if (!options.ssrfProtection) {
    for (const name of set) {
      options.warnings.push(
        `${
          settingLabel(name, given)
        } has no effect without -enable-ssrf-protection`,
      );
    }
    return;
  }
  // As `resolveInferencePool` chooses: an empty -inference-pool names none.
  const flagged = values["inference-pool"];
  const winner = flagged !== undefined
    ? flagged === "" ? undefined : quotedSetting("inference-pool", given)
    : (env[INFERENCE_POOL_ENV] ?? "") !== ""
    ? INFERENCE_POOL_ENV
    : undefined;
  if (winner === undefined) return;
  for (const name of set) {
    if (name === "inference-pool") continue;
    options.warnings.push(
      `${settingLabel(name, given)} is ignored because ${winner} is set`,
    );
  }
}

/** `namespace/name` or `name`, with LATEST's messages. */
function parseInferencePool(text: string, group: PoolGroup): InferencePoolRef {
  const parts = text.split("/");
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

/** A stage list and the deprecated per-stage bools that add to it. */
interface StageFlags {
  readonly flag: "enable-tls" | "tls-insecure-skip-verify";
  readonly prefiller: keyof Values;
  readonly decoder: keyof Values;
}

/**
 * A stage list flag plus the deprecated per-stage bools that add to it (LATEST §1.3 step 4).
 * The source is the list's when it was given, else the first deprecated bool's.
 */
function resolveStages(
  input: SettingsInput,
  warnings: string[],
  names: StageFlags,
): Sourced<TlsStage[]> {
  const { values, given } = input;
  const { flag } = names;
  const stages: TlsStage[] = [];
  for (const text of values[flag] ?? []) {
    const stage = parseGoChoice(flag, text.trim(), {
      choices: TLS_STAGES,
      subject: `--${flag} stages`,
    });
    if (!stages.includes(stage)) stages.push(stage);
  }
  let source = sourceOf(flag, given);
  for (const stage of ["prefiller", "decoder"] as const) {
    const name = names[stage];
    const value = values[name];
    if (value === undefined) continue;
    warnings.push(
      deprecationNotice(name, given, {
        flag: `${flag}=${stage}`,
        key: `${flag}: [${stage}]`,
      }),
    );
    if (source.kind === "default") source = sourceOf(name, given);
    if (value === true && !stages.includes(stage)) stages.push(stage);
  }
  return { value: stages, source };
}
