/**
 * @module
 * The settings of the optional stages around P/D: the encoder stage
 * (`-ec-connector`) and chunked decode (`-decode-chunk-size`), checked with
 * the Go sidecar's messages (delta §1.3).
 */

import { ConfigError } from "./config_error.ts";
import {
  EC_CONNECTOR_NAMES,
  type EcConnectorName,
  type ParserSpecs,
} from "./flag_table.ts";
import type { FlagValues } from "./flags.ts";
import { parseGoChoice } from "./flag_values.ts";

/** The stage settings of a {@linkcode Config}. */
export interface StageSettings {
  /** `-ec-connector`; "" disables the encoder stage. */
  readonly ecConnector: EcConnectorName | "";
  /** `-decode-chunk-size`: tokens per decode chunk; 0 disables chunked decode. */
  readonly decodeChunkSize: number;
}

/** Reads and checks the stage settings; throws {@linkcode ConfigError} (exit 2) naming the flag. */
export function resolveStageSettings(
  values: FlagValues<ParserSpecs>,
): StageSettings {
  const ecText = values["ec-connector"] ?? "";
  const ecConnector = ecText === ""
    ? ""
    : parseGoChoice("ec-connector", ecText, { choices: EC_CONNECTOR_NAMES });
  const decodeChunkSize = values["decode-chunk-size"] ?? 0;
  if (decodeChunkSize < 0) {
    throw new ConfigError(
      "--decode-chunk-size must be a non-negative integer (0 disables chunked decode), " +
        `got ${decodeChunkSize}`,
      { exitCode: 2, flag: "decode-chunk-size" },
    );
  }
  return { ecConnector, decodeChunkSize };
}
