/**
 * @module
 * A raw HTTP/1.1 client for bodies a well-behaved client would not send:
 * it writes the head, then the body in chunks (chunked framing or a stated
 * length) while it reads the answer, and stops writing once the sidecar
 * answered or closed. Every wait has a deadline.
 */

import { parseMessages, statusOf, type WireMessage } from "../edge/_http.ts";
import { closeQuietly, connectTo } from "../support/sockets.ts";

/** Options of `sendBody`. */
export interface SendBodyOptions {
  readonly port: number;
  readonly path: string;
  /** Extra header lines, e.g. `["x-prefiller-host-port", "127.0.0.1:1"]`. */
  readonly headers?: readonly (readonly [string, string])[];
  /** Body bytes to send, if the sidecar lets them all through. */
  readonly bodyBytes: number;
  /** Chunked framing instead of `Content-Length`. */
  readonly chunked: boolean;
  /** Size of each write; 64 KiB by default. */
  readonly chunkBytes?: number;
  /** Deadline of the whole exchange; 30 s by default. */
  readonly ms?: number;
  /**
   * Stop writing after this many body bytes until `resumeWhen` settles, by
   * default until the head of an answer was read (a decoder answering before
   * the body is in), then go on.
   */
  readonly pauseAt?: number;
  readonly resumeWhen?: Promise<unknown>;
  /** Byte the body is made of; a JSON-looking prefix is not needed to pass the limit. */
  readonly fill?: number;
}

/** What the client saw. */
export interface SentBody {
  /** The answer, if a whole one arrived. */
  readonly response: WireMessage | undefined;
  /** Body bytes written before the sidecar answered or closed. */
  readonly written: number;
  /** Everything read, as Latin-1 text (an answer cut off shows here). */
  readonly text: string;
  /** Whether the sidecar closed the connection before a whole answer. */
  readonly closed: boolean;
}

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

function head(options: SendBodyOptions): Uint8Array {
  const lines = [
    `POST ${options.path} HTTP/1.1`,
    "host: sidecar",
    "content-type: application/json",
    options.chunked
      ? "transfer-encoding: chunked"
      : `content-length: ${options.bodyBytes}`,
    ...(options.headers ?? []).map(([name, value]) => `${name}: ${value}`),
  ];
  return encoder.encode(lines.join("\r\n") + "\r\n\r\n");
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    at += await conn.write(bytes.subarray(at));
  }
}

/** Sends an (oversized) body and returns the answer the sidecar gave, if any. */
export async function sendBody(options: SendBodyOptions): Promise<SentBody> {
  const conn = await connectTo(options.port);
  const chunkBytes = options.chunkBytes ?? 64 * 1024;
  const chunk = new Uint8Array(chunkBytes).fill(options.fill ?? 0x61);
  const frame = options.chunked
    ? new Uint8Array([
      ...encoder.encode(`${chunkBytes.toString(16)}\r\n`),
      ...chunk,
      ...encoder.encode("\r\n"),
    ])
    : chunk;
  let answered = false;
  const answerHead = Promise.withResolvers<void>();
  let written = 0;
  const deadline = Date.now() + (options.ms ?? 30_000);
  const writing = (async () => {
    await writeAll(conn, head(options));
    while (!answered && written < options.bodyBytes && Date.now() < deadline) {
      if (written === options.pauseAt) {
        await (options.resumeWhen ?? answerHead.promise);
      }
      const size = Math.min(chunkBytes, options.bodyBytes - written);
      await writeAll(
        conn,
        size === chunkBytes
          ? frame
          : (options.chunked
            ? encoder.encode(`${size.toString(16)}\r\n${"a".repeat(size)}\r\n`)
            : chunk.subarray(0, size)),
      );
      written += size;
    }
    if (options.chunked && !answered) {
      await writeAll(conn, encoder.encode("0\r\n\r\n"));
    }
  })().catch(() => {
    // The sidecar closed while the body was being written: expected past the limit.
  });
  const parts: Uint8Array[] = [];
  let closed = false;
  const reading = (async () => {
    const buffer = new Uint8Array(64 * 1024);
    let total = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<"expired">((resolve) => {
      timer = setTimeout(() => resolve("expired"), deadline - Date.now());
    });
    try {
      for (;;) {
        const read = await Promise.race([
          conn.read(buffer).catch(() => null),
          expired,
        ]);
        if (read === "expired") break;
        if (read === null) {
          closed = true;
          break;
        }
        parts.push(buffer.slice(0, read));
        if (
          parts.map((part) => latin1.decode(part)).join("").includes("\r\n\r\n")
        ) {
          answerHead.resolve();
        }
        total += read;
        const bytes = new Uint8Array(total);
        let offset = 0;
        for (const part of parts) {
          bytes.set(part, offset);
          offset += part.length;
        }
        const [message] = parseMessages(bytes, { kind: "response" })
          .filter((m) => statusOf(m) >= 200);
        if (message) return message;
      }
      return undefined;
    } finally {
      clearTimeout(timer);
      answered = true;
      answerHead.resolve();
    }
  })();
  const response = await reading;
  closeQuietly(conn);
  await writing;
  const text = parts.map((part) => latin1.decode(part)).join("");
  return { response, written, text, closed };
}
