import assert from "node:assert/strict";
import { startDeadline } from "../src/deadline.ts";
import { aborted, withDeadline } from "./support/deadline.ts";

/**
 * Resolves after a timer of `ms` started now: timers of equal length fire in
 * the order they were started, so one started after a deadline's fires
 * after it.
 */
function timerAfter(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("a deadline of 0 is none: the caller's own signal, nothing armed", () => {
  const parent = new AbortController();
  const deadline = startDeadline(parent.signal, 0);
  assert.equal(deadline.signal, parent.signal);
  assert.equal(deadline.expired, false);
  deadline.clear();
});

Deno.test("a deadline that passes aborts its signal with a TimeoutError and says it expired", async () => {
  const parent = new AbortController();
  const deadline = startDeadline(parent.signal, 5);
  await withDeadline(aborted(deadline.signal), 2000, "the deadline to pass");
  assert.equal(deadline.expired, true);
  assert.equal((deadline.signal.reason as DOMException).name, "TimeoutError");
  assert.equal(parent.signal.aborted, false);
  deadline.clear();
});

Deno.test("the caller's abort passes through with its reason and is not an expiry, even once the time is up", async () => {
  const parent = new AbortController();
  const deadline = startDeadline(parent.signal, 10);
  const after = timerAfter(10);
  const reason = new Error("client left");
  parent.abort(reason);
  assert.equal(deadline.signal.aborted, true);
  assert.equal(deadline.signal.reason, reason);
  await after;
  assert.equal(deadline.expired, false);
  deadline.clear();
});

Deno.test("a deadline already given an aborted signal starts aborted", () => {
  const reason = new Error("gone before");
  const deadline = startDeadline(AbortSignal.abort(reason), 60_000);
  assert.equal(deadline.signal.aborted, true);
  assert.equal(deadline.signal.reason, reason);
  deadline.clear();
});

Deno.test("clear disarms the timer and lets go of the caller's signal", async () => {
  const parent = new AbortController();
  const deadline = startDeadline(parent.signal, 10);
  const after = timerAfter(10);
  deadline.clear();
  await after;
  assert.equal(deadline.signal.aborted, false);
  assert.equal(deadline.expired, false);
  parent.abort(new Error("after the work"));
  assert.equal(deadline.signal.aborted, false);
});

/**
 * Where `AbortSignal.timeout` may stay: its timer cannot be cleared, so each
 * use keeps a signal alive for the whole timeout after the work ended. Not
 * per request, these are bounded: one per Kubernetes list, one per connect
 * probe of a cold upstream host.
 */
const TIMEOUT_SIGNAL_ALLOWED = new Set([
  "src/allowlist/pool_watch.ts",
  "src/upstream/client.ts",
]);

Deno.test("no AbortSignal.timeout on a request's path: deadlines there are startDeadline's, cleared with their work", async () => {
  const root = new URL("../", import.meta.url);
  const found: string[] = [];
  async function scan(dir: string): Promise<void> {
    for await (const entry of Deno.readDir(new URL(dir, root))) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await scan(path);
      else if (
        path.endsWith(".ts") &&
        (await Deno.readTextFile(new URL(path, root))).includes(
          "AbortSignal.timeout(",
        )
      ) {
        found.push(path);
      }
    }
  }
  await scan("src");
  assert.deepEqual(
    found.filter((path) => !TIMEOUT_SIGNAL_ALLOWED.has(path)),
    [],
  );
  // The list stays honest: an entry that no longer uses it goes.
  assert.deepEqual(found.sort(), [...TIMEOUT_SIGNAL_ALLOWED].sort());
});
