import assert from "node:assert/strict";
import { createLogger, FLUSH_DELAY_MS } from "../src/log.ts";

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

/** Runs `code` in a fresh Deno with `createLogger`, `flushLogOutput` and `mark` (a line straight to stderr) in scope; returns its stderr lines. */
async function stderrOf(code: string): Promise<string[]> {
  const logModule = new URL("../src/log.ts", import.meta.url).href;
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { createLogger, flushLogOutput } from "${logModule}";
const mark = (text) => Deno.stderr.writeSync(new TextEncoder().encode(text + "\\n"));
${code}`,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stderr);
  return text.split("\n").filter((line) => line !== "").map((line) =>
    line.startsWith("{") ? JSON.parse(line).msg : line
  );
}

Deno.test("logger on stderr keeps every line and their order through Deno.exit", async () => {
  const lines = await stderrOf(`
    const log = createLogger({ verbosity: 0 });
    log.info("first");
    log.info("second");
    Deno.exit(0);
  `);
  assert.deepEqual(lines, ["first", "second"]);
});

Deno.test("logger on stderr writes an error at once, after the lines before it; info lines wait", async () => {
  const lines = await stderrOf(`
    const log = createLogger({ verbosity: 0 });
    log.info("queued");
    log.error("urgent");
    mark("after error");
    log.info("later");
    mark("before the task ends");
    setTimeout(() => mark("next task"), 0);
  `);
  assert.deepEqual(lines, [
    "queued",
    "urgent",
    "after error",
    "before the task ends",
    "next task",
    "later",
  ]);
});

Deno.test("logger on stderr writes waiting info lines once FLUSH_DELAY_MS has passed, with no other line to push them", async () => {
  const lines = await stderrOf(`
    const log = createLogger({ verbosity: 0 });
    log.info("held");
    setTimeout(() => mark("well after the delay"), ${FLUSH_DELAY_MS} * 4);
  `);
  assert.deepEqual(lines, ["held", "well after the delay"]);
});

Deno.test("logger on stderr writes a burst of info lines when 64 KiB wait, without waiting for the delay", async () => {
  const lines = await stderrOf(`
    const log = createLogger({ verbosity: 0 });
    const padding = "x".repeat(100);
    for (let i = 0; i < 1000; i++) log.info("line " + i, { padding });
    mark("marked");
  `);
  const marked = lines.indexOf("marked");
  // 1,000 lines of about 170 characters pass 64 KiB at least twice.
  assert.ok(marked >= 700, `only ${marked} lines were written before the mark`);
  assert.deepEqual(
    lines.filter((line) => line !== "marked"),
    Array.from({ length: 1000 }, (_, i) => `line ${i}`),
  );
});

Deno.test("flushLogOutput writes the waiting lines at once (a thread about to be terminated)", async () => {
  const lines = await stderrOf(`
    const log = createLogger({ verbosity: 0 });
    log.info("pending");
    flushLogOutput();
    mark("after flush");
  `);
  assert.deepEqual(lines, ["pending", "after flush"]);
});

Deno.test("logger on stderr writes the waiting lines when an uncaught error or rejection ends the process", async () => {
  for (
    const crash of [
      'throw new Error("boom")',
      'Promise.reject(new Error("boom"))',
    ]
  ) {
    const lines = await stderrOf(`
      const log = createLogger({ verbosity: 0 });
      log.info("before the crash");
      setTimeout(() => { ${crash}; }, 0);
      setTimeout(() => {}, 1000);
    `);
    assert.equal(lines[0], "before the crash", crash);
    assert.ok(lines.some((line) => line.includes("boom")), crash);
  }
});

Deno.test("logger on stderr survives a closed stderr: the lines are dropped, the process goes on", async () => {
  const logModule = new URL("../src/log.ts", import.meta.url).href;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { createLogger } from "${logModule}";
      const log = createLogger({ verbosity: 0 });
      log.info("to a closed pipe");
      setTimeout(() => {
        log.warn("again");
        Deno.stdout.writeSync(new TextEncoder().encode("still running\\n"));
      }, 200);`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await child.stderr.cancel();
  const output = await child.output();
  assert.equal(new TextDecoder().decode(output.stdout), "still running\n");
  assert.equal(output.code, 0);
});

Deno.test("logger serializes errors nested in fields", () => {
  const { log, lines } = capture(0);
  log.child({ request_id: "r" }).error("failed", {
    detail: { cause: new Error("inner") },
    n: 10n,
  });
  assert.deepEqual(lines[0]?.detail, {
    cause: { name: "Error", message: "inner" },
  });
  assert.equal(lines[0]?.n, "10");
});
