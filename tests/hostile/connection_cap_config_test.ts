import assert from "node:assert/strict";
import {
  ConfigError,
  formatUsage,
  parseCommandLine,
} from "../../src/config.ts";
import { run } from "./_config.ts";

Deno.test("-max-connections defaults to 0 (no cap) and is set by flag or YAML key", () => {
  assert.equal(run([]).config.maxConnections, 0);
  assert.equal(run(["-max-connections=2000"]).config.maxConnections, 2000);
  const yaml = run(["-configuration={max-connections: 512}"]);
  assert.equal(yaml.config.maxConnections, 512);
  assert.deepEqual(yaml.sources.maxConnections, {
    kind: "yaml",
    name: "max-connections",
  });
  assert.match(formatUsage(), /-max-connections int/);
});

Deno.test("-max-connections below 0 or not an integer exits 2 naming the flag", () => {
  for (const value of ["-1", "many", "1.5"]) {
    assert.throws(
      () => parseCommandLine([`-max-connections=${value}`], {}),
      (error: unknown) =>
        error instanceof ConfigError && error.exitCode === 2 &&
        error.flag === "max-connections",
    );
  }
});
