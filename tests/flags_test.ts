import assert from "node:assert/strict";
import { FlagError, parseFlags, parseGoBool } from "../src/flags.ts";

const SPECS = {
  name: "string",
  count: "int",
  on: "bool",
  stages: "list",
} as const;

function flagErrorOf(args: readonly string[]): FlagError {
  try {
    parseFlags(args, SPECS);
  } catch (error) {
    assert.ok(
      error instanceof FlagError,
      `expected a FlagError, got ${String(error)}`,
    );
    return error;
  }
  assert.fail(`expected ${JSON.stringify(args)} to be rejected`);
}

Deno.test("parseFlags accepts -name=value and --name=value", () => {
  assert.deepEqual(parseFlags(["-name=a", "--count=3"], SPECS).values, {
    name: "a",
    count: 3,
  });
});

Deno.test("parseFlags accepts -name value and --name value for non-bool flags", () => {
  assert.deepEqual(parseFlags(["-name", "a", "--count", "3"], SPECS).values, {
    name: "a",
    count: 3,
  });
});

Deno.test("parseFlags keeps everything after the first = in the value", () => {
  assert.equal(parseFlags(["-name=a=b=c"], SPECS).values.name, "a=b=c");
});

Deno.test("parseFlags accepts an empty inline string value", () => {
  assert.equal(parseFlags(["-name="], SPECS).values.name, "");
});

Deno.test("parseFlags accepts an inline value that starts with a dash", () => {
  assert.equal(parseFlags(["-name=-x"], SPECS).values.name, "-x");
});

Deno.test("parseFlags accepts a negative number as a separate value", () => {
  assert.equal(parseFlags(["-count", "-3"], SPECS).values.count, -3);
  assert.equal(parseFlags(["-name", "-3"], SPECS).values.name, "-3");
});

Deno.test("parseFlags types each value by its kind", () => {
  const { values } = parseFlags(
    ["-name=a", "-count=1", "-on", "-stages=x"],
    SPECS,
  );
  // Compile-time checks (deno check): each property has its kind's type.
  const name: string | undefined = values.name;
  const count: number | undefined = values.count;
  const on: boolean | undefined = values.on;
  const stages: readonly string[] | undefined = values.stages;
  assert.deepEqual([name, count, on, stages], ["a", 1, true, ["x"]]);
});

Deno.test("parseFlags leaves flags that were not given absent", () => {
  const { values, order, rest } = parseFlags([], SPECS);
  assert.deepEqual(values, {});
  assert.deepEqual(order, []);
  assert.deepEqual(rest, []);
  assert.equal("on" in values, false);
});

Deno.test("parseFlags sets a bare boolean -on or --on to true", () => {
  assert.equal(parseFlags(["-on"], SPECS).values.on, true);
  assert.equal(parseFlags(["--on"], SPECS).values.on, true);
});

Deno.test("parseFlags reads every Go ParseBool spelling after =", () => {
  for (const text of ["1", "t", "T", "TRUE", "true", "True"]) {
    assert.equal(parseFlags([`-on=${text}`], SPECS).values.on, true, text);
  }
  for (const text of ["0", "f", "F", "FALSE", "false", "False"]) {
    assert.equal(parseFlags([`--on=${text}`], SPECS).values.on, false, text);
  }
});

Deno.test("parseFlags rejects a boolean value Go would not parse", () => {
  for (const text of ["yes", "no", "", "tRUE", "2"]) {
    const error = flagErrorOf([`-on=${text}`]);
    assert.equal(
      error.message,
      `Invalid value "${text}" for flag "-on": expected a boolean (true or false)`,
    );
    assert.equal(error.flag, "on");
    assert.equal(error.reason, "invalid-value");
  }
});

Deno.test("parseFlags rejects a non-integer value for an int flag", () => {
  for (
    const text of ["abc", "1.5", "0x10", "", "1e3", "99999999999999999999"]
  ) {
    const error = flagErrorOf([`-count=${text}`]);
    assert.equal(
      error.message,
      `Invalid value "${text}" for flag "-count": expected an integer`,
    );
    assert.equal(error.flag, "count");
  }
});

Deno.test("parseFlags reads signed base-10 integers", () => {
  assert.equal(parseFlags(["-count=+7"], SPECS).values.count, 7);
  assert.equal(parseFlags(["-count=-7"], SPECS).values.count, -7);
  assert.equal(parseFlags(["-count=010"], SPECS).values.count, 10);
});

