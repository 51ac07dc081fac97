import assert from "node:assert/strict";
import {
  createUpstreamClient,
  UpstreamError,
} from "../../src/upstream/client.ts";
import { createHttp1Client } from "../../src/upstream/http1_client.ts";
import type { UpstreamTarget } from "../../src/upstream/target.ts";
import {
  closedPort,
  startScriptedServer,
  startSilentUpstream,
} from "../support/stub_upstream.ts";
import { readRequest, writeText } from "../support/sockets.ts";

const encoder = new TextEncoder();

function targetOf(port: number): UpstreamTarget {
  return { host: "127.0.0.1", port, hostPort: `127.0.0.1:${port}` };
}

function post(body = '{"a":1}', signal = new AbortController().signal) {
  return {
    method: "POST",
    path: "/v1/completions?x=1",
    headers: [["content-type", "application/json"], ["x-request-id", "r1"]] as [
      string,
      string,
    ][],
    body,
    signal,
  };
}

Deno.test("http1 client sends method, path, host, headers and body, and reuses the connection", async () => {
  const seen: { port: number; body: string; headers: Headers; url: string }[] =
    [];
  await using server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
  }, async (request, info) => {
    seen.push({
      port: info.remoteAddr.port,
      body: await request.text(),
      headers: request.headers,
      url: request.url,
    });
    return Response.json({ ok: seen.length }, {
      headers: { "x-answer": "yes" },
    });
  });
  const client = createHttp1Client({ maxIdlePerHost: 4, idleTimeoutMs: 4000 });
  try {
    const first = await client.request(targetOf(server.addr.port), post());
    const second = await client.request(
      targetOf(server.addr.port),
      post('{"b":2}'),
    );
    assert.equal(first.status, 200);
    assert.deepEqual(JSON.parse(first.text), { ok: 1 });
    assert.deepEqual(JSON.parse(second.text), { ok: 2 });
    assert.equal(first.headers.get("x-answer"), "yes");
    assert.equal(
      seen[0]?.url,
      `http://127.0.0.1:${server.addr.port}/v1/completions?x=1`,
    );
    assert.equal(seen[0]?.body, '{"a":1}');
    assert.equal(seen[0]?.headers.get("x-request-id"), "r1");
    assert.equal(seen[0]?.headers.get("content-length"), "7");
    assert.equal(
      seen[1]?.port,
      seen[0]?.port,
      "the second request reuses the connection",
    );
  } finally {
    client.close();
  }
});

Deno.test("http1 client reads chunked answers", async () => {
  await using server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
  }, () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const part of ['{"parts":', '["a",', '"b"]}']) {
          controller.enqueue(encoder.encode(part));
        }
        controller.close();
      },
    });
    return new Response(body, { status: 201 });
  });
  const client = createHttp1Client({ maxIdlePerHost: 4, idleTimeoutMs: 4000 });
  try {
    const answer = await client.request(targetOf(server.addr.port), post());
    assert.equal(answer.status, 201);
    assert.deepEqual(JSON.parse(answer.text), { parts: ["a", "b"] });
  } finally {
    client.close();
  }
});

Deno.test("http1 client parses an answer that arrives one byte at a time, after an interim 100", async () => {
  const answer =
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 422 Unprocessable\r\nContent-Type: application/json\r\n" +
    'Content-Length: 12\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n{"error":1}\n';
  await using server = startScriptedServer(async (conn) => {
    await readRequest(conn);
    for (const byte of encoder.encode(answer)) {
      await conn.write(new Uint8Array([byte]));
    }
  });
  const client = createHttp1Client({ maxIdlePerHost: 4, idleTimeoutMs: 4000 });
  try {
    const response = await client.request(targetOf(server.port), post());
    assert.equal(response.status, 422);
    assert.equal(response.headers.get("content-type"), "application/json");
    assert.equal(response.headers.get("x-multi"), "a, b");
    assert.equal(response.text, '{"error":1}\n');
  } finally {
    client.close();
  }
});

Deno.test("http1 client reads to the end an answer without length, and does not reuse that connection", async () => {
  await using server = startScriptedServer(async (conn) => {
    await readRequest(conn);
    await writeText(conn, `HTTP/1.0 200 OK\r\n\r\n${"x".repeat(40_000)}`);
    conn.close();
  });
  const client = createHttp1Client({ maxIdlePerHost: 4, idleTimeoutMs: 4000 });
  try {
    assert.equal(
      (await client.request(targetOf(server.port), post())).text.length,
      40_000,
    );
    assert.equal(
      (await client.request(targetOf(server.port), post())).text.length,
      40_000,
    );
    assert.equal(server.connections(), 2);
  } finally {
    client.close();
  }
});

