/**
 * @module
 * Writing answers on the wire engine: the sidecar's own small responses
 * (health, errors) and an upstream's answer relayed as it arrives, framing
 * kept when the client speaks HTTP/1.1.
 */

import { type ProxyError, toErrorResponse } from "../errors.ts";
import { buildClientHeaders, type HeaderList } from "../upstream/headers.ts";
import { relayBody } from "../http1/body.ts";
import type { ConnReader } from "../http1/conn_reader.ts";
import type { ResponseHead } from "../http1/message.ts";
import { fieldLines, writeAll, writeMessage } from "../http1/write.ts";
import type { Exchange } from "./server.ts";

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

/** How the connection continues after an answer. */
interface Continuation {
  /** The body is chunked on the wire (declared here, since hop-by-hop fields are dropped). */
  readonly chunked: boolean;
  /** The connection closes after this answer. */
  readonly close: boolean;
  /** An HTTP/1.0 client kept alive must be told so. */
  readonly http10: boolean;
}

function encodeHead(
  status: number,
  reason: string,
  headers: HeaderList,
  continuation: Continuation,
): string {
  let head = `HTTP/1.1 ${status} ${reason || REASONS[status] || ""}\r\n${
    fieldLines(headers)
  }`;
  if (continuation.chunked) head += "transfer-encoding: chunked\r\n";
  if (continuation.close) head += "connection: close\r\n";
  else if (continuation.http10) head += "connection: keep-alive\r\n";
  return `${head}\r\n`;
}

/** Decides whether the connection closes after this answer, and records it. */
function continuationOf(
  exchange: Exchange,
  options: { readonly chunked: boolean; readonly closeDelimited: boolean },
): Continuation {
  // An unread request body would be taken for the next request.
  if (
    !exchange.head.keepAlive || exchange.stopping || options.closeDelimited ||
    !exchange.bodyDone
  ) {
    exchange.closeAfter = true;
  }
  return {
    chunked: options.chunked,
    close: exchange.closeAfter,
    http10: exchange.head.version === "1.0",
  };
}

/** A complete small answer as head text and body, its body read whole. */
async function wholeMessage(
  response: Response,
  continuation: Continuation,
  headOnly: boolean,
): Promise<{ readonly head: string; readonly body?: Uint8Array }> {
  const body = new Uint8Array(await response.arrayBuffer());
  const headers = buildClientHeaders(response.headers).filter(([name]) =>
    name !== "content-length"
  );
  headers.push(["content-length", String(body.length)]);
  const head = encodeHead(
    response.status,
    response.statusText,
    headers,
    continuation,
  );
  return headOnly ? { head } : { head, body };
}

/** Writes a complete small answer (the body is read whole first). */
export async function writeResponse(
  exchange: Exchange,
  response: Response,
): Promise<void> {
  const continuation = continuationOf(exchange, {
    chunked: false,
    closeDelimited: false,
  });
  const { head, body } = await wholeMessage(
    response,
    continuation,
    exchange.head.method === "HEAD",
  );
  exchange.headSent = true;
  await writeMessage(exchange.reader.conn, head, body);
}

/**
 * Relays an upstream answer whose head has been read: the head with its
 * hop-by-hop fields removed, then the body as it arrives, in the same write
 * as the head when it is already here. An HTTP/1.0 client gets a chunked
 * body without its framing, and the connection closes after.
 */
export async function relayResponse(
  exchange: Exchange,
  upstream: ConnReader,
  head: ResponseHead,
): Promise<void> {
  const { framing } = head;
  const chunked = framing.kind === "chunked";
  const http10 = exchange.head.version === "1.0";
  const continuation = continuationOf(exchange, {
    chunked: chunked && !http10,
    closeDelimited: framing.kind === "close" || (chunked && http10),
  });
  const headers = buildClientHeaders(head.headers, { decoded: false });
  exchange.headSent = true;
  const client = exchange.reader.conn;
  await relayBody(upstream, framing, (bytes) => writeAll(client, bytes), {
    prefix: encodeHead(head.status, head.reason, headers, continuation),
    dechunk: http10,
  });
}

/** Answers a request that could not be parsed, in vLLM's error shape, and closes. */
export async function refuseMalformed(
  conn: Deno.Conn,
  error: ProxyError,
): Promise<void> {
  const continuation = { chunked: false, close: true, http10: false };
  const { head, body } = await wholeMessage(
    toErrorResponse(error),
    continuation,
    false,
  );
  await writeMessage(conn, head, body);
}