Deno.test("parseFlags lets the last value of a repeated flag win", () => {
  const { values, order } = parseFlags(
    ["-name=a", "--name", "b", "-count=1", "-count=2", "-on", "-on=false"],
    SPECS,
  );
  assert.deepEqual(values, { name: "b", count: 2, on: false });
  assert.deepEqual(order, ["name", "name", "count", "count", "on", "on"]);
});

Deno.test("parseFlags appends repeated list flags and splits them on commas", () => {
  const { values } = parseFlags(
    ["-stages=prefiller,decoder", "--stages", "encoder", "-stages="],
    SPECS,
  );
  assert.deepEqual(values.stages, ["prefiller", "decoder", "encoder"]);
});

Deno.test("parseFlags stops at -- and returns the rest untouched", () => {
  const { values, rest } = parseFlags(
    ["-on", "--", "-name=x", "plain", "--"],
    SPECS,
  );
  assert.deepEqual(values, { on: true });
  assert.deepEqual(rest, ["-name=x", "plain", "--"]);
});

Deno.test("parseFlags rejects an unknown flag and names it with one dash", () => {
  for (const arg of ["-foo", "--foo", "--foo=bar"]) {
    const error = flagErrorOf([arg]);
    assert.equal(error.message, 'Unknown flag "-foo"');
    assert.equal(error.flag, "foo");
    assert.equal(error.reason, "unknown-flag");
  }
});

Deno.test("parseFlags does not treat Object.prototype members as flags", () => {
  assert.equal(flagErrorOf(["-constructor=x"]).reason, "unknown-flag");
  assert.equal(flagErrorOf(["--toString"]).reason, "unknown-flag");
});

Deno.test("parseFlags rejects a non-bool flag with no value left", () => {
  const error = flagErrorOf(["-on", "-name"]);
  assert.equal(error.message, 'Flag "-name" needs a value');
  assert.equal(error.flag, "name");
  assert.equal(error.reason, "missing-value");
});

Deno.test("parseFlags rejects a non-bool flag followed by another flag", () => {
  const error = flagErrorOf(["-name", "-count=3"]);
  assert.equal(
    error.message,
    'Flag "-name" needs a value but is followed by "-count=3"; ' +
      'if that is the value, write "-name=-count=3"',
  );
  assert.equal(error.flag, "name");
  assert.equal(flagErrorOf(["-name", "--"]).reason, "missing-value");
});

Deno.test("parseFlags rejects bad flag syntax like Go", () => {
  for (const arg of ["---name=x", "-=x", "--=x"]) {
    const error = flagErrorOf([arg]);
    assert.equal(error.message, `Bad flag syntax "${arg}"`);
    assert.equal(error.reason, "bad-syntax");
    assert.equal(error.flag, undefined);
  }
});

Deno.test("parseFlags rejects positional arguments and a bare dash", () => {
  for (
    const args of [["plain"], ["-name=a", "plain"], ["-"], ["-count", "3", "x"]]
  ) {
    const error = flagErrorOf(args);
    const arg = args.at(-1);
    assert.equal(
      error.message,
      `Unexpected argument "${arg}": expected a flag such as "-name=value"`,
    );
    assert.equal(error.reason, "positional");
    assert.equal(error.flag, undefined);
  }
});

Deno.test("parseFlags explains = for a value right after a bare boolean flag", () => {
  const error = flagErrorOf(["-on", "false", "-count", "9"]);
  assert.equal(
    error.message,
    'Unexpected argument "false" after flag "-on": boolean flags take their value with "=", ' +
      'e.g. "-on=false"',
  );
  assert.equal(error.flag, "on");
  assert.equal(error.reason, "positional");
});

Deno.test("parseFlags suggests -on=false when the stray argument is not a boolean", () => {
  assert.match(flagErrorOf(["--on", "maybe"]).message, /e\.g\. "-on=false"$/);
  assert.match(flagErrorOf(["--on", "1"]).message, /e\.g\. "-on=1"$/);
});

Deno.test("parseFlags gives no boolean hint after -on=true", () => {
  const error = flagErrorOf(["-on=true", "false"]);
  assert.equal(
    error.message,
    'Unexpected argument "false": expected a flag such as "-name=value"',
  );
});

Deno.test("FlagError is an Error named FlagError", () => {
  const error = flagErrorOf(["-nope"]);
  assert.ok(error instanceof Error);
  assert.equal(error.name, "FlagError");
});

Deno.test("parseGoBool accepts exactly Go's spellings", () => {
  assert.equal(parseGoBool("True"), true);
  assert.equal(parseGoBool("F"), false);
  for (
    const text of ["", "yes", " true", "true ", "tRue", "on", "constructor"]
  ) {
    assert.equal(parseGoBool(text), undefined, text);
  }
});
