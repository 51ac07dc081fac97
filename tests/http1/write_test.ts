import assert from "node:assert/strict";
import { readText } from "../../src/http1/body.ts";
import { ConnReader } from "../../src/http1/conn_reader.ts";
import { withEncoded, withUtf8, writeMessage } from "../../src/http1/write.ts";
import { socketPair } from "../support/sockets.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads `conn` to its end. */
async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  for (let read = await conn.read(buffer); read !== null;) {
    parts.push(buffer.slice(0, read));
    read = await conn.read(buffer);
  }
  const all = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  return all;
}

Deno.test("withEncoded joins a UTF-8 head and a body in one array", async () => {
  const head = "POST /x HTTP/1.1\r\nx-name: Zoë 東京\r\n\r\n";
  const body = encoder.encode("🚀 body");
  const seen = await withEncoded(
    head,
    body,
    (bytes) => Promise.resolve(decoder.decode(bytes)),
  );
  assert.equal(seen, `${head}🚀 body`);
});

Deno.test("withUtf8 gives the byte length a head must state", async () => {
  const length = await withUtf8(
    "naïve 🚀",
    (bytes) => Promise.resolve(bytes.length),
  );
  assert.equal(length, encoder.encode("naïve 🚀").length);
  assert.notEqual(length, "naïve 🚀".length);
});

Deno.test("a buffer still in use is never handed to another message", async () => {
  // The inner message is encoded while the outer one is still held, as two
  // writes in flight at once would be.
  const outer = await withEncoded("outer message", undefined, async (held) => {
    await withEncoded(
      "INNER",
      encoder.encode("-overwrite-"),
      () => Promise.resolve(),
    );
    return decoder.decode(held);
  });
  assert.equal(outer, "outer message");
});

Deno.test("a buffer is reused only after its message is done with", async () => {
  let first: ArrayBufferLike | undefined;
  await withUtf8("a", (bytes) => {
    first = bytes.buffer;
    return Promise.resolve();
  });
  const second = await withUtf8("b", (bytes) => Promise.resolve(bytes.buffer));
  assert.equal(second, first, "the freed buffer is taken again");
});

Deno.test("writeMessage sends a message larger than the reused buffers whole", async () => {
  await using pair = await socketPair();
  const head = "HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n";
  const body = new Uint8Array(1024 * 1024).map((_, i) => i % 251);
  const received = readAll(pair.server);
  await writeMessage(pair.client, head, body);
  pair.client.close();
  const all = await received;
  assert.equal(all.length, encoder.encode(head).length + body.length);
  assert.equal(decoder.decode(all.subarray(0, head.length)), head);
  assert.deepEqual(all.subarray(head.length), body);
});

Deno.test("readText decodes a Content-Length body and leaves what follows buffered", async () => {
  await using pair = await socketPair();
  const body = "Grüße 🚀";
  const bytes = encoder.encode(body);
  await pair.client.write(encoder.encode(`${body}NEXT`));
  const reader = new ConnReader(pair.server);
  const text = await readText(reader, { kind: "length", length: bytes.length });
  assert.equal(text, body);
  assert.equal(reader.buffered, 4);
});

Deno.test("readText decodes a chunked body without its framing", async () => {
  await using pair = await socketPair();
  // "é" (C3 A9) split across two chunks.
  const wire = [
    ...encoder.encode("3\r\nab"),
    0xc3,
    ...encoder.encode("\r\n2\r\n"),
    0xa9,
    ...encoder.encode("c\r\n0\r\n\r\n"),
  ];
  await pair.client.write(new Uint8Array(wire));
  const reader = new ConnReader(pair.server);
  assert.equal(await readText(reader, { kind: "chunked" }), "abéc");
});

Deno.test("withEncoded falls back to an array of its own when a short head encodes long", async () => {
  // 3,000 characters pass the length check but take 6,000 bytes.
  const head = "é".repeat(3000);
  const seen = await withEncoded(
    head,
    encoder.encode("!"),
    (bytes) => Promise.resolve(decoder.decode(bytes)),
  );
  assert.equal(seen, `${head}!`);
});
