/**
 * @module
 * A raw HTTP/2 cleartext (h2c, prior knowledge) client written against the
 * socket, for tests that need frames no well-behaved client sends on its
 * own: a burst of HEADERS each followed at once by RST_STREAM (the "rapid
 * reset" of CVE-2023-44487). `node:http2` queues streams past the peer's
 * SETTINGS_MAX_CONCURRENT_STREAMS and sends nothing for a stream destroyed
 * before its turn, so it cannot play that attacker. The server's header
 * blocks are decoded with hpack.js (RFC 7541, Huffman coding and the
 * dynamic table included), so a test reads each answer's status, headers
 * and body.
 */

import { Buffer } from "node:buffer";
import hpack from "hpack.js";
import { createWaiters, type UntilOptions } from "./deadline.ts";
import { connectTo } from "./sockets.ts";

/** RFC 9113 §3.4: the client's connection preface. */
const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** Frame types (RFC 9113 §6). */
const FRAME = {
  data: 0x0,
  headers: 0x1,
  rstStream: 0x3,
  settings: 0x4,
  goaway: 0x7,
} as const;

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
/** RST_STREAM and GOAWAY error code CANCEL (RFC 9113 §7). */
const ERROR_CANCEL = 0x8;
const FRAME_HEADER_BYTES = 9;

/** What the server sent on one stream. */
export interface H2Answer {
  /** `:status` of the answer's head. */
  readonly status: number;
  /** The head's other fields, by lowercase name (the last value of a repeated one). */
  readonly headers: ReadonlyMap<string, string>;
  /** The body's bytes so far, as UTF-8 text. */
  body: string;
  /** Set when the body ended (END_STREAM) or the server reset the stream. */
  ended: boolean;
}

/** What the client saw of the server. */
export interface H2Events {
  /** Resolves with GOAWAY's error code when the server sends one. */
  readonly goaway: Promise<number>;
  /** Resolves when the server closed (or reset) the connection. */
  readonly closed: Promise<void>;
  /** Streams the server answered with a HEADERS frame. */
  readonly answered: Set<number>;
  /** The answers themselves, by stream. */
  readonly answers: ReadonlyMap<number, H2Answer>;
  /**
   * Resolves with `check`'s first result that is neither undefined nor
   * false, tried now and after every frame the server sends; rejects when
   * the connection ends or the deadline passes first.
   */
  until<T>(
    check: () => T | undefined | false,
    what: string,
    options?: UntilOptions,
  ): Promise<T>;
}

/** One raw h2c connection; `close` (or `await using`) ends it. */
export interface RawH2Client extends H2Events, AsyncDisposable {
  /** Queues HEADERS opening stream `streamId`: GET `path`, no body. */
  get(streamId: number, path: string): void;
  /** Queues RST_STREAM(CANCEL) for `streamId`. */
  cancel(streamId: number): void;
  /** Writes what is queued; rejects when the server closed the connection. */
  flush(): Promise<void>;
  close(): void;
}

function frame(
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array,
): Uint8Array {
  const bytes = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, payload.length << 8);
  bytes[3] = type;
  bytes[4] = flags;
  view.setUint32(5, streamId & 0x7fffffff);
  bytes.set(payload, FRAME_HEADER_BYTES);
  return bytes;
}

/**
 * A header block for GET `path` (RFC 7541): `:method GET` and
 * `:scheme http` from the static table, `:path` and `:authority` as
 * literals without indexing naming static entries 4 and 1.
 */
function getHeaderBlock(path: string, authority: string): Uint8Array {
  const literal = (nameIndex: number, value: string) => {
    const bytes = new TextEncoder().encode(value);
    if (bytes.length > 126) throw new RangeError("header value too long");
    return [nameIndex, bytes.length, ...bytes];
  };
  return new Uint8Array([
    0x82,
    0x86,
    ...literal(0x04, path),
    ...literal(0x01, authority),
  ]);
}

/** A header block decoder keeping the connection's dynamic table. */
type HeaderBlockDecoder = (block: Uint8Array) => [string, string][];

/** hpack.js's decompressor, narrowed from its untyped module (it ships no types). */
function createHeaderBlockDecoder(): HeaderBlockDecoder {
  const library: unknown = hpack;
  const factory: unknown = Reflect.get(Object(library), "decompressor");
  const create: unknown = Reflect.get(Object(factory), "create");
  if (typeof create !== "function") throw new TypeError("hpack.js changed");
  const decompressor: unknown = Reflect.apply(create, factory, [
    { table: { size: 4096 } },
  ]);
  const call = (name: string, args: unknown[]): unknown => {
    const method: unknown = Reflect.get(Object(decompressor), name);
    if (typeof method !== "function") throw new TypeError("hpack.js changed");
    return Reflect.apply(method, decompressor, args);
  };
  return (block) => {
    call("write", [Buffer.from(block)]);
    call("execute", []);
    const fields: [string, string][] = [];
    for (;;) {
      const field: unknown = call("read", []);
      if (field === null) return fields;
      const name: unknown = Reflect.get(Object(field), "name");
      const value: unknown = Reflect.get(Object(field), "value");
      if (typeof name !== "string" || typeof value !== "string") {
        throw new TypeError("hpack.js read no header field");
      }
      fields.push([name, value]);
    }
  };
}

