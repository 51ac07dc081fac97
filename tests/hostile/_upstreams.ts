/**
 * @module
 * Raw loopback upstreams for the hostile-input tests, written against the
 * socket so they see exactly what the sidecar sent and when: how many body
 * bytes arrived before the sidecar gave up, whether it closed the
 * connection, and how long after a request's head its body came.
 */

import { startScriptedServer } from "../support/stub_upstream.ts";

const latin1 = new TextDecoder("latin1");
const encoder = new TextEncoder();

/** One connection as the upstream saw it. */
export interface SeenConnection {
  /** Request head, once its blank line arrived. */
  head: string | undefined;
  /** Bytes after the head. */
  bodyBytes: number;
  /** Resolves when the head arrived. */
  readonly headSeen: Promise<void>;
  /** Resolves when the sidecar closed (or reset) the connection. */
  readonly closed: Promise<void>;
}

/** A raw upstream recording connections; `await using` stops it. */
export interface RecordingUpstream extends AsyncDisposable {
  readonly port: number;
  readonly connections: SeenConnection[];
  /** Resolves with the first connection, once it has one. */
  readonly firstConnection: Promise<SeenConnection>;
}

/**
 * Reads every connection to its end without answering, or, with
 * `answerOnHead`, answers 200 with a chunked body whose first chunk goes out
 * as soon as the head arrived and which never ends (a decoder that answered
 * before the body was in).
 */
export function startRecordingUpstream(
  options: { readonly answerOnHead?: boolean } = {},
): RecordingUpstream {
  const connections: SeenConnection[] = [];
  const first = Promise.withResolvers<SeenConnection>();
  const server = startScriptedServer(async (conn) => {
    const headSeen = Promise.withResolvers<void>();
    const closed = Promise.withResolvers<void>();
    const seen: SeenConnection = {
      head: undefined,
      bodyBytes: 0,
      headSeen: headSeen.promise,
      closed: closed.promise,
    };
    connections.push(seen);
    first.resolve(seen);
    const buffer = new Uint8Array(64 * 1024);
    let text = "";
    for (;;) {
      const read = await conn.read(buffer).catch(() => null);
      if (read === null) break;
      if (seen.head !== undefined) {
        seen.bodyBytes += read;
        continue;
      }
      text += latin1.decode(buffer.subarray(0, read));
      const end = text.indexOf("\r\n\r\n");
      if (end === -1) continue;
      seen.head = text.slice(0, end);
      seen.bodyBytes = text.length - end - 4;
      headSeen.resolve();
      if (options.answerOnHead) {
        await conn.write(encoder.encode(
          "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n" +
            "transfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n",
        )).catch(() => 0);
      }
    }
    closed.resolve();
  });
  return {
    port: server.port,
    connections,
    firstConnection: first.promise,
    [Symbol.asyncDispose]: () => server[Symbol.asyncDispose](),
  };
}

/** When one request's head and body reached the upstream. */
export interface RequestTiming {
  /** Milliseconds from the end of the head to the end of the body; 0 when both came in one read. */
  readonly gapMs: number;
  readonly bodyBytes: number;
  readonly chunked: boolean;
}

/** A keep-alive upstream timing each request's head-to-body gap. */
export interface TimingUpstream extends AsyncDisposable {
  readonly port: number;
  readonly timings: RequestTiming[];
  /** Resolves when the first request head arrived. */
  readonly firstHead: Promise<void>;
}

function indexOf(bytes: Uint8Array, text: string, from = 0): number {
  outer: for (let i = from; i <= bytes.length - text.length; i++) {
    for (let j = 0; j < text.length; j++) {
      if (bytes[i + j] !== text.charCodeAt(j)) continue outer;
    }
    return i;
  }
  return -1;
}

