/**
 * @module
 * Requests to the local decoder on the wire engine: the request written
 * straight to a pooled keep-alive connection, the answer's head read, and the
 * connection left open for the body to be relayed. Failures map to the same
 * statuses as on `Deno.serve` (`decoderFailure`).
 */

import { decoderHostPort } from "../config.ts";
import { upstreamFailure } from "../upstream/client.ts";
import type { HeaderList } from "../upstream/headers.ts";
import { decoderFailure } from "../upstream/relay.ts";
import { ProxyError } from "../errors.ts";
import type { ConnReader } from "../http1/conn_reader.ts";
import { readResponseHead, type ResponseHead } from "../http1/message.ts";
import { ConnPool } from "../http1/pool.ts";
import { requestHead, writeAll, writeRequest } from "../http1/write.ts";
import type { Exchange } from "./server.ts";

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
  /** A body held in memory (text is sent as UTF-8); absent when `stream` relays the client's. */
  readonly body?: string | Uint8Array;
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
  /** Sends the request and reads the answer's head; throws `ProxyError`. */
  send(request: DecoderRequest): Promise<DecoderAnswer>;
  /** Gives back the connection of an answer: pooled when read whole and reusable. */
  release(answer: DecoderAnswer, complete: boolean): void;
  /** Closes idle connections. */
  close(): void;
}

/** The framing field of a body relayed from the client as it arrives. */
function relayedFraming(stream: Exchange): string {
  const { framing } = stream.head;
  if (framing.kind === "chunked") return "transfer-encoding: chunked\r\n";
  if (framing.kind === "length") return `content-length: ${framing.length}\r\n`;
  return "";
}

/** Writes the request: head and a body in memory in one write, or the head then the client's body as it arrives. */
async function sendRequest(
  conn: Deno.Conn,
  hostPort: string,
  request: DecoderRequest,
): Promise<void> {
  const outgoing = {
    method: request.method,
    target: request.target,
    hostPort,
    headers: request.headers,
  };
  const { stream } = request;
  if (stream === undefined) {
    return await writeRequest(conn, { ...outgoing, body: request.body });
  }
  await stream.relayBody(
    (chunk) => writeAll(conn, chunk),
    requestHead(outgoing, relayedFraming(stream)),
  );
}

/** Creates the decoder client for `127.0.0.1:port`. */
export function createWireDecoder(options: WireDecoderOptions): WireDecoder {
  const hostPort = decoderHostPort({ vllmPort: options.port });
  const pool = new ConnPool({
    hostname: "127.0.0.1",
    port: options.port,
    maxIdle: options.maxIdle,
    idleTimeoutMs: options.idleTimeoutMs,
  });

  return {
    async send(request) {
      try {
        const { reader, result } = await pool.exchange(
          request.signal,
          // A streamed body cannot be sent again.
          request.stream === undefined,
          async (reader) => {
            await sendRequest(reader.conn, hostPort, request);
            return await readResponseHead(reader, request.method);
          },
        );
        return { reader, head: result };
      } catch (error) {
        // The client's own errors (a malformed body it was sending) stay its.
        if (error instanceof ProxyError) throw error;
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
