/**
 * @module
 * Serves HTTP on a listener the sidecar owns: its own accept loop hands each
 * connection to the runtime's HTTP engine. Owning the loop is what lets the
 * sidecar outlive descriptor exhaustion (the listener stays open and the loop
 * retries), cap open connections, and close a connection that carries no
 * request for too long (an idle keep-alive connection, or a slowloris head
 * that never ends), none of which `Deno.serve` offers on Deno 2.9.6.
 */

import { type AcceptGuard, createAcceptGuard } from "./accept_guard.ts";
import { errorMessage, ProxyError } from "./errors.ts";
import { settleWithin } from "./settle_within.ts";
import { joinHostPort } from "./upstream/target.ts";
import type { Logger } from "./log.ts";
import type { PeerRegistration, PeerWatch } from "./peer_watch.ts";
import type {
  ConnectionHandler,
  ConnectionHttpServer,
  ServeConnection,
} from "./runtime_http.ts";

/** What the accept loop needs of a listener (`Deno.Listener`, or a fake in tests). */
export interface AcceptSource {
  readonly addr: Deno.NetAddr;
  accept(): Promise<Deno.Conn>;
  close(): void;
  ref(): void;
  unref(): void;
}

/** The runtime's connection info, and what the sidecar learns of the client itself. */
export interface ServeInfo extends Deno.ServeHandlerInfo<Deno.NetAddr> {
  /**
   * Aborts when the client's connection is seen closed or reset while the
   * request waits for its answer's head (see peer_watch.ts); absent when the
   * watch is off.
   */
  readonly peerGone?: AbortSignal;
  /**
   * The error the request is answered with before any route reads it: set
   * on a connection being closed for its client's resets (see
   * `isRapidReset`), so the refusal is rendered, logged and counted as the
   * app's other refusals are.
   */
  readonly refusal?: ProxyError;
}

/** The app's handler, called with `ServeInfo`. */
export type ServeInfoHandler = (
  request: Request,
  info: ServeInfo,
) => Response | Promise<Response>;

/** Options of `serveConnections`. */
export interface ConnectionServerOptions {
  readonly handler: ServeInfoHandler;
  readonly serveConnection: ServeConnection;
  readonly log: Logger;
  /** Most connections served at once; more wait in the kernel's listen queue. */
  readonly maxConnections: number;
  /** A connection with no request in flight for this long is closed. */
  readonly idleTimeoutMs: number;
  /** Clock in milliseconds; tests pass their own. */
  readonly now?: () => number;
  /** `FIRST_REQUEST_GRACE_MS` by default; tests pass a shorter one. */
  readonly firstRequestGraceMs?: number;
  /** Watches each request's connection while it waits for its answer; closed with the server. */
  readonly peerWatch?: PeerWatch;
  /**
   * A connection whose client cancels this many requests, more than half of
   * those it sent, is closed (see `isRapidReset`); 0 or absent: never.
   */
  readonly maxClientResets?: number;
}

/** Requests in flight on a connection, and since when it has carried none. */
interface Activity {
  inFlight: number;
  idleSince: number;
  /** Resolves when the connection's first request arrives. */
  readonly firstRequest: PromiseWithResolvers<void>;
  /** Requests the connection carried, decayed as `RESET_WINDOW_REQUESTS` says. */
  requests: number;
  /** Of those, the ones its client cancelled before they were answered. */
  resets: number;
  /** Set once the connection is being closed for its resets: requests still arriving are refused. */
  cutOff: boolean;
}

/**
 * Every this many requests a connection's counts are halved, so a
 * long-lived connection's past neither shields it (a thousand good requests
 * then a burst of resets) nor condemns it (a few cancels a day add up).
 */
const RESET_WINDOW_REQUESTS = 1_000;

/**
 * Whether a connection's client cancels requests as the HTTP/2 "rapid reset"
 * attack does (CVE-2023-44487): each cancelled stream frees its slot under
 * SETTINGS_MAX_CONCURRENT_STREAMS at once while the request it started still
 * runs, so one connection has the sidecar start requests to vLLM without
 * bound. Envoy's fix closes a connection once more than half of its streams
 * were reset early and it has opened enough of them
 * (`premature_reset_total_stream_count`); a gateway multiplexing many
 * clients, whose users cancel some generations, stays well under half.
 */
