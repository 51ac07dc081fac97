/**
 * @module
 * Writing to a connection, and encoding outgoing messages into reused
 * buffers. Every new `Uint8Array` costs an off-heap allocation (about 0.7 µs
 * each, measured here), and `TextEncoder.encode` one more per call; a P/D
 * request made ten such arrays. Encoding a head and its body into a buffer
 * kept for the next write removes them from the hot path.
 */

import type { HeaderList } from "../upstream/headers.ts";

const encoder = new TextEncoder();

/** Size of each reused buffer: a head with a typical body fits; larger messages get one of their own. */
const SCRATCH_BYTES = 4 * 1024;
/**
 * Buffers kept between writes. A buffer is held until its write settles, a
 * tick later at the soonest, so a busy sidecar has one in use per connection
 * writing at once: with too few kept, half the writes at c=256 allocated a
 * fresh buffer (measured), which cost more than the copies they replaced.
 */
const SCRATCH_KEPT = 1024;

const spare: Uint8Array[] = [];

/** Writes all of `bytes` to `conn`. */
export async function writeAll(
  conn: Deno.Conn,
  bytes: Uint8Array,
): Promise<void> {
  // Almost every write is taken whole: no view is made unless one is partial.
  let written = await conn.write(bytes);
  while (written < bytes.length) {
    written += await conn.write(bytes.subarray(written));
  }
}

/**
 * Runs `use` on `head` encoded as UTF-8 and followed by `body`, as one array.
 * The array is reused once `use` settles, so `use` must be done with it by
 * then (a write it awaited is).
 */
export async function withEncoded<T>(
  head: string,
  body: Uint8Array | undefined,
  use: (bytes: Uint8Array) => Promise<T>,
): Promise<T> {
  const bodyLength = body?.length ?? 0;
  // Each character is at least one byte: too long for sure.
  if (head.length + bodyLength > SCRATCH_BYTES) {
    return await use(joined(head, body));
  }
  const buffer = spare.pop() ?? new Uint8Array(SCRATCH_BYTES);
  try {
    const { read, written } = encoder.encodeInto(head, buffer);
    if (read < head.length || written + bodyLength > SCRATCH_BYTES) {
      return await use(joined(head, body));
    }
    if (body !== undefined) buffer.set(body, written);
    return await use(buffer.subarray(0, written + bodyLength));
  } finally {
    if (spare.length < SCRATCH_KEPT) spare.push(buffer);
  }
}

/** `head` encoded and followed by `body`, in an array of its own sized to fit. */
function joined(head: string, body: Uint8Array | undefined): Uint8Array {
  const encoded = encoder.encode(head);
  if (body === undefined || body.length === 0) return encoded;
  const bytes = new Uint8Array(encoded.length + body.length);
  bytes.set(encoded);
  bytes.set(body, encoded.length);
  return bytes;
}

/**
 * Runs `use` on `text` encoded as UTF-8 (a body, whose length the head must
 * state before it is written); the same reuse rule as `withEncoded` holds.
 */
export function withUtf8<T>(
  text: string,
  use: (bytes: Uint8Array) => Promise<T>,
): Promise<T> {
  return withEncoded(text, undefined, use);
}

/** Writes `head` and then `body` to `conn` in one write. */
export function writeMessage(
  conn: Deno.Conn,
  head: string,
  body?: Uint8Array,
): Promise<void> {
  return withEncoded(head, body, (bytes) => writeAll(conn, bytes));
}

/** A request to an upstream whose body, if any, is held in memory. */
export interface OutgoingRequest {
  readonly method: string;
  /** Path and query. */
  readonly target: string;
  /** The Host field. */
  readonly hostPort: string;
  /** Without Host, framing or hop-by-hop fields. */
  readonly headers: HeaderList;
  /** Text is sent as UTF-8. */
  readonly body?: string | Uint8Array | undefined;
}

/**
 * The request's head through its empty line; `framing` holds the framing
 * field line(s) (Content-Length or Transfer-Encoding), CRLF-terminated.
 */
export function requestHead(
  request: Omit<OutgoingRequest, "body">,
  framing: string,
): string {
  return `${request.method} ${request.target} HTTP/1.1\r\nhost: ${request.hostPort}\r\n${
    fieldLines(request.headers)
  }${framing}\r\n`;
}

/** Header fields as head lines, each CRLF-terminated. */
export function fieldLines(headers: HeaderList): string {
  let lines = "";
  for (const [name, value] of headers) lines += `${name}: ${value}\r\n`;
  return lines;
}

/** The Content-Length line of a body of `length` bytes held in memory. */
function contentLength(method: string, length: number): string {
  // vLLM (uvicorn) needs a length even for an empty body on POST.
  return length > 0 || method !== "GET" ? `content-length: ${length}\r\n` : "";
}

/** Writes `request`, head and body, in one write. */
export function writeRequest(
  conn: Deno.Conn,
  request: OutgoingRequest,
): Promise<void> {
  const { body } = request;
  const send = (bytes: Uint8Array | undefined) =>
    writeMessage(
      conn,
      requestHead(request, contentLength(request.method, bytes?.length ?? 0)),
      bytes,
    );
  return typeof body === "string" ? withUtf8(body, send) : send(body);
}
