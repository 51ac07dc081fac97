/**
 * @module
 * Reads the file named by `-configuration-file`, bounded: a regular file of at
 * most {@linkcode MAX_CONFIGURATION_BYTES} of UTF-8 text. A FIFO, a device or a
 * file that keeps growing cannot hang the start or fill memory.
 */

import { ConfigError } from "./config_error.ts";
import { MAX_CONFIGURATION_BYTES } from "./config_yaml.ts";

/** The Go sidecar's prefix for a configuration file it cannot read. */
const READ_PREFIX = "failed to read sidecar configuration from file: ";

/** Reads the configuration file at `path`; throws {@linkcode ConfigError} (exit 2) naming it. */
export function readConfigurationFile(
  path: string,
  maxBytes: number = MAX_CONFIGURATION_BYTES,
): string {
  const fail = (detail: string, cause?: unknown): ConfigError =>
    new ConfigError(`${READ_PREFIX}"${path}": ${detail}`, {
      exitCode: 2,
      flag: "configuration-file",
      cause,
    });
  let bytes: Uint8Array;
  try {
    // Checked before opening: opening a FIFO for reading blocks until a writer comes.
    if (!Deno.statSync(path).isFile) throw fail("not a regular file");
    using file = Deno.openSync(path, { read: true });
    bytes = readAtMost(file, maxBytes + 1);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw fail(describeFsError(error), error);
  }
  if (bytes.length > maxBytes) {
    throw fail(`larger than ${maxBytes} bytes`);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (error) {
    throw fail("not UTF-8 text", error);
  }
}

/** Up to `limit` bytes of `file`: stops at the limit, so a growing file cannot fill memory. */
function readAtMost(file: Deno.FsFile, limit: number): Uint8Array {
  const buffer = new Uint8Array(limit);
  let filled = 0;
  while (filled < limit) {
    const read = file.readSync(buffer.subarray(filled));
    if (read === null) break;
    filled += read;
  }
  return buffer.subarray(0, filled);
}

function describeFsError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file or directory";
  if (
    error instanceof Deno.errors.PermissionDenied ||
    error instanceof Deno.errors.NotCapable
  ) {
    return "permission denied";
  }
  return error instanceof Error ? error.message : String(error);
}
