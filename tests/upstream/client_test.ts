import assert from "node:assert/strict";
import { settlesWithin } from "../support/deadline.ts";
import {
  createUpstreamClient,
  IDLE_TIMEOUT_MS,
  UpstreamError,
} from "../../src/upstream/client.ts";
import { startScriptedServer } from "../support/stub_upstream.ts";

const encoder = new TextEncoder();
const OK = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/** Reads one request head and its (small, sized) body; null when the peer closed first. */
async function readRequest(conn: Deno.Conn): Promise<string | null> {
  const buffer = new Uint8Array(16384);
  let text = "";
  for (;;) {
    const read = await conn.read(buffer).catch(() => null);
    if (read === null) return null;
    text += new TextDecoder().decode(buffer.subarray(0, read));
    const end = text.indexOf("\r\n\r\n");
    if (end === -1) continue;
    const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
    if (text.length >= end + 4 + length) return text;
  }
}

/**
 * A loopback listener whose accept queue is full, so further connects hang
 * (the kernel drops their SYNs); `close` ends it and its filler connections.
 */
async function fullListener(): Promise<{ port: number; close(): void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  const fillers: Deno.Conn[] = [];
  for (let index = 0; index < 5000; index++) {
    const connecting = Deno.connect({ hostname: "127.0.0.1", port });
    if (!await settlesWithin(connecting, 200)) {
      connecting.then((conn) => conn.close(), () => {});
      break;
    }
    fillers.push(await connecting);
  }
  return {
    port,
    close() {
      for (const conn of fillers) conn.close();
      listener.close();
    },
  };
}

const request = (body: string) => ({
  method: "POST",
  headers: [["content-type", "application/json"]] as [string, string][],
  body,
  signal: new AbortController().signal,
});

Deno.test("upstream client drops idle connections before a 5 s keep-alive closes them", async () => {
  assert.ok(IDLE_TIMEOUT_MS < 5000);
  let requests = 0;
  // uvicorn's default: a connection idle for 5 s is closed.
  await using server = startScriptedServer(async (conn) => {
    for (;;) {
      const next = readRequest(conn);
      if (!await settlesWithin(next, 5000)) break;
      if (await next === null) break;
      requests++;
      await conn.write(encoder.encode(OK));
    }
    conn.close();
  });
  const client = createUpstreamClient();
  try {
    const url = `http://127.0.0.1:${server.port}/v1/completions`;
    assert.equal((await client.sendAndRead(url, request("{}"))).status, 200);
    await new Promise((resolve) => setTimeout(resolve, 4500));
    assert.equal((await client.sendAndRead(url, request("{}"))).status, 200);
    assert.equal(requests, 2);
    // The second request went on a new connection: the idle one was dropped first.
    assert.equal(server.connections(), 2);
  } finally {
    client.close();
  }
});

Deno.test("upstream client keeps at most -max-idle-conns-per-host idle connections to a host", async () => {
  const burst = 4;
  const arrived = Promise.withResolvers<void>();
  let requests = 0;
  const closed: number[] = [];
  const allButOneClosed = Promise.withResolvers<void>();
  // Answers only once the whole burst has arrived, so each request holds its
  // own connection; then notes which connections the client closes.
  await using server = startScriptedServer(async (conn, index) => {
    for (;;) {
      const next = await readRequest(conn);
      if (next === null) break;
      if (++requests === burst) arrived.resolve();
      await arrived.promise;
      await conn.write(encoder.encode(OK));
    }
    closed.push(index);
    if (closed.length === burst - 1) allButOneClosed.resolve();
  });
  const client = createUpstreamClient({ maxIdlePerHost: 1 });
  try {
    const url = `http://127.0.0.1:${server.port}/v1/completions`;
    const answers = await Promise.all(
      Array.from(
        { length: burst },
        () => client.sendAndRead(url, request("{}")),
      ),
    );
    assert.deepEqual(answers.map((answer) => answer.status), [
      200,
      200,
      200,
      200,
    ]);
    assert.equal(server.connections(), burst);
    // Well before the 4 s idle timeout, which would close them all.
    assert.ok(
      await settlesWithin(allButOneClosed.promise, 2000),
      `closed so far: ${closed.length} of ${burst}`,
    );
    assert.equal(closed.length, burst - 1);
  } finally {
    client.close();
  }
});

