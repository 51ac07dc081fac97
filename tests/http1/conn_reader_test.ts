import assert from "node:assert/strict";
import {
  ClosedEarlyError,
  ConnReader,
  HeadTooLargeError,
} from "../../src/http1/conn_reader.ts";
import { socketPair, writeText } from "../support/sockets.ts";

const decoder = new TextDecoder();

/** A loopback pair whose client side `reader` wraps with an 8-byte buffer; `peer` is the other end. */
async function pair(): Promise<
  { reader: ConnReader; peer: Deno.Conn } & AsyncDisposable
> {
  const sockets = await socketPair();
  return {
    reader: new ConnReader(sockets.client, 8),
    peer: sockets.server,
    [Symbol.asyncDispose]: () => sockets[Symbol.asyncDispose](),
  };
}

Deno.test("ConnReader grows its buffer for a head larger than it, keeping the bytes after", async () => {
  await using io = await pair();
  const head = "POST /v1/completions HTTP/1.1\r\nhost: decoder:8200";
  await writeText(io.peer, `${head}\r\n\r\n{"a":1}GET`);
  assert.equal(await io.reader.head(1024), head);
  assert.equal(decoder.decode(await io.reader.exactly(7)), '{"a":1}');
  // What follows the body stays buffered for the next message.
  assert.equal(io.reader.buffered >= 1, true);
  await writeText(io.peer, " / HTTP/1.1\r\n\r\n");
  assert.equal(await io.reader.head(1024), "GET / HTTP/1.1");
});

Deno.test("ConnReader moves unread bytes to the front of a full buffer", async () => {
  await using io = await pair();
  await writeText(io.peer, "abcdefgh");
  assert.equal(decoder.decode(await io.reader.view(4)), "abcd");
  // Four unread bytes at the end of a full 8-byte buffer; four more arrive.
  await writeText(io.peer, "ijkl");
  assert.equal(decoder.decode(await io.reader.view(8)), "efghijkl");
  await writeText(io.peer, "mn");
  assert.equal(decoder.decode(await io.reader.exactly(2)), "mn");
  assert.equal(io.reader.received, 14);
});

Deno.test("ConnReader tells a closed peer apart from a cut-short message and refuses a huge head", async () => {
  await using io = await pair();
  await writeText(io.peer, "GET / HT");
  io.peer.close();
  await assert.rejects(io.reader.head(1024), (error) => {
    assert.ok(error instanceof ClosedEarlyError);
    assert.equal(error.beforeAnyByte, false);
    return true;
  });
  assert.equal(io.reader.ended, true);

  await using idle = await pair();
  idle.peer.close();
  assert.equal(await idle.reader.head(1024), undefined);

  await using big = await pair();
  await writeText(big.peer, `GET /${"x".repeat(100)}`);
  await assert.rejects(big.reader.head(64), HeadTooLargeError);
});