function isRapidReset(activity: Activity, maxResets: number): boolean {
  return activity.resets >= maxResets &&
    activity.resets * 2 > activity.requests;
}

/** The refusal of a request arriving on a connection closed for its resets: no route reads it. */
function tooManyResetsError(): ProxyError {
  return new ProxyError(
    429,
    "Too many requests cancelled on this connection: it is being closed; send on a new connection",
    { code: "too_many_client_resets" },
  );
}

/**
 * The runtime's `info` with the sidecar's own fields. The runtime's info
 * keeps its fields behind getters of private state: a spread or a prototype
 * link would lose them.
 */
function serveInfoWith(
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  own: Pick<ServeInfo, "peerGone" | "refusal">,
): ServeInfo {
  return {
    get remoteAddr() {
      return info.remoteAddr;
    },
    get completed() {
      return info.completed;
    },
    ...own,
  };
}

/**
 * How long a draining server waits for the first request of a connection
 * that has carried none yet (or for its TLS handshake), as Go's
 * `Server.Shutdown` does (5 s, golang issue 22682). The runtime closes such a
 * connection at once when asked to, so one accepted an instant before a
 * certificate reload or a shutdown lost the request its client was sending
 * (scripts/bench/experiments/cert_reload_gap.ts). HTTP/2 chosen by ALPN gets
 * GOAWAY instead.
 */
export const FIRST_REQUEST_GRACE_MS = 5_000;

/** One served connection. */
interface Served {
  readonly server: ConnectionHttpServer;
  readonly activity: Activity;
  /** Draining waits for its first request (see `FIRST_REQUEST_GRACE_MS`). */
  readonly graceFirstRequest: boolean;
  closing: boolean;
}

function internalServerError(): Response {
  return new Response("Internal Server Error", { status: 500 });
}

