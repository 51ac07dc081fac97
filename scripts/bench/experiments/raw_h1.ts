/**
 * @module
 * Experiment (not shipped): a minimal HTTP/1.1 keep-alive client over
 * `Deno.Conn` for whole-body reads (the prefill leg), to measure how much of
 * a fetch call is the fetch machinery itself. Content-Length answers only.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CRLFCRLF = [13, 10, 13, 10];

function indexOfHeaderEnd(bytes: Uint8Array, length: number): number {
  for (let i = 0; i + 3 < length; i++) {
    if (
      bytes[i] === CRLFCRLF[0] && bytes[i + 1] === CRLFCRLF[1] &&
      bytes[i + 2] === CRLFCRLF[2] && bytes[i + 3] === CRLFCRLF[3]
    ) return i;
  }
  return -1;
}

/** A pooled raw HTTP/1.1 client. */
export function createRawClient(): {
  post(
    url: string,
    headers: Record<string, string>,
    body: string,
  ): Promise<{ status: number; text: string }>;
} {
  const idle = new Map<string, Deno.Conn[]>();
  async function connection(host: string, port: number): Promise<Deno.Conn> {
    const pooled = idle.get(`${host}:${port}`)?.pop();
    return pooled ?? await Deno.connect({ hostname: host, port });
  }
  return {
    async post(url, headers, body) {
      const { hostname, port, pathname, search } = new URL(url);
      const conn = await connection(hostname, Number(port));
      const payload = encoder.encode(body);
      let head =
        `POST ${pathname}${search} HTTP/1.1\r\nhost: ${hostname}:${port}\r\ncontent-length: ${payload.length}\r\n`;
      for (const [name, value] of Object.entries(headers)) {
        if (name !== "content-length" && name !== "host") {
          head += `${name}: ${value}\r\n`;
        }
      }
      const headBytes = encoder.encode(`${head}\r\n`);
      const request = new Uint8Array(headBytes.length + payload.length);
      request.set(headBytes);
      request.set(payload, headBytes.length);
      let written = 0;
      while (written < request.length) {
        written += await conn.write(request.subarray(written));
      }
      let buffer = new Uint8Array(16384);
      let length = 0;
      let headerEnd = -1;
      let contentLength = -1;
      let status = 0;
      for (;;) {
        if (length === buffer.length) {
          const bigger = new Uint8Array(buffer.length * 2);
          bigger.set(buffer);
          buffer = bigger;
        }
        const read = await conn.read(buffer.subarray(length));
        if (read === null) {
          throw new Error("connection closed before the response completed");
        }
        length += read;
        if (headerEnd === -1) {
          headerEnd = indexOfHeaderEnd(buffer, length);
          if (headerEnd === -1) continue;
          const headText = decoder.decode(buffer.subarray(0, headerEnd));
          status = Number(headText.slice(9, 12));
          const match = /\r\ncontent-length:\s*(\d+)/i.exec(headText);
          if (!match) throw new Error("experiment client needs Content-Length");
          contentLength = Number(match[1]);
        }
        if (length >= headerEnd + 4 + contentLength) break;
      }
      const text = decoder.decode(
        buffer.subarray(headerEnd + 4, headerEnd + 4 + contentLength),
      );
      const key = `${hostname}:${port}`;
      const list = idle.get(key) ?? [];
      list.push(conn);
      idle.set(key, list);
      return { status, text };
    },
  };
}
