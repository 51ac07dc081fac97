/**
 * @module
 * TCP_NODELAY toward TLS clients. Deno 2.9.6 sets it on every plain TCP
 * connection its HTTP server takes but not on TLS ones (`serve_http_on` in
 * ext/http/http_next.rs, unchanged on Deno main of August 2026), and offers no
 * way to set it on a `TlsConn` or a listener. Without it a response's body
 * waits behind its head, and an SSE event behind the one before, for the
 * client's delayed ACK: up to 40 ms (scripts/bench/README.md, "TCP_NODELAY").
 *
 * Linux gives an accepted socket its listener's TCP_NODELAY, so setting it
 * once on the listening socket covers every connection. Deno exposes no
 * descriptor, so the listener is found among the process's descriptors by
 * being a listening socket on its port, and the option is set with libc's
 * `setsockopt` through `Deno.dlopen`. That needs `--allow-ffi`, which the
 * shipped permissions do not include (it lets code call any native function):
 * without it the sidecar says so once and serves as before.
 */

import { errorMessage } from "./errors.ts";
import type { Logger } from "./log.ts";

// Linux's values (x86_64 and aarch64 alike).
const SOL_SOCKET = 1;
const SO_ACCEPTCONN = 30;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const RLIMIT_NOFILE = 7;
const AF_INET = 2;
const AF_INET6 = 10;
/** Descriptors looked at, at most (about 2.5 µs each). */
const MAX_DESCRIPTORS_SCANNED = 65_536;
/** Descriptors in a row that are no IP socket after which the scan stops. */
const GAP_ENDING_SCAN = 256;

const SYMBOLS = {
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "buffer"],
    result: "i32",
  },
  setsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "u32"],
    result: "i32",
  },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** What `setTlsListenerNoDelay` did: how many listeners it set, or why it set none. */
export type NoDelayResult =
  | { readonly set: number }
  | { readonly skipped: string };

let libc: Libc | undefined;
/** Whether this thread serves TLS clients whose connections keep Nagle's algorithm. */
let nagleOnClients = false;
/** Whether the reason was logged; module state is per thread, hence the main-thread check below. */
let explained = false;

function openLibc(): Libc {
  libc ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return libc;
}

function intOption(c: Libc, fd: number, level: number, name: number): number {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  return c.getsockopt(fd, level, name, value, length) === 0 ? value[0]! : -1;
}

/** The port a descriptor's socket is bound to, or undefined for anything else. */
function boundPort(c: Libc, fd: number): number | undefined {
  const address = new Uint8Array(128);
  const length = new Uint32Array([address.byteLength]);
  if (c.getsockname(fd, address, length) !== 0) return undefined;
  const family = address[0]! | (address[1]! << 8);
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  return (address[2]! << 8) | address[3]!;
}

function descriptorLimit(c: Libc): number {
  const limit = new BigUint64Array(2);
  const soft = c.getrlimit(RLIMIT_NOFILE, limit) === 0
    ? Number(limit[0])
    : MAX_DESCRIPTORS_SCANNED;
  return Math.min(soft, MAX_DESCRIPTORS_SCANNED);
}

/** Why the option cannot be set in this process, or undefined when it can. */
function obstacle(): string | undefined {
  if (Deno.build.os !== "linux") {
    return `only implemented for Linux, not ${Deno.build.os}`;
  }
  // A path-scoped --allow-ffi does not grant this query: libc is not named.
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return "setting it needs --allow-ffi";
  }
  return undefined;
}

/**
 * Sets TCP_NODELAY on every listening TCP socket on `port` that lacks it:
 * the one just opened, and one another `-workers` thread opened at the same
 * instant (each thread's scan covers the other's, so neither is missed).
 * Descriptors are numbered lowest free first, so listeners sit at or below
 * the first gap: the scan stops after `GAP_ENDING_SCAN` descriptors in a row
 * that are no socket.
 */
export function setTlsListenerNoDelay(port: number): NoDelayResult {
  const why = obstacle();
  if (why !== undefined) return { skipped: why };
  let c: Libc;
  try {
    c = openLibc();
  } catch (error) {
    return { skipped: `libc.so.6: ${errorMessage(error)}` };
  }
  const on = new Int32Array([1]);
  const limit = descriptorLimit(c);
  let listeners = 0;
  let set = 0;
  let gap = 0;
  for (let fd = 0; fd < limit && gap < GAP_ENDING_SCAN; fd++) {
    const bound = boundPort(c, fd);
    gap = bound === undefined ? gap + 1 : 0;
    if (bound !== port) continue;
    if (intOption(c, fd, SOL_SOCKET, SO_ACCEPTCONN) !== 1) continue;
    listeners++;
    if (intOption(c, fd, IPPROTO_TCP, TCP_NODELAY) !== 0) continue;
    if (c.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, on, 4) === 0) set++;
  }
  return listeners > 0
    ? { set }
    : { skipped: `no listening socket on port ${port} found` };
}

/**
 * `setTlsListenerNoDelay`, logged: a debug line when set, and the reason it
 * was not at info level once per process: by the main thread only (each
 * `-workers` thread has its own module state), and not again for its other
 * ranks' listeners or a certificate reload's.
 */
export function setTlsListenerNoDelayLogged(port: number, log: Logger): void {
  const result = setTlsListenerNoDelay(port);
  if ("set" in result) {
    log.debug("TCP_NODELAY set on the TLS listener", { port });
    return;
  }
  nagleOnClients = true;
  if (explained || "WorkerGlobalScope" in globalThis) return;
  explained = true;
  log.info(
    "TLS connections keep Nagle's algorithm: a response may wait up to 40 ms for the client's delayed ACK",
    { reason: result.skipped },
  );
}

/**
 * Whether this thread's TLS listeners could not get TCP_NODELAY, so a body
 * written after its head waits for the client's delayed ACK; the decode relay
 * then sends small answers whole (src/upstream/relay.ts).
 */
export function clientsKeepNagle(): boolean {
  return nagleOnClients;
}
