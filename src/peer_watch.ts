/**
 * @module
 * Notices a client that left while its request waits for the answer's head,
 * by the state of its socket in Linux's TCP tables. Deno 2.9.6 misses it
 * when the request's body came after its head (most P/D prompts): its
 * HTTP/1.1 path polls the socket for the peer's close only when the whole
 * body arrived with the head (`wait_raw_response_ready` in
 * ext/http/http_next.rs: `poll_peer_closed = request_body.is_none()`), so
 * `request.signal` stays quiet, and the prefill runs to its end for nobody,
 * until the answer is written.
 *
 * Off unless `-watch-client-connections` is given: Deno opens `/proc` files
 * only with `--allow-all`. Cost: one read when the listener opens (proving
 * the table is the listener's); then nothing while every request is younger
 * than `CHECK_AFTER_MS`; after that one read of the listener's table per
 * `CHECK_AFTER_MS` serves every waiting request.
 */

import { errorMessage } from "./errors.ts";
import type { Logger } from "./log.ts";
import {
  type Endpoint,
  isPeerGoneState,
  listenerKey,
  socketKey,
  socketStates,
  tableOf,
  TCP_STATE,
  type TcpTable,
} from "./proc_net_tcp.ts";

/**
 * How old a request must be before its socket is looked up, and how often
 * the table is read while one is: a client gone is noticed within twice
 * this (a reset, which must be seen twice, within three times).
 */
export const CHECK_AFTER_MS = 250;

/** Reads one of the kernel's TCP tables whole; throws when it cannot. */
export type TcpTableReader = (table: TcpTable) => Promise<string>;

/** Reads `/proc/net/tcp` or `/proc/net/tcp6` of the process's network namespace. */
export function readProcTable(table: TcpTable): Promise<string> {
  return Deno.readTextFile(`/proc/net/${table}`);
}

/** One request watched until its answer's head is handed to the runtime. */
export interface PeerRegistration {
  /** Aborts when the client's connection is seen closed or reset. */
  readonly signal: AbortSignal;
  /** Stops watching; call once the answer is returned. */
  end(): void;
}

/** Watches the connections of one listener. */
export interface PeerWatch {
  /** Starts watching the connection from `local` to `remote`; undefined when the watch is off. */
  watch(local: Endpoint, remote: Endpoint): PeerRegistration | undefined;
  /** Stops the timer; later `watch` calls return undefined. */
  close(): void;
  /** Settles once the first read proved the table or turned the watch off. */
  readonly ready: Promise<void>;
}

/** Options of `createPeerWatch`. */
export interface PeerWatchOptions {
  /** The listener's own address: found in the table, it proves the table is the right one. */
  readonly listenAddr: Endpoint;
  readonly log: Logger;
  /** `readProcTable` by default; tests pass their own. */
  readonly readTable?: TcpTableReader;
  /** Clock in milliseconds; tests pass their own. */
  readonly now?: () => number;
}

interface Entry {
  readonly key: string;
  readonly since: number;
  readonly controller: AbortController;
  /** Reads in a row that did not list the socket. */
  missing: number;
}

/**
 * A socket a read did not list is taken as reset only when the next read
 * misses it too: a table read while sockets come and go may skip a line
 * (the kernel resumes each chunk at a bucket and offset that can shift).
 */
const MISSING_READS_FOR_RESET = 2;

/** A watch that never watches, for platforms without the tables. */
const OFF: PeerWatch = {
  watch: () => undefined,
  close() {},
  ready: Promise.resolve(),
};

/**
 * Creates the watch of the listener at `listenAddr`. It turns itself off,
 * with one log line, when the table cannot be read or does not list the
 * listener on the first read (not Linux, no read permission, another
 * network namespace); requests then rely on `request.signal` alone.
 */
export function createPeerWatch(options: PeerWatchOptions): PeerWatch {
  const table = tableOf(options.listenAddr.hostname);
  const listener = listenerKey(table, options.listenAddr);
  return listener === undefined ? OFF : watchTable(table, listener, options);
}

/** The watch of the listener whose line in `table` has key `listener`. */
function watchTable(
  table: TcpTable,
  listener: string,
  options: PeerWatchOptions,
): PeerWatch {
  const readTable = options.readTable ?? readProcTable;
  const now = options.now ?? (() => performance.now());
  const { log } = options;
  // Insertion order is age order: the first entry is the oldest.
  const entries = new Set<Entry>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  /** A read in flight: the next is scheduled when it ends, so reads never overlap. */
  let checking = false;
  let on = true;
  let proven = false;

  function turnOff(reason: string): void {
    if (!on) return;
    on = false;
    log.warn(
      `Cannot watch client connections in /proc/net/${table}: ${reason}; a client that leaves while its request waits is noticed only when its body came with the request's head`,
    );
    stop();
    entries.clear();
  }

  function stop(): void {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  }

  function schedule(ms: number): void {
    if (timer !== undefined || checking || !on) return;
    const pending = setTimeout(() => {
      timer = undefined;
      tick().catch((error) => turnOff(errorMessage(error)));
    }, Math.max(0, ms));
    // A pending check is no reason to keep the process alive.
    Deno.unrefTimer(pending);
    timer = pending;
  }

  function judge(states: Map<string, number>, due: readonly Entry[]): void {
    for (const entry of due) {
      if (!entries.has(entry)) continue;
      const state = states.get(entry.key);
      if (state === undefined) entry.missing++;
      else entry.missing = 0;
      const gone = state === undefined
        ? entry.missing >= MISSING_READS_FOR_RESET
        : isPeerGoneState(state);
      if (!gone) continue;
      entries.delete(entry);
      entry.controller.abort(
        new DOMException("The client closed its connection", "AbortError"),
      );
    }
  }

  async function check(due: readonly Entry[]): Promise<void> {
    let text: string;
    try {
      text = await readTable(table);
    } catch (error) {
      turnOff(errorMessage(error));
      return;
    }
    const wanted = new Set(due.map((entry) => entry.key));
    wanted.add(listener);
    const states = socketStates(text, wanted);
    // A table without the listener is not this listener's table (first
    // read), or a read that went wrong: no request is judged by it.
    if (states.get(listener) !== TCP_STATE.listen) {
      if (!proven) turnOff("the listening socket is not listed");
      return;
    }
    proven = true;
    judge(states, due);
  }

  async function tick(): Promise<void> {
    const first = entries.values().next();
    if (first.done || !on) return;
    const cutoff = now() - CHECK_AFTER_MS;
    if (first.value.since > cutoff) {
      schedule(first.value.since - cutoff);
      return;
    }
    const due: Entry[] = [];
    for (const entry of entries) {
      if (entry.since > cutoff) break;
      due.push(entry);
    }
    checking = true;
    try {
      await check(due);
    } finally {
      checking = false;
    }
    if (entries.size > 0) schedule(CHECK_AFTER_MS);
  }

  // Requests that come while this first read is out are watched; they are
  // judged only by later reads, once the table is proven.
  checking = true;
  const ready = check([]).finally(() => {
    checking = false;
    if (entries.size > 0) schedule(CHECK_AFTER_MS);
  });

  return {
    ready,
    watch(local, remote) {
      if (!on) return undefined;
      const key = socketKey(table, local, remote);
      if (key === undefined) return undefined;
      const entry: Entry = {
        key,
        since: now(),
        controller: new AbortController(),
        missing: 0,
      };
      entries.add(entry);
      schedule(CHECK_AFTER_MS);
      return {
        signal: entry.controller.signal,
        end: () => entries.delete(entry),
      };
    },
    close() {
      on = false;
      stop();
      entries.clear();
    },
  };
}
