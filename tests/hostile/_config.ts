/**
 * @module
 * The configuration a command line yields, for the hostile tests of flags
 * that bound what a client can cost.
 */

import assert from "node:assert/strict";
import { type CommandLine, parseCommandLine } from "../../src/config.ts";

/** A command line that runs the sidecar. */
export type Run = Extract<CommandLine, { kind: "run" }>;

/** Parses `args` (no environment) and checks they run the sidecar. */
export function run(args: readonly string[]): Run {
  const result = parseCommandLine(args, {});
  assert.equal(result.kind, "run");
  return result as Run;
}
