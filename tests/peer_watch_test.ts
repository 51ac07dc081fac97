import assert from "node:assert/strict";
import { createLogger } from "../src/log.ts";
import { CHECK_AFTER_MS, createPeerWatch } from "../src/peer_watch.ts";
import { socketKey, type TcpTable } from "../src/proc_net_tcp.ts";
import { aborted, within } from "./support/deadline.ts";

const LISTEN = { hostname: "127.0.0.1", port: 8000 };
const LOCAL = { hostname: "127.0.0.1", port: 8000 };
const peer = (port: number) => ({ hostname: "127.0.0.1", port });

/** A table line for the socket from LOCAL to `remote` in state `state` (hex). */
function line(remotePort: number, state: string): string {
  return `   1: ${socketKey("tcp", LOCAL, peer(remotePort))} ${state} 0`;
}
const LISTENER_LINE = `   0: ${
  socketKey("tcp", LISTEN, { hostname: "0.0.0.0", port: 0 })
} 0A 0`;

/** A watch reading `table()`, with its reads and log lines recorded as they happen. */
function watchWith(table: () => string | Promise<string>) {
  const lines: string[] = [];
  const firstLine = Promise.withResolvers<string>();
  const log = createLogger({
    verbosity: 5,
    write: (text) => {
      lines.push(text);
      firstLine.resolve(text);
    },
  });
  const reads: TcpTable[] = [];
  let nextRead = Promise.withResolvers<void>();
  const watch = createPeerWatch({
    listenAddr: LISTEN,
    log,
    readTable: (name) => {
      reads.push(name);
      nextRead.resolve();
      nextRead = Promise.withResolvers<void>();
      return Promise.resolve(table());
    },
  });
  return {
    watch,
    lines,
    /** Resolves with the first log line. */
    firstLine: firstLine.promise,
    tables: {
      reads,
      /** Resolves at the next read. */
      nextRead: () => nextRead.promise,
    },
  };
}

Deno.test("peer watch aborts a request whose client sent its FIN, and only that one", async () => {
  const { watch, tables } = watchWith(() =>
    [LISTENER_LINE, line(40001, "08"), line(40002, "01")].join("\n")
  );
  await watch.ready;
  const gone = watch.watch(LOCAL, peer(40001));
  const present = watch.watch(LOCAL, peer(40002));
  assert.ok(gone && present);
  await within(aborted(gone.signal), 2000, "the gone client was missed");
  assert.equal(present.signal.aborted, false);
  await within(tables.nextRead(), 2000, "no second read");
  assert.equal(present.signal.aborted, false);
  present.end();
  watch.close();
});

Deno.test("peer watch takes a socket missing from two reads in a row as reset, one miss as a glitch", async () => {
  let reads = 0;
  const { watch, tables } = watchWith(() => {
    reads++;
    // Read 1 proves the table; then missing, listed, then missing for good.
    return reads === 2 || reads >= 4
      ? LISTENER_LINE
      : [LISTENER_LINE, line(40003, "01")].join("\n");
  });
  await watch.ready;
  const entry = watch.watch(LOCAL, peer(40003));
  assert.ok(entry);
  await within(aborted(entry.signal), 3000, "the reset client was missed");
  assert.equal(reads, 5);
  assert.deepEqual(tables.reads, ["tcp", "tcp", "tcp", "tcp", "tcp"]);
  watch.close();
});

Deno.test("peer watch reads once at start, then nothing while every request is younger than its first look", async () => {
  const { watch, tables } = watchWith(() => LISTENER_LINE);
  await watch.ready;
  assert.equal(tables.reads.length, 1);
  for (let i = 0; i < 20; i++) watch.watch(LOCAL, peer(41000 + i))?.end();
  const late = watch.watch(LOCAL, peer(41100));
  assert.ok(late);
  const started = performance.now();
  await within(tables.nextRead(), 2000, "no read for a request left waiting");
  assert.ok(performance.now() - started >= CHECK_AFTER_MS - 5);
  assert.equal(tables.reads.length, 2);
  late.end();
  watch.close();
});

Deno.test("peer watch turns off at start with one line, aborting nothing, when the table cannot be read", async () => {
  const { watch, lines, firstLine, tables } = watchWith(() =>
    Promise.reject(new Error('Requires all access to "/proc/net/tcp"'))
  );
  // A request that came while the first read was out.
  const entry = watch.watch(LOCAL, peer(40004));
  assert.ok(entry);
  assert.match(
    await within(firstLine, 2000, "no line said the watch is off"),
    /Cannot watch client connections.*all access/,
  );
  await watch.ready;
  assert.equal(lines.length, 1);
  assert.equal(tables.reads.length, 1);
  assert.equal(entry.signal.aborted, false);
  // Off from then on: no request is registered, so none pays for the watch.
  assert.equal(watch.watch(LOCAL, peer(40005)), undefined);
  watch.close();
});

Deno.test("peer watch turns off when its first read does not list the listener, and later reads without it judge nobody", async () => {
  // First read: a table of another namespace (no listener), every socket "missing".
  const first = watchWith(() => line(40006, "01"));
  const entry = first.watch.watch(LOCAL, peer(40007));
  assert.ok(entry);
  assert.match(
    await within(first.firstLine, 2000, "no line said the watch is off"),
    /listening socket is not listed/,
  );
  assert.equal(entry.signal.aborted, false);
  assert.equal(first.tables.reads.length, 1);
  assert.equal(first.watch.watch(LOCAL, peer(40009)), undefined);
  first.watch.close();

  // A proven table that later comes back without the listener (a bad read).
  let reads = 0;
  const later = watchWith(() => {
    reads++;
    return reads === 1 ? [LISTENER_LINE, line(40008, "01")].join("\n") : "";
  });
  await later.watch.ready;
  const kept = later.watch.watch(LOCAL, peer(40008));
  assert.ok(kept);
  for (let i = 0; i < 4; i++) {
    await within(later.tables.nextRead(), 2000, `read ${i}`);
  }
  assert.equal(kept.signal.aborted, false);
  assert.equal(later.lines.length, 0);
  kept.end();
  later.watch.close();
});

Deno.test("peer watch reads nothing more once closed", async () => {
  const { watch, tables } = watchWith(() => LISTENER_LINE);
  await watch.ready;
  const waiting = watch.watch(LOCAL, peer(40010));
  assert.ok(waiting);
  watch.close();
  assert.equal(watch.watch(LOCAL, peer(40011)), undefined);
  // Past the time a read would have come, none did.
  await new Promise((resolve) => setTimeout(resolve, 2 * CHECK_AFTER_MS));
  assert.equal(tables.reads.length, 1);
  assert.equal(waiting.signal.aborted, false);
});
