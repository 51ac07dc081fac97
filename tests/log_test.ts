import assert from "node:assert/strict";
import { createLogger } from "../src/log.ts";

function capture(verbosity: number) {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    verbosity,
    name: "test",
    write: (line) => lines.push(JSON.parse(line)),
  });
  return { log, lines };
}

Deno.test("logger writes JSON lines with level, ts, logger, msg and fields", () => {
  const { log, lines } = capture(0);
  log.child({ request_id: "r1" }).info("hello", {
    n: 1,
    error: new Error("boom"),
  });
  assert.equal(lines.length, 1);
  const [line] = lines;
  assert.equal(line?.level, "info");
  assert.equal(typeof line?.ts, "number");
  assert.equal(line?.logger, "test");
  assert.equal(line?.msg, "hello");
  assert.equal(line?.request_id, "r1");
  assert.deepEqual(line?.error, { name: "Error", message: "boom" });
});

Deno.test("logger filters by klog verbosity: debug at 4, trace at 5", () => {
  for (
    const [verbosity, expected] of [[-1, ["error"]], [0, [
      "error",
      "warn",
      "info",
    ]], [
      4,
      ["error", "warn", "info", "debug"],
    ], [5, ["error", "warn", "info", "debug", "trace"]]] as const
  ) {
    const { log, lines } = capture(verbosity);
    log.error("e");
    log.warn("w");
    log.info("i");
    log.debug("d");
    log.trace("t");
    assert.deepEqual(
      lines.map((l) => l.level),
      expected,
      `verbosity ${verbosity}`,
    );
    assert.equal(log.enabled(5), verbosity >= 5);
  }
});
