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
import { errorMessage } from "./errors.ts";
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
  /** Watches each request's connection while it waits for its answer; closed with the server. */
  readonly peerWatch?: PeerWatch;
}

/** Requests in flight on a connection, and since when it has carried none. */
interface Activity {
  inFlight: number;
  idleSince: number;
}

/** One served connection. */
interface Served {
  readonly server: ConnectionHttpServer;
  readonly activity: Activity;
  closing: boolean;
}

function internalServerError(): Response {
  return new Response("Internal Server Error", { status: 500 });
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
  const served = new Set<Served>();
  let slotFreed = Promise.withResolvers<void>();

  /**
   * Closes an idle connection the graceful way: no request is in flight, and
   * a forced close (the runtime's abort signal) throws from inside the
   * runtime when it races with the connection closing on its own. Neither
   * closes a TLS connection whose handshake never completes (Deno 2.9.6 keeps
   * its socket until the client leaves); see the README's security notes.
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
   * A handler that keeps `activity` up to date around `options.handler`, and
   * has the peer watch look after the request until its answer is returned:
   * from then on, writing the answer tells the runtime itself that the
   * client left.
   */
  function tracked(activity: Activity, conn: Deno.Conn): ConnectionHandler {
    const done = () => {
      activity.inFlight--;
      activity.idleSince = now();
    };
    return function trackedHandler(request, info) {
      activity.inFlight++;
      info.completed.then(done, done);
      const local = conn.localAddr;
      const remote = conn.remoteAddr;
      const registration = local.transport === "tcp" &&
          remote.transport === "tcp"
        ? options.peerWatch?.watch(local, remote)
        : undefined;
      if (registration === undefined) return options.handler(request, info);
      return handleWatched(request, info, registration);
    };
  }

  async function handleWatched(
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
    registration: PeerRegistration,
  ): Promise<Response> {
    // The runtime's info keeps its fields behind getters of private state:
    // a spread or a prototype link would lose them.
    const watched: ServeInfo = {
      get remoteAddr() {
        return info.remoteAddr;
      },
      get completed() {
        return info.completed;
      },
      peerGone: registration.signal,
    };
    try {
      return await options.handler(request, watched);
    } finally {
      registration.end();
    }
  }

  function serve(conn: Deno.Conn): void {
    const activity: Activity = { inFlight: 0, idleSince: now() };
    const server = options.serveConnection(conn, {
      handler: tracked(activity, conn),
      onError: internalServerError,
    });
    const entry: Served = { server, activity, closing: false };
    served.add(entry);
    server.finished.catch(() => {
      // A connection that broke concerns its own requests only.
    }).finally(() => {
      served.delete(entry);
      slotFreed.resolve();
      slotFreed = Promise.withResolvers<void>();
    });
  }

  return {
    serve,
    sweep,
    get size(): number {
      return served.size;
    },
    /** Resolves when a connection closes. */
    get slotFreed(): Promise<void> {
      return slotFreed.promise;
    },
    /** Asks every connection to close after its in-flight requests; resolves when all did. */
    async drain(): Promise<void> {
      const entries = [...served];
      for (const entry of entries) entry.server.shutdown().catch(() => {});
      await Promise.all(
        entries.map((entry) => entry.server.finished.catch(() => {})),
      );
    },
  };
}

/** What the accept loop shares with its server. */
interface LoopState {
  stopping: boolean;
  /** Resolves when the server is told to stop. */
  readonly stopped: Promise<void>;
  readonly guard: AcceptGuard;
  readonly log: Logger;
  readonly maxConnections: number;
}

/** Accepts until stopped; never ends on an accept error. */
async function acceptLoop(
  listener: AcceptSource,
  connections: ReturnType<typeof createConnectionSet>,
  state: LoopState,
): Promise<void> {
  while (!state.stopping) {
    if (connections.size >= state.maxConnections) {
      state.guard.capped(connections.size);
      await Promise.race([connections.slotFreed, state.stopped]);
      continue;
    }
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
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
): Deno.HttpServer<Deno.NetAddr> {
  const connections = createConnectionSet(options);
  const stopped = Promise.withResolvers<void>();
  const state: LoopState = {
    stopping: false,
    stopped: stopped.promise,
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
      stopped.resolve();
    }
    return finished;
  }
  return {
    addr: listener.addr,
    finished,
    shutdown,
    ref() {
      listener.ref();
    },
    unref() {
      listener.unref();
    },
    [Symbol.asyncDispose]: shutdown,
  };
}
