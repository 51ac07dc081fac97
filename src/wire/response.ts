/**
 * @module
 * Writing answers on the wire engine: the sidecar's own small responses
 * (health, errors) and an upstream's answer relayed as it arrives, framing
 * kept when the client speaks HTTP/1.1.
 */

import { buildClientHeaders, type HeaderList } from "../upstream/headers.ts";
import { relayBody } from "./body.ts";
import type { ConnReader } from "./conn_reader.ts";
import type { BadMessageError, ResponseHead } from "./message.ts";
import type { Exchange } from "./server.ts";

const encoder = new TextEncoder();

const REASONS: Readonly<Record<number, string>> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** Whether the connection closes after this answer; sets `closeAfter` when it must. */
function closesAfter(exchange: Exchange, delimitedByClose: boolean): boolean {
  if (!exchange.head.keepAlive || exchange.stopping || delimitedByClose) {
    exchange.closeAfter = true;
  }
  return exchange.closeAfter;
}

/** Encodes a status line and header fields, with the connection's own fields added. */
export function encodeHead(
  exchange: Exchange,
  status: number,
  reason: string,
  headers: HeaderList,
  framing: { readonly chunked: boolean; readonly close: boolean },
): Uint8Array {
  let head = `HTTP/1.1 ${status} ${reason || REASONS[status] || ""}\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  if (framing.chunked) head += "transfer-encoding: chunked\r\n";
  if (closesAfter(exchange, framing.close)) {
    head += "connection: close\r\n";
  } else if (exchange.head.version === "1.0") {
    head += "connection: keep-alive\r\n";
  }
  return encoder.encode(`${head}\r\n`);
}

/** Writes a complete small answer (the body is read whole first). */
export async function writeResponse(
  exchange: Exchange,
  response: Response,
): Promise<void> {
  const body = new Uint8Array(await response.arrayBuffer());
  const headers = buildClientHeaders(response.headers).filter(([name]) =>
    name !== "content-length"
  );
  headers.push(["content-length", String(body.length)]);
  const head = encodeHead(
    exchange,
    response.status,
    response.statusText,
    headers,
    {
      chunked: false,
      close: false,
    },
  );
  exchange.headSent = true;
  const bytes = exchange.head.method === "HEAD" ? head : concat(head, body);
  await exchange.write(bytes);
}

function concat(first: Uint8Array, second: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(first.length + second.length);
  bytes.set(first);
  bytes.set(second, first.length);
  return bytes;
}

/**
 * Relays an upstream answer whose head has been read: the head with its
 * hop-by-hop fields removed, then the body as it arrives. An HTTP/1.0 client
 * gets a chunked body without its framing, and the connection closes after.
 */
export async function relayResponse(
  exchange: Exchange,
  upstream: ConnReader,
  head: ResponseHead,
): Promise<void> {
  const { framing } = head;
  const chunked = framing.kind === "chunked";
  const http10 = exchange.head.version === "1.0";
  // buildClientHeaders drops transfer-encoding; the framing is re-declared.
  const headers = buildClientHeaders(head.headers, { decoded: false });
  const encoded = encodeHead(exchange, head.status, head.reason, headers, {
    chunked: chunked && !http10,
    close: framing.kind === "close" || (chunked && http10),
  });
  exchange.headSent = true;
  const client = exchange.reader.conn;
  await relayBody(upstream, framing, (bytes) => writeAllTo(client, bytes), {
    prefix: encoded,
    dechunk: http10,
  });
}

async function writeAllTo(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await conn.write(bytes.subarray(written));
  }
}

/** Answers a request the server could not parse, in vLLM's error shape, and closes. */
export async function refuseMalformed(
  connection: { write(bytes: Uint8Array): Promise<void> },
  error: BadMessageError,
): Promise<void> {
  const body = encoder.encode(JSON.stringify({
    error: {
      message: `Malformed request: ${error.message}`,
      type: "BadRequestError",
      param: null,
      code: error.status,
    },
  }));
  const head = `HTTP/1.1 ${error.status} ${REASONS[error.status] ?? ""}\r\n` +
    `content-type: application/json\r\ncontent-length: ${body.length}\r\n` +
    "connection: close\r\n\r\n";
  await connection.write(concat(encoder.encode(head), body));
}
