import assert from "node:assert/strict";
import {
  type ListenerThreadsOptions,
  startListenerThreads,
} from "../src/listener_threads.ts";
import { within } from "./support/deadline.ts";
import { fakeCount } from "./support/fake_listener_thread.ts";
import { testConfig } from "./support/harness.ts";

/** Options starting `workers` - 1 fake threads in `mode` (see support/fake_listener_thread.ts). */
function fakeThreads(
  mode: "throw" | "die-when-scraped" | "stuck" | "serve",
  workers: number,
  onFailure: ListenerThreadsOptions["onFailure"] = () => {},
): ListenerThreadsOptions {
  return {
    // Any port: the fake threads listen on none; it asks for their metrics.
    config: testConfig({ workers, metricsPort: 9 }),
    tls: undefined,
    env: {},
    caCerts: [],
    entry: new URL(
      `./support/fake_listener_thread.ts?mode=${mode}`,
      import.meta.url,
    ),
    onFailure,
  };
}

Deno.test("a listener thread that throws once started is reported, and stopping it does not wait for an answer", async () => {
  const failed = Promise.withResolvers<[number, string]>();
  const threads = await startListenerThreads(
    fakeThreads(
      "throw",
      2,
      (index, message) => failed.resolve([index, message]),
    ),
  );
  const [index, message] = await within(
    failed.promise,
    5_000,
    "the thread's failure was never reported",
  );
  assert.equal(index, 1);
  assert.match(message, /listener thread 1 broke/);
  assert.equal(await threads[0]?.snapshot(), undefined);
  assert.equal(
    await within(
      threads[0]!.stop({ graceMs: 60_000 }),
      2_000,
      "stopping a failed thread waited for its answer",
    ),
    false,
  );
});

Deno.test("stopping a listener thread that never answers ends after the grace, not clean, and later scrapes skip it at once", async () => {
  const threads = await startListenerThreads(fakeThreads("stuck", 2));
  assert.equal(
    await within(
      threads[0]!.stop({ graceMs: 100 }),
      5_000,
      "stopping a stuck thread outlasted its grace",
    ),
    false,
  );
  assert.equal(
    await within(
      threads[0]!.snapshot(),
      2_000,
      "a scrape waited for a stopped thread",
    ),
    undefined,
  );
});

Deno.test("a listener thread that stops cleanly says so", async () => {
  const threads = await startListenerThreads(fakeThreads("serve", 3));
  assert.equal(threads.length, 2);
  const stopped = await within(
    Promise.all(threads.map((thread) => thread.stop({ graceMs: 1_000 }))),
    5_000,
    "the threads did not stop",
  );
  assert.deepEqual(stopped, [true, true]);
});

Deno.test("a stopped listener thread's last metrics still answer a scrape, at once", async () => {
  const threads = await startListenerThreads(fakeThreads("serve", 2));
  const thread = threads[0]!;
  assert.deepEqual(await thread.snapshot(), fakeCount(1));
  assert.equal(await thread.stop({ graceMs: 1_000 }), true);
  // The other listeners may still drain: their scrapes go on.
  assert.deepEqual(
    await within(
      thread.snapshot(),
      2_000,
      "a stopped thread's metrics were awaited from the thread",
    ),
    fakeCount(2),
  );
});

Deno.test("a scrape waiting on a listener thread that dies is answered at once, without it", async () => {
  const failed = Promise.withResolvers<number>();
  const threads = await startListenerThreads(
    fakeThreads("die-when-scraped", 2, (index) => failed.resolve(index)),
  );
  assert.equal(
    await within(
      threads[0]!.snapshot(),
      2_000,
      "the scrape waited for the dead thread's answer",
    ),
    undefined,
  );
  assert.equal(await within(failed.promise, 2_000, "no failure"), 1);
});
