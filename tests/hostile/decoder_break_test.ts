/**
 * A decoder that breaks its answer where the sidecar can still say so: the
 * status of a streaming answer and then a close before its first body byte
 * (with `-decode-first-byte-timeout` on the sidecar waits on that byte, so
 * the client gets an error saying the decoder broke its answer, not that it
 * was out of reach), or a 101 to a request that asked for no switch.
 */

import assert from "node:assert/strict";
import { within } from "../support/deadline.ts";
import { chatBody, createHarness } from "../support/harness.ts";
import { readRequest } from "../support/sockets.ts";
import { startScriptedServer } from "../support/stub_upstream.ts";

Deno.test("-decode-first-byte-timeout: a decoder that closes after its 200's head gets the client a 502 decoder_broke", async () => {
  await using decoder = startScriptedServer(async (conn) => {
    await readRequest(conn);
    await conn.write(
      new TextEncoder().encode(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n" +
          "transfer-encoding: chunked\r\n\r\n",
      ),
    );
    conn.close();
  });
  await using h = await createHarness({
    config: {
      verbosity: 3,
      modelServerPort: decoder.port,
      decodeFirstByteTimeout: 10_000,
    },
  });
  const response = await within(
    h.pd("/v1/chat/completions", chatBody({ stream: true })),
    5_000,
    "the sidecar's answer",
  );
  assert.equal(response.status, 502);
  const { error } = await response.json();
  assert.equal(error.code, 502);
  assert.match(
    error.message,
    /^Decode server "127\.0\.0\.1:\d+" broke its answer before the first byte: /,
  );
  assert.doesNotMatch(error.message, /TypeError/);
  assert.equal((await h.accessLine()).error_code, "decoder_broke");
  assert.equal(decoder.connections(), 1);
});

Deno.test("a decoder answering 101 to a P/D decode or a passthrough gets the client a 502 decoder_bad_answer, not a protocol switch", async () => {
  await using decoder = startScriptedServer(async (conn) => {
    await readRequest(conn);
    await conn.write(
      new TextEncoder().encode(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n" +
          "connection: upgrade\r\n\r\nraw bytes",
      ),
    );
    conn.close();
  });
  await using h = await createHarness({
    config: { verbosity: 3, modelServerPort: decoder.port },
  });
  const base = h.listen();
  for (const path of ["/v1/chat/completions", "/v1/embeddings"]) {
    const response = await within(
      fetch(`${base}${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-prefiller-host-port": h.prefillerHeader,
        },
        body: chatBody(),
      }),
      5_000,
      "the sidecar's answer",
    );
    assert.equal(response.status, 502, path);
    const { error } = await response.json();
    assert.match(
      error.message,
      /^Decode server "127\.0\.0\.1:\d+" answered 101 to a request that asked for no protocol switch$/,
    );
    assert.equal((await h.accessLine()).error_code, "decoder_bad_answer");
    h.logs.length = 0;
  }
  assert.equal(decoder.connections(), 2);
});
