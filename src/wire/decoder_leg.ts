/**
 * @module
 * Requests to the local decoder on the wire engine: the request written
 * straight to a pooled keep-alive connection, the answer's head read, and the
 * connection left open for the body to be relayed. Failures map to the same
 * statuses as on `Deno.serve` (`decoderFailure`).
 */

import { upstreamFailure } from "../upstream/client.ts";
import type { HeaderList } from "../upstream/headers.ts";
import { decoderFailure } from "../upstream/relay.ts";
import { concatBytes, relayBody, writeAll } from "../http1/body.ts";
import type { ConnReader } from "../http1/conn_reader.ts";
import { readResponseHead, type ResponseHead } from "../http1/message.ts";
import { ConnPool } from "../http1/pool.ts";
import type { Exchange } from "./server.ts";

const encoder = new TextEncoder();

/** The decoder's answer: its head read, its body still on the connection. */
export interface DecoderAnswer {
  readonly reader: ConnReader;
  readonly head: ResponseHead;
}

/** A request to the decoder. */
export interface DecoderRequest {
  readonly method: string;
  /** Path and query. */
  readonly target: string;
  /** Without Host, framing or hop-by-hop fields. */
  readonly headers: HeaderList;
  /** A body held in memory; absent when `stream` relays the client's. */
  readonly body?: Uint8Array;
  /** Relays the client's body after the head (not replayable). */
  readonly stream?: Exchange;
  readonly signal: AbortSignal;
}

/** Options of `createWireDecoder`. */
export interface WireDecoderOptions {
  readonly port: number;
  readonly maxIdle: number;
  readonly idleTimeoutMs: number;
}

/** The local decoder, over pooled connections. */
export interface WireDecoder {
  /** `host:port`, for logs and errors. */
  readonly hostPort: string;
  /** Sends the request and reads the answer's head; throws `ProxyError`. */
  send(request: DecoderRequest): Promise<DecoderAnswer>;
  /** Gives back the connection of an answer: pooled when read whole and reusable. */
  release(answer: DecoderAnswer, complete: boolean): void;
  /** Closes idle connections. */
  close(): void;
}

function encodeHead(hostPort: string, request: DecoderRequest): string {
  let head =
    `${request.method} ${request.target} HTTP/1.1\r\nhost: ${hostPort}\r\n`;
  for (const [name, value] of request.headers) head += `${name}: ${value}\r\n`;
  if (request.stream) {
    const { framing } = request.stream.head;
    if (framing.kind === "chunked") head += "transfer-encoding: chunked\r\n";
    else if (framing.kind === "length") {
      head += `content-length: ${framing.length}\r\n`;
    }
  } else if (request.body !== undefined) {
    // vLLM (uvicorn) needs a length even for an empty body on POST.
    if (request.body.length > 0 || request.method !== "GET") {
      head += `content-length: ${request.body.length}\r\n`;
    }
  }
  return `${head}\r\n`;
}

/** Writes the encoded request, then the client's body when it is relayed. */
async function writeRequest(
  conn: Deno.Conn,
  request: DecoderRequest,
  bytes: Uint8Array,
): Promise<void> {
  const { stream } = request;
  if (stream === undefined) return await writeAll(conn, bytes);
  await stream.continue();
  await relayBody(
    stream.reader,
    stream.head.framing,
    (chunk) => writeAll(conn, chunk),
    { prefix: bytes },
  );
  stream.markBodyDone();
}

/** Creates the decoder client for `127.0.0.1:port`. */
export function createWireDecoder(options: WireDecoderOptions): WireDecoder {
  const hostPort = `127.0.0.1:${options.port}`;
  const pool = new ConnPool({
    hostname: "127.0.0.1",
    port: options.port,
    maxIdle: options.maxIdle,
    idleTimeoutMs: options.idleTimeoutMs,
  });

  return {
    hostPort,
    async send(request) {
      const headText = encoder.encode(encodeHead(hostPort, request));
      const bytes = request.body === undefined || request.body.length === 0
        ? headText
        : concatBytes(headText, request.body);
      try {
        const { reader, result } = await pool.exchange(
          request.signal,
          // A streamed body cannot be sent again.
          request.stream === undefined,
          async (reader) => {
            await writeRequest(reader.conn, request, bytes);
            return await readResponseHead(reader, request.method);
          },
        );
        return { reader, head: result };
      } catch (error) {
        throw decoderFailure(hostPort, upstreamFailure(error, request.signal));
      }
    },
    release(answer, complete) {
      if (complete && answer.head.keepAlive) pool.give(answer.reader);
      else answer.reader.close();
    },
    close() {
      pool.close();
    },
  };
}
