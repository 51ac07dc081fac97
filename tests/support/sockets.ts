/**
 * @module
 * Raw loopback sockets for tests that play one side of HTTP/1.1 by hand.
 * Every wait has a deadline, so a regression fails with what was read so far
 * instead of hanging.
 */

import { withDeadline } from "./deadline.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Default deadline of one socket wait. */
export const SOCKET_DEADLINE_MS = 5_000;

/** Connects to a loopback port. */
export function connectTo(port: number): Promise<Deno.TcpConn> {
  return withDeadline(
    Deno.connect({ hostname: "127.0.0.1", port }),
    SOCKET_DEADLINE_MS,
    `connect to 127.0.0.1:${port}`,
  );
}

/** A connected loopback pair: what `client` writes, `server` reads; `await using` closes both. */
export async function socketPair(): Promise<
  { client: Deno.Conn; server: Deno.Conn } & AsyncDisposable
> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const client = await connectTo(listener.addr.port);
  const server = await withDeadline(
    accepted,
    SOCKET_DEADLINE_MS,
    "accept the pair",
  );
  return {
    client,
    server,
    [Symbol.asyncDispose]() {
      for (const conn of [client, server]) closeQuietly(conn);
      return Promise.resolve();
    },
  };
}

/** Closes `conn` unless it is closed already. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed by the test or the peer.
  }
}

/** Writes all of `data` (text is UTF-8 encoded) to `conn`. */
export async function writeText(
  conn: Deno.Conn,
  data: string | Uint8Array,
): Promise<void> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  for (let written = 0; written < bytes.length;) {
    written += await withDeadline(
      conn.write(bytes.subarray(written)),
      SOCKET_DEADLINE_MS,
      "write to the socket",
    );
  }
}

/** What a read saw: the bytes, as text too, and whether the peer closed. */
export interface ReadResult {
  readonly bytes: Uint8Array;
  readonly text: string;
  readonly closed: boolean;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Reads from `conn` until `done` holds for what was read, or the peer closes
 * (a reset counts as a close); rejects after `ms` with what was read so far.
 * After a rejection a read is still pending: do not read `conn` again.
 */
export async function readUntil(
  conn: Deno.Conn,
  done: (text: string, bytes: Uint8Array) => boolean,
  ms: number = SOCKET_DEADLINE_MS,
): Promise<ReadResult> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  const deadline = Date.now() + ms;
  let text = "";
  for (;;) {
    const left = deadline - Date.now();
    let read: number | null;
    try {
      read = await withDeadline(conn.read(buffer), Math.max(left, 1), "read");
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) read = null;
      else {
        throw new Error(
          `No end within ${ms} ms; read so far: ${JSON.stringify(text)}`,
          { cause: error },
        );
      }
    }
    if (read === null) {
      const bytes = concat(parts);
      return { bytes, text, closed: true };
    }
    parts.push(buffer.slice(0, read));
    text += decoder.decode(buffer.subarray(0, read), { stream: true });
    const bytes = concat(parts);
    if (done(text, bytes)) return { bytes, text, closed: false };
  }
}

/** Reads until the peer closes; rejects after `ms`. */
export async function readToClose(
  conn: Deno.Conn,
  ms: number = SOCKET_DEADLINE_MS,
): Promise<ReadResult> {
  return await readUntil(conn, () => false, ms);
}

/** Reads one request head and its Content-Length body from `conn`, as text. */
export async function readRequest(conn: Deno.Conn): Promise<string> {
  const { text, closed } = await readUntil(conn, (text) => {
    const end = text.indexOf("\r\n\r\n");
    if (end === -1) return false;
    const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
    return text.length >= end + 4 + length;
  });
  if (closed) throw new Error("closed before a whole request");
  return text;
}