Deno.test("http1 client sends again on a new connection when a pooled one was closed while idle", async () => {
  await using server = startScriptedServer(async (conn, index) => {
    await readRequest(conn);
    await writeText(
      conn,
      `HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n${index}`,
    );
    // The first connection is closed by the server once idle, as uvicorn does after 5 s.
    if (index === 0) conn.close();
    else await readRequest(conn).catch(() => {});
  });
  const client = createHttp1Client({
    maxIdlePerHost: 4,
    idleTimeoutMs: 60_000,
  });
  try {
    assert.equal(
      (await client.request(targetOf(server.port), post())).text,
      "0",
    );
    assert.equal(
      (await client.request(targetOf(server.port), post())).text,
      "1",
    );
    assert.equal(server.connections(), 2);
  } finally {
    client.close();
  }
});

/**
 * A signal whose abort lands after the answer was read but before the client
 * stops listening: the order a real abort can take when its event runs
 * between two of the client's microtasks.
 */
function signalAbortingOnRemove(): AbortSignal {
  let listener: (() => void) | undefined;
  const fake = {
    aborted: false,
    addEventListener(_type: string, callback: () => void) {
      listener = callback;
    },
    removeEventListener() {
      fake.aborted = true;
      listener?.();
    },
    throwIfAborted() {},
  };
  return fake as unknown as AbortSignal;
}

Deno.test("http1 client does not pool a connection an abort closed after the answer was read", async () => {
  await using server = startScriptedServer(async (conn, index) => {
    for (;;) {
      await readRequest(conn);
      await writeText(
        conn,
        `HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n${index}`,
      );
    }
  });
  const client = createHttp1Client({
    maxIdlePerHost: 4,
    idleTimeoutMs: 60_000,
  });
  try {
    const target = targetOf(server.port);
    assert.equal(
      (await client.request(target, post("{}", signalAbortingOnRemove()))).text,
      "0",
    );
    // A pooled, closed connection would fail here with "Bad resource ID".
    assert.equal((await client.request(target, post())).text, "1");
    assert.equal(server.connections(), 2);
  } finally {
    client.close();
  }
});

Deno.test("http1 client does not reuse a connection idle longer than the idle timeout", async () => {
  await using server = startScriptedServer(async (conn) => {
    for (;;) {
      await readRequest(conn);
      await writeText(conn, "HTTP/1.1 204 No Content\r\n\r\n");
    }
  });
  const client = createHttp1Client({ maxIdlePerHost: 4, idleTimeoutMs: 0 });
  try {
    assert.equal(
      (await client.request(targetOf(server.port), post())).status,
      204,
    );
    assert.equal(
      (await client.request(targetOf(server.port), post())).status,
      204,
    );
    assert.equal(server.connections(), 2);
  } finally {
    client.close();
  }
});

Deno.test("http1 client closes the connection when the request is aborted", async () => {
  await using upstream = startSilentUpstream();
  const client = createUpstreamClient();
  try {
    const controller = new AbortController();
    const pending = client.sendAndRead(
      targetOf(upstream.port),
      post("{}", controller.signal),
    );
    await upstream.requestSeen;
    controller.abort();
    await assert.rejects(pending, (error: unknown) => {
      assert.ok(error instanceof UpstreamError);
      assert.equal(error.kind, "aborted");
      return true;
    });
    await upstream.closedByClient;
  } finally {
    client.close();
  }
});

Deno.test("http1 client failures are classified: refused, closed before answering", async () => {
  const client = createUpstreamClient();
  try {
    await assert.rejects(
      client.sendAndRead(targetOf(closedPort()), post()),
      (error: unknown) => {
        assert.ok(error instanceof UpstreamError);
        assert.equal(error.kind, "refused");
        return true;
      },
    );
    await using server = startScriptedServer(async (conn) => {
      await readRequest(conn);
      conn.close();
    });
    await assert.rejects(
      client.sendAndRead(targetOf(server.port), post()),
      (error: unknown) => {
        assert.ok(error instanceof UpstreamError);
        assert.equal(error.kind, "reset");
        return true;
      },
    );
  } finally {
    client.close();
  }
});