/** What `readFrames` records into. */
interface FrameSink {
  readonly goaway: PromiseWithResolvers<number>;
  readonly answered: Set<number>;
  readonly answers: Map<number, H2Answer>;
  readonly decodeHeaders: HeaderBlockDecoder;
  ackSettings(): void;
}

/** Records one HEADERS frame's answer head (END_HEADERS set: hyper's heads fit one frame). */
function recordHead(
  sink: FrameSink,
  streamId: number,
  block: Uint8Array,
  endStream: boolean,
): void {
  const fields = sink.decodeHeaders(block);
  sink.answered.add(streamId);
  if (sink.answers.has(streamId)) return; // trailers
  const headers = new Map<string, string>();
  for (const [name, value] of fields) headers.set(name, value);
  const status = Number(headers.get(":status"));
  headers.delete(":status");
  sink.answers.set(streamId, { status, headers, body: "", ended: endStream });
}

const utf8 = new TextDecoder();

/** Reads frames until the socket ends, settling `events` as they come. */
async function readFrames(
  conn: Deno.Conn,
  events: FrameSink & { readonly changed: () => void },
): Promise<void> {
  let pending = new Uint8Array(0);
  const buffer = new Uint8Array(64 * 1024);
  for (;;) {
    const read = await conn.read(buffer).catch(() => null);
    if (read === null) return;
    const joined = new Uint8Array(pending.length + read);
    joined.set(pending);
    joined.set(buffer.subarray(0, read), pending.length);
    let offset = 0;
    while (joined.length - offset >= FRAME_HEADER_BYTES) {
      const view = new DataView(joined.buffer, offset);
      const length = view.getUint32(0) >>> 8;
      if (joined.length - offset < FRAME_HEADER_BYTES + length) break;
      const type = joined[offset + 3];
      const flags = joined[offset + 4] ?? 0;
      const streamId = view.getUint32(5) & 0x7fffffff;
      if (type === FRAME.settings && (flags & FLAG_ACK) === 0) {
        events.ackSettings();
      } else if (type === FRAME.headers) {
        recordHead(
          events,
          streamId,
          joined.slice(
            offset + FRAME_HEADER_BYTES,
            offset + FRAME_HEADER_BYTES + length,
          ),
          (flags & FLAG_END_STREAM) !== 0,
        );
      } else if (type === FRAME.data) {
        const answer = events.answers.get(streamId);
        if (answer !== undefined) {
          answer.body += utf8.decode(
            joined.subarray(
              offset + FRAME_HEADER_BYTES,
              offset + FRAME_HEADER_BYTES + length,
            ),
          );
          if ((flags & FLAG_END_STREAM) !== 0) answer.ended = true;
        }
      } else if (type === FRAME.rstStream) {
        const answer = events.answers.get(streamId);
        if (answer !== undefined) answer.ended = true;
      } else if (type === FRAME.goaway) {
        events.goaway.resolve(view.getUint32(FRAME_HEADER_BYTES + 4));
      }
      offset += FRAME_HEADER_BYTES + length;
    }
    pending = joined.slice(offset);
    events.changed();
  }
}

/** Opens an h2c connection to a loopback port and sends the preface and empty SETTINGS. */
export async function connectH2c(port: number): Promise<RawH2Client> {
  const conn = await connectTo(port);
  const authority = `127.0.0.1:${port}`;
  let queued: Uint8Array[] = [
    PREFACE,
    frame(FRAME.settings, 0, 0, new Uint8Array()),
  ];
  const goaway = Promise.withResolvers<number>();
  const answered = new Set<number>();
  const answers = new Map<number, H2Answer>();
  const waiters = createWaiters();
  let closedByUs = false;
  const closed = readFrames(conn, {
    goaway,
    answered,
    answers,
    decodeHeaders: createHeaderBlockDecoder(),
    ackSettings: () =>
      queued.push(frame(FRAME.settings, FLAG_ACK, 0, new Uint8Array())),
    changed: () => waiters.notify(),
  }).finally(() => waiters.end("The connection closed"));
  function close(): void {
    if (closedByUs) return;
    closedByUs = true;
    try {
      conn.close();
    } catch {
      // The server closed it first.
    }
  }
  const client: RawH2Client = {
    goaway: goaway.promise,
    closed,
    answered,
    answers,
    until: (check, what, options) => waiters.until(check, what, options),
    get(streamId, path) {
      queued.push(
        frame(
          FRAME.headers,
          FLAG_END_HEADERS | FLAG_END_STREAM,
          streamId,
          getHeaderBlock(path, authority),
        ),
      );
    },
    cancel(streamId) {
      const code = new Uint8Array(4);
      new DataView(code.buffer).setUint32(0, ERROR_CANCEL);
      queued.push(frame(FRAME.rstStream, 0, streamId, code));
    },
    async flush() {
      const total = queued.reduce((sum, part) => sum + part.length, 0);
      const bytes = new Uint8Array(total);
      let offset = 0;
      for (const part of queued) {
        bytes.set(part, offset);
        offset += part.length;
      }
      queued = [];
      let written = 0;
      while (written < bytes.length) {
        written += await conn.write(bytes.subarray(written));
      }
    },
    close,
    async [Symbol.asyncDispose]() {
      close();
      await closed;
    },
  };
  await client.flush();
  return client;
}
