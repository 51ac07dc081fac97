import assert from "node:assert/strict";
import { createWaiters, within } from "./deadline.ts";

Deno.test("until resolves with the first value that holds, checked now and on each notify", async () => {
  const waiters = createWaiters();
  const seen: string[] = ["a"];
  assert.equal(
    await waiters.until(() => seen.find((s) => s === "a"), "a"),
    "a",
  );
  const later = waiters.until(() => seen.find((s) => s === "b"), "b");
  seen.push("b");
  waiters.notify();
  assert.equal(await within(later, 1000, "b was missed"), "b");
});

Deno.test("until fails at its deadline naming what it waited for and the state then", async () => {
  const waiters = createWaiters();
  let state = "before";
  const waited = waiters.until(() => false, "the door to open", {
    ms: 20,
    detail: () => `state ${state}`,
  });
  state = "still shut";
  await assert.rejects(
    waited,
    new Error(
      "Timed out after 20 ms waiting for the door to open; state still shut",
    ),
  );
});

Deno.test("end fails the waits that do not hold, at once, naming the reason", async () => {
  const waiters = createWaiters();
  const waited = waiters.until(() => false, "a line", { ms: 60_000 });
  waiters.end("The process exited");
  await assert.rejects(
    within(waited, 1000, "end did not fail the wait"),
    new Error("The process exited before a line"),
  );
  await assert.rejects(
    waiters.until(() => false, "another line", { ms: 60_000 }),
    new Error("The process exited before another line"),
  );
  assert.equal(await waiters.until(() => 1, "a value"), 1);
});