/**
 * A server whose first connection reads a request and closes unanswered (an
 * upstream that died having read it); later connections answer everything.
 * `seen` gets `<connection>:<method> <body>` per request read.
 */
function startFirstUnanswered(seen: string[]) {
  return startScriptedServer(async (conn, index) => {
    for (;;) {
      const text = await readRequest(conn);
      if (text === null) break;
      seen.push(
        `${index}:${text.slice(0, text.indexOf(" "))} ${
          text.slice(text.indexOf("\r\n\r\n") + 4)
        }`,
      );
      if (index === 0) break;
      await conn.write(encoder.encode(OK));
    }
    conn.close();
  });
}

Deno.test("upstream client sends an idempotent request again once when its connection closed unanswered", async () => {
  const seen: string[] = [];
  await using server = startFirstUnanswered(seen);
  const client = createUpstreamClient();
  try {
    const url = `http://127.0.0.1:${server.port}/v1/models`;
    const get = { ...request(""), method: "GET", body: null };
    assert.equal((await client.sendAndRead(url, get)).status, 200);
    assert.deepEqual(seen, ["0:GET ", "1:GET "]);
  } finally {
    client.close();
  }
});

Deno.test("upstream client never sends a POST twice: the upstream read it and closed, it fails as a reset", async () => {
  const seen: string[] = [];
  await using server = startFirstUnanswered(seen);
  const client = createUpstreamClient();
  try {
    const url = `http://127.0.0.1:${server.port}/v1/completions`;
    await assert.rejects(
      client.sendAndRead(url, request("a")),
      (error: unknown) =>
        error instanceof UpstreamError && error.kind === "reset",
    );
    assert.deepEqual(seen, ["0:POST a"]);
  } finally {
    client.close();
  }
});

Deno.test("upstream client sends a POST with an idempotency key again once", async () => {
  const seen: string[] = [];
  await using server = startFirstUnanswered(seen);
  const client = createUpstreamClient();
  try {
    const url = `http://127.0.0.1:${server.port}/v1/completions`;
    const keyed = {
      ...request("a"),
      headers: [
        ["content-type", "application/json"],
        ["idempotency-key", "k1"],
      ] as [string, string][],
    };
    assert.equal((await client.sendAndRead(url, keyed)).status, 200);
    assert.deepEqual(seen, ["0:POST a", "1:POST a"]);
  } finally {
    client.close();
  }
});

Deno.test("upstream client serves a POST on a new connection when the pooled one was closed right after its answer", async () => {
  // The runtime retries a request it had not written when it finds its
  // pooled connection closed: back to back, none of these fails, and each is
  // read once.
  const seen: string[] = [];
  await using server = startScriptedServer(async (conn) => {
    const text = await readRequest(conn);
    if (text !== null) {
      seen.push(text.slice(text.indexOf("\r\n\r\n") + 4));
      await conn.write(encoder.encode(OK));
    }
    conn.close();
  });
  const client = createUpstreamClient();
  try {
    const url = `http://127.0.0.1:${server.port}/v1/completions`;
    for (let index = 0; index < 20; index++) {
      const reply = await client.sendAndRead(url, request(String(index)));
      assert.equal(reply.status, 200);
    }
    assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => String(i)));
  } finally {
    client.close();
  }
});

Deno.test("upstream client never sends a streamed body twice", async () => {
  await using server = startScriptedServer(async (conn) => {
    await readRequest(conn);
    conn.close();
  });
  const client = createUpstreamClient();
  try {
    const url = `http://127.0.0.1:${server.port}/v1/completions`;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode("{}"));
        controller.close();
      },
    });
    await assert.rejects(
      client.send(url, { ...request(""), body }),
      (error: unknown) =>
        error instanceof Error && error.name === "UpstreamError",
    );
    assert.equal(server.connections(), 1);
  } finally {
    client.close();
  }
});

Deno.test("-connect-timeout ends a connect the upstream never completes with connect_timeout", async () => {
  // A listener whose accept queue is full drops further SYNs: connects hang.
  const full = await fullListener();
  const { port } = full;
  const client = createUpstreamClient({ connectTimeoutMs: 200 });
  try {
    const started = performance.now();
    await assert.rejects(
      client.send(`http://127.0.0.1:${port}/v1/completions`, request("{}")),
      (error: unknown) =>
        error instanceof Error && "kind" in error &&
        error.kind === "connect_timeout",
    );
    assert.ok(performance.now() - started < 1500);
  } finally {
    client.close();
    full.close();
  }
});

