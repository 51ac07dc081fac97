import assert from "node:assert/strict";
import { ProxyError } from "../../src/errors.ts";
import { createWireDecoder } from "../../src/wire/decoder_leg.ts";
import { readBody } from "../../src/http1/body.ts";
import { readRequest } from "../support/sockets.ts";
import { closedPort, startScriptedServer } from "../support/stub_upstream.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function answer(body: string): Uint8Array {
  return encoder.encode(
    `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
  );
}

Deno.test("wire decoder sends again on a new connection when a pooled one was closed while idle", async () => {
  const firstClosed = Promise.withResolvers<void>();
  await using server = startScriptedServer(async (conn, index) => {
    await readRequest(conn);
    await conn.write(answer(`from connection ${index}`));
    // The first connection goes away while idle in the sidecar's pool, as
    // uvicorn's keep-alive timeout would make it.
    if (index === 0) {
      conn.close();
      firstClosed.resolve();
    }
  });
  const wire = createWireDecoder({
    port: server.port,
    maxIdle: 4,
    idleTimeoutMs: 60_000,
  });
  try {
    const signal = new AbortController().signal;
    const request = {
      method: "POST",
      target: "/v1/completions",
      headers: [],
      body: encoder.encode("{}"),
      signal,
    };
    const first = await wire.send(request);
    assert.equal(
      decoder.decode(await readBody(first.reader, first.head.framing)),
      "from connection 0",
    );
    wire.release(first, true);
    await firstClosed.promise;
    const second = await wire.send(request);
    assert.equal(second.head.status, 200);
    assert.equal(
      decoder.decode(await readBody(second.reader, second.head.framing)),
      "from connection 1",
    );
    wire.release(second, true);
    assert.equal(server.connections(), 2);
  } finally {
    wire.close();
  }
});

Deno.test("wire decoder answers 503 while nothing listens and 502 when the decoder hangs up", async () => {
  const refused = createWireDecoder({
    port: closedPort(),
    maxIdle: 1,
    idleTimeoutMs: 1000,
  });
  const request = {
    method: "GET",
    target: "/v1/models",
    headers: [],
    signal: new AbortController().signal,
  };
  await assert.rejects(
    refused.send(request),
    (error: unknown) => error instanceof ProxyError && error.status === 503,
  );
  refused.close();
  await using server = startScriptedServer(async (conn) => {
    await readRequest(conn);
    conn.close();
  });
  const hangsUp = createWireDecoder({
    port: server.port,
    maxIdle: 1,
    idleTimeoutMs: 1000,
  });
  await assert.rejects(
    hangsUp.send(request),
    (error: unknown) =>
      error instanceof ProxyError && error.status === 502 &&
      error.message.includes(`127.0.0.1:${server.port}`),
  );
  hangsUp.close();
});
