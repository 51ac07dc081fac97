import assert from "node:assert/strict";
import { settlesWithin, withDeadline } from "./support/deadline.ts";
import {
  type AcceptSource,
  serveConnections,
} from "../src/connection_server.ts";
import { createLogger } from "../src/log.ts";
import { generateSelfSignedCertificate } from "../src/tls.ts";
import {
  type ConnectionHandler,
  findServeConnection,
} from "../src/runtime_http.ts";
import {
  closeQuietly,
  connectTo,
  readToClose,
  readUntil,
  writeText,
} from "./support/sockets.ts";

const serveConnection = findServeConnection()!;
const HEALTH = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";

function recordingLog() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    verbosity: 5,
    write: (line) => lines.push(JSON.parse(line)),
  });
  return { log, lines };
}

/** A loopback listener whose first `failures` accepts fail as they do when descriptors run out. */
function listenFailingFirst(failures: number): AcceptSource {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let left = failures;
  return {
    addr: listener.addr,
    accept() {
      if (left-- > 0) {
        const error = new Error("Too many open files (os error 24)");
        return Promise.reject(Object.assign(error, { code: "EMFILE" }));
      }
      return listener.accept();
    },
    close: () => listener.close(),
    ref: () => listener.ref(),
    unref: () => listener.unref(),
  };
}

/** Serves `handler` on loopback; `await using` shuts it down. */
function start(
  handler: ConnectionHandler,
  options: {
    idleTimeoutMs?: number;
    maxConnections?: number;
    listener?: AcceptSource;
    firstRequestGraceMs?: number;
    /** Called as each connection is handed to the runtime. */
    onServe?: () => void;
  } = {},
) {
  const { log, lines } = recordingLog();
  const server = serveConnections(
    options.listener ?? Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    {
      handler,
      serveConnection: (conn, serveOptions) => {
        options.onServe?.();
        return serveConnection(conn, serveOptions);
      },
      log,
      maxConnections: options.maxConnections ?? Infinity,
      idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
      ...(options.firstRequestGraceMs === undefined
        ? {}
        : { firstRequestGraceMs: options.firstRequestGraceMs }),
    },
  );
  return {
    server,
    port: server.addr.port,
    lines,
    async [Symbol.asyncDispose]() {
      await withDeadline(server.shutdown(), 5_000, "shutdown");
    },
  };
}

const ok: ConnectionHandler = () => new Response("ok");

/** Reads one whole answer with a body of "ok". */
function readOk(conn: Deno.Conn) {
  return readUntil(conn, (text) => text.endsWith("\r\n\r\nok"));
}

/** How long the server takes to close `conn`, in ms. */
async function msUntilClosed(conn: Deno.Conn, deadlineMs: number) {
  const started = performance.now();
  const { closed } = await readToClose(conn, deadlineMs);
  assert.equal(closed, true);
  return performance.now() - started;
}

Deno.test("connection server keeps its listener through failed accepts, reports once, and serves the connection that waited", async () => {
  await using s = start(ok, { listener: listenFailingFirst(6) });
  const conn = await connectTo(s.port);
  try {
    await writeText(conn, HEALTH);
    const answer = await readOk(conn);
    assert.match(answer.text, /^HTTP\/1\.1 200 OK/);
  } finally {
    closeQuietly(conn);
  }
  assert.deepEqual(s.lines.map((line) => line.msg), [
    "Cannot accept a connection: Too many open files (os error 24); the process is out of descriptors, retrying every 200 ms at most",
    "accepting connections again",
  ]);
  assert.equal(s.lines[1]?.failed_accepts, 6);
});

