import assert from "node:assert/strict";
import { formatGoDuration, parseGoDuration } from "../src/duration.ts";
import { ConfigError, parseCommandLine } from "../src/config.ts";

Deno.test("parseGoDuration reads Go's duration syntax in milliseconds", () => {
  const cases: [string, number][] = [
    ["0", 0],
    ["500ms", 500],
    ["5s", 5000],
    ["2m", 120_000],
    ["1h30m", 5_400_000],
    ["1.5s", 1500],
    [".5s", 500],
    ["250us", 0.25],
    ["-1s", -1000],
  ];
  for (const [text, ms] of cases) assert.equal(parseGoDuration(text), ms, text);
  for (const text of ["", "5", "s", "5x", "1.s2", "--1s", " 5s"]) {
    assert.equal(parseGoDuration(text), undefined, text);
  }
});

Deno.test("formatGoDuration prints as Go does", () => {
  assert.equal(formatGoDuration(0), "0s");
  assert.equal(formatGoDuration(200), "200ms");
  assert.equal(formatGoDuration(90_000), "1m30s");
  assert.equal(formatGoDuration(3_600_000), "1h0m0s");
});

function configErrorOf(args: string[]): ConfigError {
  try {
    parseCommandLine(args, {});
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  return assert.fail(`expected ${JSON.stringify(args)} to be rejected`);
}

Deno.test("duration flags and keys are read in Go syntax and refused, naming the flag, otherwise", () => {
  const run = parseCommandLine([
    "-prefill-timeout=90s",
    "-configuration={stream-idle-timeout: 2m, prefill-max-retries: 2, encoder-timeout: 45s}",
  ], {});
  assert.equal(run.kind, "run");
  if (run.kind !== "run") return;
  assert.equal(run.config.prefillTimeout, 90_000);
  assert.equal(run.config.streamIdleTimeout, 120_000);
  assert.equal(run.config.prefillMaxRetries, 2);
  assert.equal(run.config.encoderTimeout, 45_000);
  for (
    const flag of [
      "connect-timeout",
      "shutdown-grace",
      "prefill-timeout",
      "encoder-timeout",
    ]
  ) {
    for (const value of ["5", "-1s", "soon"]) {
      const error = configErrorOf([`-${flag}=${value}`]);
      assert.equal(error.exitCode, 2);
      assert.equal(error.flag, flag);
    }
  }
  assert.equal(
    configErrorOf(["-prefill-failure-policy=retry"]).flag,
    "prefill-failure-policy",
  );
});

Deno.test("-prefill-retry-backoff is checked as the Go sidecar checks it: positive only when retries are on", () => {
  for (const value of ["0s", "0", "-1s", "-1m30s"]) {
    const error = configErrorOf([
      "-prefill-max-retries=2",
      `-prefill-retry-backoff=${value}`,
    ]);
    const shown = value === "0" ? "0s" : value;
    assert.deepEqual([error.exitCode, error.flag, error.message], [
      1,
      "prefill-retry-backoff",
      `--prefill-retry-backoff must be positive when --prefill-max-retries > 0, got ${shown}`,
    ]);
  }
  // Go parses any duration and checks it only with retries, so these start.
  for (
    const args of [["-prefill-retry-backoff=-1s"], [
      "-prefill-max-retries=-3",
      "-prefill-retry-backoff=0s",
    ], ["-prefill-retry-backoff=720h"]]
  ) {
    const run = parseCommandLine(args, {});
    assert.equal(run.kind, "run", args.join(" "));
    if (run.kind === "run") assert.equal(run.config.prefillMaxRetries, 0);
  }
  const error = configErrorOf(["-prefill-retry-backoff=soon"]);
  assert.deepEqual([error.exitCode, error.flag], [2, "prefill-retry-backoff"]);
  // With retries on it becomes a timer, which the runtime bounds.
  const long = configErrorOf([
    "-prefill-max-retries=1",
    "-prefill-retry-backoff=720h",
  ]);
  assert.deepEqual([long.exitCode, long.flag, long.message], [
    2,
    "prefill-retry-backoff",
    'Invalid value "720h" for flag "-prefill-retry-backoff": expected a Go duration of at most 596h31m23.647s',
  ]);
});
