import assert from "node:assert/strict";
import {
  ConfigError,
  formatUsage,
  parseCommandLine,
} from "../../src/config.ts";
import { run } from "./_config.ts";

Deno.test("-max-request-body-bytes defaults to 32 MiB and is set by flag or YAML key", () => {
  assert.equal(run([]).config.maxRequestBodyBytes, 32 * 1024 * 1024);
  assert.equal(
    run(["-max-request-body-bytes=1048576"]).config.maxRequestBodyBytes,
    1048576,
  );
  const yaml = run(["-configuration={max-request-body-bytes: 2048}"]);
  assert.equal(yaml.config.maxRequestBodyBytes, 2048);
  assert.deepEqual(yaml.sources.maxRequestBodyBytes, {
    kind: "yaml",
    name: "max-request-body-bytes",
  });
  assert.match(formatUsage(), /-max-request-body-bytes/);
});

Deno.test("-max-request-body-bytes of 0 or less exits 2 naming the flag", () => {
  for (const value of ["0", "-1"]) {
    assert.throws(
      () => parseCommandLine([`-max-request-body-bytes=${value}`], {}),
      (error: unknown) =>
        error instanceof ConfigError && error.exitCode === 2 &&
        error.flag === "max-request-body-bytes",
    );
  }
});