Deno.test("connection server closes a connection that sends nothing, and one whose head never ends, after the idle timeout", async () => {
  await using s = start(ok, { idleTimeoutMs: 300 });
  const silent = await connectTo(s.port);
  const slow = await connectTo(s.port);
  const head = "GET /health HTTP/1.1\r\nHost: a\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa";
  let sent = 0;
  // One header byte every 50 ms: never a whole head within the timeout.
  const trickle = setInterval(() => {
    slow.write(new TextEncoder().encode(head[sent++ % head.length])).catch(
      () => {},
    );
  }, 50);
  try {
    const [silentMs, slowMs] = await Promise.all([
      msUntilClosed(silent, 5_000),
      msUntilClosed(slow, 5_000),
    ]);
    for (const ms of [silentMs, slowMs]) {
      assert.ok(ms >= 250 && ms < 2_000, `closed after ${ms} ms`);
    }
  } finally {
    clearInterval(trickle);
    closeQuietly(silent);
    closeQuietly(slow);
  }
});

Deno.test("connection server keeps a connection open while an answer streams past the idle timeout, and while requests keep coming", async () => {
  const encoder = new TextEncoder();
  await using s = start((request) => {
    if (new URL(request.url).pathname !== "/stream") return new Response("ok");
    let sent = 0;
    return new Response(
      new ReadableStream({
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, 150));
          controller.enqueue(encoder.encode(`tick ${sent}\n`));
          if (++sent === 5) controller.close();
        },
      }),
    );
  }, { idleTimeoutMs: 300 });
  const conn = await connectTo(s.port);
  try {
    await writeText(conn, "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
    const stream = await readUntil(conn, (text) => text.includes("0\r\n\r\n"));
    assert.match(stream.text, /tick 4\n/);
    // Requests 150 ms apart keep the same connection alive well past 300 ms.
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 150));
      await writeText(conn, HEALTH);
      assert.match((await readOk(conn)).text, /^HTTP\/1\.1 200 OK/);
    }
    const ms = await msUntilClosed(conn, 5_000);
    assert.ok(ms >= 250, `closed ${ms} ms after the last answer`);
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("connection server holds connections over the cap in the listen queue and serves them when one closes", async () => {
  await using s = start(ok, { maxConnections: 1 });
  const first = await connectTo(s.port);
  const second = await connectTo(s.port);
  try {
    await writeText(first, HEALTH);
    await readOk(first);
    await writeText(second, HEALTH);
    const answered = readOk(second);
    assert.equal(
      await settlesWithin(answered, 300),
      false,
      "the second connection waits while the first is open",
    );
    first.close();
    assert.match((await answered).text, /^HTTP\/1\.1 200 OK/);
  } finally {
    closeQuietly(first);
    closeQuietly(second);
  }
  assert.match(
    String(s.lines.find((line) => line.level === "warn")?.msg),
    /^Connection limit reached: 1 connections open/,
  );
});

Deno.test("connection server shutdown gives a TLS connection that has sent no request yet the time to send it", async () => {
  const tls = await generateSelfSignedCertificate();
  const inner = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...tls });
  const served = Promise.withResolvers<void>();
  const s = start(ok, { listener: inner, onServe: () => served.resolve() });
  const fresh = await Deno.connectTls({
    hostname: "localhost",
    port: s.port,
    caCerts: [tls.cert],
  });
  try {
    // Handed to the runtime, but its request was still on the way when the
    // server stopped.
    await withDeadline(served.promise, 2_000, "the connection was not served");
    const stopping = s.server.shutdown();
    // Paces the client: its request comes a moment after the drain began.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await writeText(fresh, HEALTH);
    assert.match((await readOk(fresh)).text, /^HTTP\/1\.1 200 OK/);
    assert.ok(await msUntilClosed(fresh, 2_000) < 1_000);
    await withDeadline(stopping, 5_000, "shutdown");
  } finally {
    closeQuietly(fresh);
  }
});