function remoteAddressOf(conn: Deno.Conn): string {
  const addr = conn.remoteAddr;
  return addr.transport === "tcp" ? joinHostPort(addr.hostname, addr.port) : "";
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The open connections of one server, and the idle sweep over them. */
function createConnectionSet(options: ConnectionServerOptions) {
  const now = options.now ?? (() => performance.now());
  const graceMs = options.firstRequestGraceMs ?? FIRST_REQUEST_GRACE_MS;
  const served = new Set<Served>();
  /** TLS connections whose handshake is under way, and when each is settled. */
  const handshakes = new Map<Deno.TlsConn, Promise<void>>();
  let draining = false;
  let slotFreed = Promise.withResolvers<void>();

  /**
   * Closes an idle connection the graceful way: no request is in flight, and
   * a forced close (the runtime's abort signal) throws from inside the
   * runtime when it races with the connection closing on its own. A TLS
   * handshake is finished before the runtime gets the connection (see
   * `serveTls`).
   */
  function closeIdle(entry: Served): void {
    entry.closing = true;
    entry.server.shutdown().catch(() => {});
  }

  function sweep(): void {
    const time = now();
    for (const entry of served) {
      if (
        !entry.closing && entry.activity.inFlight === 0 &&
        time - entry.activity.idleSince >= options.idleTimeoutMs
      ) {
        closeIdle(entry);
      }
    }
  }

  /**
   * A handler that keeps `activity` up to date around `options.handler`,
   * and, with `maxClientResets` on, counts the requests the client
   * cancelled and refuses the connection's requests once it is closed for
   * them.
   */
  function tracked(
    activity: Activity,
    conn: Deno.Conn,
    cutOff: () => void,
  ): ConnectionHandler {
    const maxResets = options.maxClientResets ?? 0;
    const release = () => {
      activity.inFlight--;
      activity.idleSince = now();
    };
    const arrived = () => {
      activity.inFlight++;
      activity.firstRequest.resolve();
    };
    if (maxResets === 0) {
      // Off, a request pays for no count and no closure of its own.
      return function trackedHandler(request, info) {
        arrived();
        info.completed.then(release, release);
        return handleWatching(request, info, conn);
      };
    }
    return function resetCountingHandler(request, info) {
      // Judged as a request arrives, not as a cancel lands: a connection
      // that drops with many requests in flight cancels them all at once,
      // and only one that still carries requests after its cancels is the
      // attack (a dropped one carries none).
      if (!activity.cutOff && isRapidReset(activity, maxResets)) cutOff();
      arrived();
      if (activity.cutOff) {
        info.completed.then(release, release);
        return options.handler(
          request,
          serveInfoWith(info, { refusal: tooManyResetsError() }),
        );
      }
      if (++activity.requests >= RESET_WINDOW_REQUESTS) {
        activity.requests >>= 1;
        activity.resets >>= 1;
      }
      // Read now: Deno 2.9.6 creates the signal on first use, and one
      // first read after the client's RST_STREAM never aborts.
      const signal = request.signal;
      // Only a cancel before the answer's head counts. With "no-legacy-abort"
      // the signal aborts when the client cancelled (RST_STREAM, or a closed
      // connection), but over HTTP/2 also when the sidecar's own answer
      // broke mid-stream (a decoder that died): a gateway must not lose its
      // connection to a decoder crash. The attack cancels before any answer,
      // which is where its cost lies.
      let cancelledBeforeHead = false;
      const headed = () => {
        cancelledBeforeHead = signal.aborted;
      };
      const settled = () => {
        release();
        if (cancelledBeforeHead && !activity.cutOff) activity.resets++;
      };
      info.completed.then(settled, settled);
      const answer = handleWatching(request, info, conn);
      if (answer instanceof Promise) answer.then(headed, headed);
      else headed();
      return answer;
    };
  }

  /**
   * Hands the request to `options.handler`, with the peer watch looking
   * after it until its answer is returned: from then on, writing the answer
   * tells the runtime itself that the client left.
   */
  function handleWatching(
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
    conn: Deno.Conn,
  ): Response | Promise<Response> {
    const local = conn.localAddr;
    const remote = conn.remoteAddr;
    // Without a body the runtime watches the connection itself.
    const registration = request.body !== null &&
        local.transport === "tcp" && remote.transport === "tcp"
      ? options.peerWatch?.watch(local, remote)
      : undefined;
    if (registration === undefined) return options.handler(request, info);
    return handleWatched(request, info, registration);
  }

  async function handleWatched(
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
    registration: PeerRegistration,
  ): Promise<Response> {
    try {
      return await options.handler(
        request,
        serveInfoWith(info, { peerGone: registration.signal }),
      );
    } finally {
      registration.end();
    }
  }

  function start(conn: Deno.Conn, graceFirstRequest: boolean): Served {
    const activity: Activity = {
      inFlight: 0,
      idleSince: now(),
      firstRequest: Promise.withResolvers<void>(),
      requests: 0,
      resets: 0,
      cutOff: false,
    };
    const cutOff = () => {
      activity.cutOff = true;
      options.log.warn(
        "closing a client connection that cancels too many requests",
        {
          remote_addr: remoteAddressOf(conn),
          resets: activity.resets,
          requests: activity.requests,
        },
      );
      if (entry.closing) return;
      closeIdle(entry);
    };
    const server = options.serveConnection(conn, {
      handler: tracked(activity, conn, cutOff),
      onError: internalServerError,
    });
    const entry: Served = {
      server,
      activity,
      graceFirstRequest,
      closing: false,
    };
    served.add(entry);
    server.finished.catch(() => {
      // A connection that broke concerns its own requests only.
    }).finally(() => {
      served.delete(entry);
      freeSlot();
    });
    return entry;
  }

  function freeSlot(): void {
    slotFreed.resolve();
    slotFreed = Promise.withResolvers<void>();
  }

  /**
   * Finishes the TLS handshake before the runtime gets the connection, within
   * `idleTimeoutMs`. Handed over mid-handshake, a client that never completed
   * it held the server's shutdown forever (its `finished` never settled).
   * Its socket stays open until the client leaves even so: Deno 2.9.6 does
   * not close a TLS socket mid-handshake when JavaScript closes it (checked).
   * HTTP/2 chosen by ALPN needs no first-request grace: a draining server
   * sends it GOAWAY.
   */
  async function serveTls(conn: Deno.TlsConn): Promise<void> {
    let alpn: string | null;
    try {
      const settled = await settleWithin(
        conn.handshake(),
        options.idleTimeoutMs,
      );
      if (settled === undefined) throw new Error("handshake timed out");
      alpn = settled.alpnProtocol;
    } catch {
      closeQuietly(conn);
      return;
    } finally {
      handshakes.delete(conn);
    }
    let entry: Served;
    try {
      entry = start(conn, alpn !== "h2");
    } catch (error) {
      // The runtime refused the connection: drop it, as the accept loop does.
      options.log.error("Cannot serve a connection", {
        error: errorMessage(error),
      });
      closeQuietly(conn);
      return;
    }
    if (draining) await drainEntry(entry);
  }

  function serve(conn: Deno.Conn): void {
    if (!("handshake" in conn)) {
      start(conn, true);
      return;
    }
    const tls = conn as Deno.TlsConn;
    const settled = serveTls(tls).finally(freeSlot);
    handshakes.set(tls, settled);
  }

  /** Closes `entry` after its in-flight requests, waiting first for a first request it is owed. */
  async function drainEntry(entry: Served): Promise<void> {
    if (!entry.closing) {
      if (entry.graceFirstRequest) {
        await settleWithin(
          Promise.race([
            entry.activity.firstRequest.promise,
            entry.server.finished.catch(() => {}),
          ]),
          graceMs,
        );
      }
      entry.server.shutdown().catch(() => {});
    }
    await entry.server.finished.catch(() => {});
  }

  /** A handshake still under way after the grace is cut; one that completes is drained. */
  async function drainHandshake(
    conn: Deno.TlsConn,
    settled: Promise<void>,
  ): Promise<void> {
    await settleWithin(settled, graceMs);
    if (handshakes.has(conn)) closeQuietly(conn);
    await settled;
  }

  return {
    serve,
    sweep,
    get size(): number {
      return served.size + handshakes.size;
    },
    /** Resolves when a connection closes. */
    get slotFreed(): Promise<void> {
      return slotFreed.promise;
    },
    /**
     * Asks every connection to close after its in-flight requests, giving
     * one that has carried none (or is still in its TLS handshake)
     * `FIRST_REQUEST_GRACE_MS` to send its first; resolves when all closed.
     */
    async drain(): Promise<void> {
      draining = true;
      await Promise.all([
        ...[...served].map(drainEntry),
        ...[...handshakes].map(([conn, settled]) =>
          drainHandshake(conn, settled)
        ),
      ]);
    },
  };
}

/**
 * A server that can also give its port over to a newer one on the same port
 * (SO_REUSEPORT), as a certificate reload does.
 */
export interface HandingOverServer extends Deno.HttpServer<Deno.NetAddr> {
  /**
   * Keeps accepting until the listener's queue is found empty (no
   * connection within 1 ms, at most 2 s), closes it
   * then and resolves, and drains like `shutdown` (`finished` settles when
   * done): Linux resets the connections queued on a listening socket as it
   * closes (unless `net.ipv4.tcp_migrate_req=1`), and a newer listener on
   * the port takes its new connections meanwhile.
   */
  handOff(): Promise<void>;
}

/** No connection within this while handing off: the listener's queue is empty. */
const HAND_OFF_QUIET_MS = 1;
/** A listener still busy after this long is closed anyway. */
const HAND_OFF_LIMIT_MS = 2_000;

/** What the accept loop shares with its server. */
interface LoopState {
  stopping: boolean;
  /**
   * Ends the loop's current wait (an accept or the cap) when the server is
   * told to stop or hand over. A fresh promise per wait: racing one that
   * lives as long as the server would keep every accepted connection
   * reachable from it (100,000 accepts held 150 MB).
   */
  interrupt: (() => void) | undefined;
  /** When the hand-off began, by `now`; undefined before. */
  handOffSince: number | undefined;
  readonly now: () => number;
  readonly guard: AcceptGuard;
  readonly log: Logger;
  readonly maxConnections: number;
}

/** A promise `state.interrupt` resolves, and the function to stop waiting on it. */
function interruption(
  state: LoopState,
): { readonly promise: Promise<undefined>; end(): void } {
  const { promise, resolve } = Promise.withResolvers<undefined>();
  state.interrupt = () => resolve(undefined);
  return {
    promise,
    end: () => {
      state.interrupt = undefined;
    },
  };
}

/**
 * The connection `accepting` brings; once a hand-off has begun, undefined
 * when none is queued (the listener is then closed, its queue empty).
 */
async function acceptOrHandOff(
  listener: AcceptSource,
  accepting: Promise<Deno.Conn>,
  state: LoopState,
): Promise<Deno.Conn | undefined> {
  if (state.handOffSince === undefined) {
    const interrupted = interruption(state);
    const first = await Promise.race([accepting, interrupted.promise])
      .finally(interrupted.end);
    if (first !== undefined) return first;
    if (state.handOffSince === undefined) {
      // Stopped: the listener is closed; a connection accepted as it closed goes too.
      accepting.then(closeQuietly, () => {});
      return undefined;
    }
  }
  const since = state.handOffSince ?? state.now();
  if (state.now() - since < HAND_OFF_LIMIT_MS) {
    const queued = await settleWithin(accepting, HAND_OFF_QUIET_MS);
    if (queued !== undefined) return queued;
  }
  try {
    listener.close();
  } catch {
    // Already closed.
  }
  // An accept that completed as the listener closed still brings its connection.
  return await accepting.catch(() => undefined);
}

/** Accepts until stopped or handed off; never ends on an accept error. */
async function acceptLoop(
  listener: AcceptSource,
  connections: ReturnType<typeof createConnectionSet>,
  state: LoopState,
): Promise<void> {
  while (!state.stopping) {
    // Handing off, the queue is drained past the cap, or what it holds would
    // be reset as the listener closes; what comes in is bounded by the
    // hand-off's 2 s.
    if (
      connections.size >= state.maxConnections &&
      state.handOffSince === undefined
    ) {
      state.guard.capped(connections.size);
      const interrupted = interruption(state);
      await Promise.race([connections.slotFreed, interrupted.promise])
        .finally(interrupted.end);
      continue;
    }
    let conn: Deno.Conn | undefined;
    try {
      conn = await acceptOrHandOff(listener, listener.accept(), state);
    } catch (error) {
      if (
        state.stopping || error instanceof Deno.errors.BadResource ||
        error instanceof Deno.errors.Interrupted
      ) {
        return;
      }
      await sleep(state.guard.failed(error, connections.size));
      continue;
    }
    if (conn === undefined) return;
    if (state.stopping) {
      closeQuietly(conn);
      return;
    }
    state.guard.accepted();
    try {
      connections.serve(conn);
    } catch (error) {
      // The runtime refused the connection: drop it, keep accepting.
      state.log.error("Cannot serve a connection", {
        error: errorMessage(error),
      });
      closeQuietly(conn);
    }
  }
}

/** Serves `options.handler` on every connection `listener` accepts; shaped like `Deno.serve`'s server. */
export function serveConnections(
  listener: AcceptSource,
  options: ConnectionServerOptions,
): HandingOverServer {
  const connections = createConnectionSet(options);
  const stopped = Promise.withResolvers<void>();
  const now = options.now ?? (() => performance.now());
  const state: LoopState = {
    stopping: false,
    interrupt: undefined,
    handOffSince: undefined,
    now,
    guard: createAcceptGuard({
      log: options.log,
      ...(options.now ? { now: options.now } : {}),
    }),
    log: options.log,
    maxConnections: options.maxConnections,
  };
  const sweepEveryMs = Math.min(
    1000,
    Math.max(10, Math.floor(options.idleTimeoutMs / 4)),
  );
  const sweeper = setInterval(connections.sweep, sweepEveryMs);
  Deno.unrefTimer(sweeper);
  const accepting = acceptLoop(listener, connections, state);
  const finished = stopped.promise.then(async () => {
    await Promise.all([accepting, connections.drain()]);
    clearInterval(sweeper);
    options.peerWatch?.close();
  });
  function shutdown(): Promise<void> {
    if (!state.stopping) {
      state.stopping = true;
      try {
        listener.close();
      } catch {
        // Already closed.
      }
      state.interrupt?.();
      stopped.resolve();
    }
    return finished;
  }
  let handingOff: Promise<void> | undefined;
  function handOff(): Promise<void> {
    handingOff ??= (async () => {
      if (!state.stopping) {
        state.handOffSince = now();
        state.interrupt?.();
        await accepting;
      }
      void shutdown();
    })();
    return handingOff;
  }
  return {
    addr: listener.addr,
    finished,
    shutdown,
    handOff,
    ref() {
      listener.ref();
    },
    unref() {
      listener.unref();
    },
    [Symbol.asyncDispose]: shutdown,
  };
}