/** Where a chunked body starting at `start` ends, or -1 while incomplete. */
function chunkedEnd(bytes: Uint8Array, start: number): number {
  let at = start;
  for (;;) {
    const line = indexOf(bytes, "\r\n", at);
    if (line === -1) return -1;
    const size = parseInt(latin1.decode(bytes.subarray(at, line)), 16);
    at = line + 2;
    if (size === 0) return bytes.length >= at + 2 ? at + 2 : -1;
    at += size + 2;
    if (at > bytes.length) return -1;
  }
}

const ANSWER = encoder.encode(
  "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
);

/**
 * Answers `{}` to every request on every connection, after its body arrived
 * whole, and records when the head and the body came.
 */
export function startTimingUpstream(): TimingUpstream {
  const timings: RequestTiming[] = [];
  const firstHead = Promise.withResolvers<void>();
  const server = startScriptedServer(async (conn) => {
    const buffer = new Uint8Array(256 * 1024);
    let pending = new Uint8Array(0);
    let headAt: number | undefined;
    for (;;) {
      const read = await conn.read(buffer).catch(() => null);
      if (read === null) return;
      const now = performance.now();
      const merged = new Uint8Array(pending.length + read);
      merged.set(pending);
      merged.set(buffer.subarray(0, read), pending.length);
      pending = merged;
      for (;;) {
        const headEnd = indexOf(pending, "\r\n\r\n");
        if (headEnd === -1) break;
        headAt ??= now;
        firstHead.resolve();
        const head = latin1.decode(pending.subarray(0, headEnd)).toLowerCase();
        const chunked = /transfer-encoding:\s*chunked/.test(head);
        const length = Number(/content-length:\s*(\d+)/.exec(head)?.[1] ?? 0);
        const bodyStart = headEnd + 4;
        const end = chunked
          ? chunkedEnd(pending, bodyStart)
          : (pending.length >= bodyStart + length ? bodyStart + length : -1);
        if (end === -1) break;
        timings.push({
          gapMs: now - headAt,
          bodyBytes: end - bodyStart,
          chunked,
        });
        headAt = undefined;
        pending = pending.slice(end);
        await conn.write(ANSWER);
      }
    }
  });
  return {
    port: server.port,
    timings,
    firstHead: firstHead.promise,
    [Symbol.asyncDispose]: () => server[Symbol.asyncDispose](),
  };
}

/** A TCP relay in front of an upstream that counts the sidecar's open connections to it. */
export interface CountingRelay extends AsyncDisposable {
  readonly port: number;
  /** Connections from the sidecar open right now. */
  open(): number;
  /** Connections accepted so far. */
  accepted(): number;
  /** Resolves once no connection is open (at once if none is). */
  idle(): Promise<void>;
}

/** Relays loopback port `targetPort`, counting the connections that pass. */
export function startCountingRelay(targetPort: number): CountingRelay {
  let open = 0;
  let accepted = 0;
  const idleWaiters: (() => void)[] = [];
  const pairs: Deno.Conn[] = [];
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const relays: Promise<void>[] = [];
  const closeQuietly = (conn: Deno.Conn) => {
    try {
      conn.close();
    } catch {
      // Closed by the other direction.
    }
  };
  async function relay(client: Deno.Conn): Promise<void> {
    open++;
    accepted++;
    let target: Deno.Conn | undefined;
    try {
      target = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
      pairs.push(client, target);
      const upstream = target;
      await Promise.race([
        client.readable.pipeTo(upstream.writable, { preventClose: true }),
        upstream.readable.pipeTo(client.writable, { preventClose: true }),
      ]).catch(() => {});
    } finally {
      closeQuietly(client);
      if (target) closeQuietly(target);
      open--;
      if (open === 0) { for (const wake of idleWaiters.splice(0)) wake(); }
    }
  }
  const accepting = (async () => {
    for await (const conn of listener) relays.push(relay(conn));
  })().catch(() => {});
  return {
    port: listener.addr.port,
    open: () => open,
    accepted: () => accepted,
    idle() {
      if (open === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of pairs) closeQuietly(conn);
      await Promise.allSettled(relays);
      await accepting;
    },
  };
}
