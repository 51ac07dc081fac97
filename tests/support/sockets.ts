/**
 * @module
 * Raw loopback sockets for tests that play one side of HTTP/1.1 by hand.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A connected loopback pair: what `client` writes, `server` reads; `await using` closes both. */
export async function socketPair(): Promise<
  { client: Deno.Conn; server: Deno.Conn } & AsyncDisposable
> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  const server = await accepted;
  return {
    client,
    server,
    [Symbol.asyncDispose]() {
      for (const conn of [client, server]) {
        try {
          conn.close();
        } catch {
          // Closed by the test.
        }
      }
      return Promise.resolve();
    },
  };
}

/** Writes all of `text`, UTF-8 encoded, to `conn`. */
export async function writeText(conn: Deno.Conn, text: string): Promise<void> {
  const bytes = encoder.encode(text);
  for (let written = 0; written < bytes.length;) {
    written += await conn.write(bytes.subarray(written));
  }
}

/** Reads one request head and its Content-Length body from `conn`, as text. */
export async function readRequest(conn: Deno.Conn): Promise<string> {
  let text = "";
  const buffer = new Uint8Array(16 * 1024);
  for (;;) {
    const end = text.indexOf("\r\n\r\n");
    if (end !== -1) {
      const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
      if (text.length >= end + 4 + length) return text;
    }
    const read = await conn.read(buffer);
    if (read === null) throw new Error("closed before a whole request");
    text += decoder.decode(buffer.subarray(0, read));
  }
}