Deno.test("requests that find a host cold share one -connect-timeout probe", async () => {
  const CONCURRENT = 20;
  let probes = 0;
  await using server = startScriptedServer(async (conn) => {
    // A probe connects and closes without a byte; a request is answered.
    const text = await readRequest(conn);
    if (text === null) {
      probes++;
      return;
    }
    await conn.write(encoder.encode(OK));
    while (await readRequest(conn) !== null) {
      await conn.write(encoder.encode(OK));
    }
  });
  const client = createUpstreamClient({ connectTimeoutMs: 2000 });
  try {
    const url = `http://127.0.0.1:${server.port}/v1/completions`;
    const answers = await Promise.all(
      Array.from(
        { length: CONCURRENT },
        () => client.sendAndRead(url, request("{}")),
      ),
    );
    assert.deepEqual(
      answers.map((answer) => answer.text),
      Array(CONCURRENT).fill("ok"),
    );
    assert.equal(probes, 1);
  } finally {
    client.close();
  }
});

Deno.test("a client leaving while its request waits on a shared probe ends only its own request", async () => {
  // Connects to a full accept queue hang, so the probe stays in flight.
  const full = await fullListener();
  const { port } = full;
  const client = createUpstreamClient({ connectTimeoutMs: 1500 });
  try {
    const url = `http://127.0.0.1:${port}/v1/completions`;
    const leaving = new AbortController();
    const first = client.send(url, {
      ...request("{}"),
      signal: leaving.signal,
    });
    const second = client.send(url, request("{}"));
    const started = performance.now();
    leaving.abort();
    await assert.rejects(
      first,
      (error: unknown) =>
        error instanceof Error && "kind" in error && error.kind === "aborted",
    );
    assert.ok(
      performance.now() - started < 500,
      "the leaving client is released at once",
    );
    await assert.rejects(
      second,
      (error: unknown) =>
        error instanceof Error && "kind" in error &&
        error.kind === "connect_timeout",
    );
  } finally {
    client.close();
    full.close();
  }
});

Deno.test("a failed shared probe fails every request waiting on it, and the next request probes again", async () => {
  // A port nobody listens on: the probe's connect is refused.
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = closed.addr;
  closed.close();
  const client = createUpstreamClient({ connectTimeoutMs: 2000 });
  try {
    const url = `http://127.0.0.1:${port}/v1/completions`;
    const isRefused = (error: unknown) =>
      error instanceof Error && "kind" in error && error.kind === "refused";
    const waiting = Array.from(
      { length: 5 },
      () => client.send(url, request("{}")),
    );
    for (const attempt of waiting) await assert.rejects(attempt, isRefused);
    // Listening now: a later request must not inherit the failed probe.
    await using _server = startScriptedServer(async (conn) => {
      while (await readRequest(conn) !== null) {
        await conn.write(encoder.encode(OK));
      }
    }, { port });
    const answer = await client.sendAndRead(url, request("{}"));
    assert.equal(answer.text, "ok");
  } finally {
    client.close();
  }
});

Deno.test("the -connect-timeout probe dials localhost at 127.0.0.1 and then ::1, as fetch tries every address", async () => {
  // Listening on ::1 alone, reading and never answering: only a probe that
  // reached it times out on the TLS hello; one that dialled 127.0.0.1 alone
  // is refused.
  const listener = Deno.listen({ hostname: "::1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })();
  const client = createUpstreamClient({
    connectTimeoutMs: 300,
    stages: { decoder: { tls: true, verify: true } },
  });
  try {
    await assert.rejects(
      client.send(
        client.url(`localhost:${listener.addr.port}`, "/v1/completions"),
        request("{}"),
      ),
      (error: unknown) =>
        error instanceof Error && "kind" in error &&
        error.kind === "connect_timeout" &&
        /no TLS handshake/.test(error.message),
    );
    assert.equal(accepted.length, 1);
  } finally {
    client.close();
    listener.close();
    for (const conn of accepted) conn.close();
    await accepting.catch(() => {});
  }
});
