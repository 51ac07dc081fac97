/**
 * @module
 * The layers a setting can come from and their precedence, explicit flag >
 * YAML > environment > default (base spec §1.2): loading the YAML
 * configuration, laying it under the flags, and remembering which layer
 * supplied each value, for messages and `-print-config`.
 */

import { ConfigError } from "./config_error.ts";
import { readConfigurationFile } from "./config_file.ts";
import {
  lookupYamlKey,
  parseConfigurationYaml,
  type YamlValues,
} from "./config_yaml.ts";
import type { Env, ParserSpecs } from "./flag_table.ts";
import type { FlagSpecs, FlagValues, ParsedFlags } from "./flags.ts";

/** The layer that gave a flag's value: the command line or the YAML configuration. */
export type Layer = "flag" | "yaml";

/** Which layer gave each flag value present; absent names were given by neither. */
export type Given = Readonly<Record<string, Layer>>;

/** Where a setting's value came from; `name` is the flag, YAML key or variable that gave it. */
export type SettingSource =
  | { readonly kind: Layer | "env"; readonly name: string }
  | { readonly kind: "default" };

/** The default, as a {@linkcode SettingSource}. */
export const DEFAULT_SOURCE: SettingSource = { kind: "default" };

/** Reads `-configuration-file`; tests pass their own. */
export type ReadFile = (path: string) => string;

/** The flag values after the YAML configuration was laid under the command line. */
export interface LayeredValues {
  readonly values: FlagValues<ParserSpecs>;
  readonly given: Given;
}

/** What the settings modules read: the layered flag values and the environment. */
export interface SettingsInput extends LayeredValues {
  readonly env: Env;
}

/** A value and where it came from. */
export interface Sourced<T> {
  readonly value: T;
  readonly source: SettingSource;
}

/** Settings a module resolved, with the sources of those not read straight from the flag named like their field. */
export interface ResolvedSettings<S> {
  readonly settings: S;
  readonly sources: Readonly<Partial<Record<keyof S, SettingSource>>>;
}

/**
 * Reads the YAML configuration the flags name, if any, and lays it under them
 * ({@linkcode layerValues}).
 */
export function layerConfiguration(
  parsed: ParsedFlags<ParserSpecs>,
  readFile: ReadFile = readConfigurationFile,
): LayeredValues {
  return layerValues(parsed, loadConfiguration(parsed.values, readFile));
}

/**
 * Lays YAML values under the command line's: a key applies unless its flag, or a flag it
 * yields to (`YamlKey.yieldsTo`), was given. Unlike Go, a key applies whatever its value
 * (`port: 0` is refused as `-port=0` is, not skipped for being zero).
 */
export function layerValues<S extends FlagSpecs>(
  parsed: ParsedFlags<S>,
  yaml: YamlValues,
): { readonly values: FlagValues<S>; readonly given: Given } {
  const given: Record<string, Layer> = {};
  for (const name of parsed.order) given[name] = "flag";
  const values: Record<string, unknown> = { ...parsed.values };
  for (const [name, value] of Object.entries(yaml)) {
    const blockers = [name, ...(lookupYamlKey(name)?.yieldsTo ?? [])];
    if (blockers.some((flag) => given[flag] === "flag")) continue;
    values[name] = value;
    given[name] = "yaml";
  }
  // Sound for the keys of S: YAML values are converted to their flag's kind by the parser.
  return { values: values as FlagValues<S>, given };
}

/** Go's rule: an empty `-configuration` or `-configuration-file` counts as not given. */
function loadConfiguration(
  values: FlagValues<ParserSpecs>,
  readFile: ReadFile,
): YamlValues {
  const inline = values.configuration ?? "";
  const path = values["configuration-file"] ?? "";
  if (inline !== "" && path !== "") {
    throw new ConfigError(
      "flags --configuration and --configuration-file are mutually exclusive",
      { exitCode: 1, flag: "configuration-file" },
    );
  }
  if (inline !== "") {
    return parseConfigurationYaml(inline, { flag: "configuration" });
  }
  if (path !== "") {
    return parseConfigurationYaml(readFile(path), {
      flag: "configuration-file",
    });
  }
  return {};
}

/** Where flag `name`'s value came from, when the value is the flag's as given. */
export function sourceOf(name: string, given: Given): SettingSource {
  const layer = given[name];
  return layer === undefined ? DEFAULT_SOURCE : { kind: layer, name };
}

/** What to use instead of a deprecated flag: on the command line, and as a YAML key. */
export interface Replacement {
  /** After `--`: `model-server-port`, `enable-tls=prefiller`. */
  readonly flag: string;
  /** What to write in the YAML configuration: `model-server-port`, `enable-tls: [prefiller]`. */
  readonly key: string;
  /** Appended to a flag's notice only. */
  readonly flagNote?: string;
}

/**
 * The deprecation notice for `name`: pflag's MarkDeprecated wording for a flag; Go says
 * nothing for a YAML key, but the key goes away with the flag.
 */
export function deprecationNotice(
  name: string,
  given: Given,
  replacement: Replacement,
): string {
  if (given[name] === "yaml") {
    return `Configuration key "${name}" is deprecated, use "${replacement.key}" instead`;
  }
  return `Flag --${name} has been deprecated, use --${replacement.flag} instead${
    replacement.flagNote ?? ""
  }`;
}

/** How messages name the setting `name`: the flag, or the YAML key when the value came from there. */
export function settingLabel(name: string, given: Given): string {
  return given[name] === "yaml"
    ? `Configuration key "${name}"`
    : `Flag "-${name}"`;
}

/** How a message names a setting after "because": the flag, or the key when YAML gave it. */
export function quotedSetting(name: string, given: Given): string {
  return given[name] === "yaml" ? `"${name}"` : `"-${name}"`;
}

/**
 * `error` with the YAML key named when the bad value came from the configuration: the Go
 * messages (`--port start port 0 is …`) name the flag, which the operator may not have used.
 */
export function withLayerContext(error: unknown, given: Given): unknown {
  if (
    !(error instanceof ConfigError) || error.flag === undefined ||
    given[error.flag] !== "yaml"
  ) {
    return error;
  }
  return new ConfigError(
    `${error.message} (from configuration key "${error.flag}")`,
    { exitCode: error.exitCode, flag: error.flag, cause: error },
  );
}

/** The flag that sets the config field `field` when named alike: `enableP2pPull` → `enable-p2p-pull`. */
export function flagNameOf(field: string): string {
  return field.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

/**
 * The source of every setting: `explicit` where the resolution recorded one (aliases,
 * environment fallbacks), else the layer that gave the flag named like the field, else the
 * default. A field added to the configuration later is covered without a change here.
 */
export function completeSources<K extends string>(
  settings: Readonly<Record<K, unknown>>,
  given: Given,
  explicit: Readonly<Partial<Record<K, SettingSource>>>,
): Record<K, SettingSource> {
  const sources: Partial<Record<K, SettingSource>> = {};
  for (const field of Object.keys(settings) as K[]) {
    sources[field] = explicit[field] ?? sourceOf(flagNameOf(field), given);
  }
  // Sound: the loop set every key of `settings`.
  return sources as Record<K, SettingSource>;
}
