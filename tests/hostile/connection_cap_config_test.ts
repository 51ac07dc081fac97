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

Deno.test("-max-client-resets defaults to 100 and 0 turns the check off", () => {
  assert.equal(run([]).config.maxClientResets, 100);
  assert.equal(run(["-max-client-resets=0"]).config.maxClientResets, 0);
  assert.throws(
    () => parseCommandLine(["-max-client-resets=-1"], {}),
    (error: unknown) =>
      error instanceof ConfigError && error.flag === "max-client-resets",
  );
});
