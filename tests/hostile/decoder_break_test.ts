/**
 * A decoder that sends the status of a streaming answer and then closes
 * before its first body byte. With `-decode-first-byte-timeout` on, the
 * sidecar waits on that byte before answering, so the client gets an error
 * that says the decoder broke its answer, not that it was out of reach.
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