Deno.test("connection server shutdown closes idle connections at once, lets a streaming answer finish, and stops accepting", async () => {
  const release = Promise.withResolvers<void>();
  const s = start((request) =>
    new URL(request.url).pathname === "/ok" ? new Response("ok") : new Response(
      new ReadableStream({
        async start(controller) {
          controller.enqueue(new TextEncoder().encode("first\n"));
          await release.promise;
          controller.enqueue(new TextEncoder().encode("last\n"));
          controller.close();
        },
      }),
    )
  );
  const idle = await connectTo(s.port);
  const busy = await connectTo(s.port);
  try {
    // Idle after one answer; a connection that never sent a request is
    // another case (below).
    await writeText(idle, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
    await readOk(idle);
    await writeText(busy, HEALTH);
    await readUntil(busy, (text) => text.includes("first\n"));
    const stopping = s.server.shutdown();
    assert.ok(await msUntilClosed(idle, 2_000) < 1_000);
    await assert.rejects(connectTo(s.port));
    release.resolve();
    const rest = await readToClose(busy);
    assert.match(rest.text, /last\n/);
    await withDeadline(stopping, 5_000, "shutdown");
    await withDeadline(s.server.finished, 1_000, "finished");
  } finally {
    closeQuietly(idle);
    closeQuietly(busy);
  }
});

Deno.test("connection server hand-off serves the connections queued on its listener before closing it", async () => {
  const QUEUED = 5;
  const release = Promise.withResolvers<void>();
  // One connection at a time, held busy: the others wait in the listen queue.
  const s = start(async (request) => {
    if (new URL(request.url).pathname === "/hold") await release.promise;
    return new Response("ok");
  }, { maxConnections: 1 });
  const busy = await connectTo(s.port);
  const queued: Deno.TcpConn[] = [];
  try {
    await writeText(busy, "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n");
    for (let i = 0; i < QUEUED; i++) queued.push(await connectTo(s.port));
    const handingOff = s.server.handOff();
    for (const conn of queued) {
      await writeText(conn, HEALTH);
      assert.match((await readOk(conn)).text, /^HTTP\/1\.1 200 OK/);
    }
    await withDeadline(handingOff, 5_000, "hand-off");
    await assert.rejects(connectTo(s.port), "the listener stays open");
    release.resolve();
    assert.match((await readOk(busy)).text, /^HTTP\/1\.1 200 OK/);
    await withDeadline(s.server.finished, 5_000, "the hand-off's drain");
  } finally {
    release.resolve();
    closeQuietly(busy);
    for (const conn of queued) closeQuietly(conn);
  }
});

Deno.test("connection server shutdown closes a connection that sent nothing once its first-request grace ends", async () => {
  const s = start(ok, { firstRequestGraceMs: 100 });
  const silent = await connectTo(s.port);
  try {
    // A request on another connection proves the silent one was accepted before.
    const other = await connectTo(s.port);
    await writeText(other, HEALTH);
    await readOk(other);
    closeQuietly(other);
    const stopping = s.server.shutdown();
    assert.ok(await msUntilClosed(silent, 2_000) < 1_000);
    await withDeadline(stopping, 2_000, "shutdown");
  } finally {
    closeQuietly(silent);
  }
});

Deno.test("connection server shutdown does not wait on a TLS handshake that never completes, and serves TLS clients", async () => {
  const tls = await generateSelfSignedCertificate();
  const s = start(ok, {
    idleTimeoutMs: 300,
    firstRequestGraceMs: 100,
    listener: Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...tls }),
  });
  // A TCP connection that never sends its ClientHello.
  const stalled = await connectTo(s.port);
  const client = await Deno.connectTls({
    hostname: "localhost",
    port: s.port,
    caCerts: [tls.cert],
  });
  try {
    await writeText(client, HEALTH);
    assert.match((await readOk(client)).text, /^HTTP\/1\.1 200 OK/);
    // Deno 2.9.6 keeps the stalled socket open even once closed from
    // JavaScript; what the sidecar controls is that nothing waits on it.
    await withDeadline(s.server.shutdown(), 2_000, "shutdown");
  } finally {
    closeQuietly(stalled);
    closeQuietly(client);
  }
});
