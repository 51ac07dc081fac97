/**
 * @module
 * Requests to the local decoder on the wire engine: the request written
 * straight to a pooled keep-alive connection, the answer's head read, and the
 * connection left open for the body to be relayed. Failures map to the same
 * statuses as on `Deno.serve` (`decoderFailure`).
 */

import type { ProxyError } from "../errors.ts";
import { classifyFetchError, UpstreamError } from "../upstream/client.ts";
import type { HeaderList } from "../upstream/headers.ts";
import { decoderFailure } from "../upstream/relay.ts";
import { concatBytes, relayBody, writeAll } from "../http1/body.ts";
import { ClosedEarlyError, type ConnReader } from "../http1/conn_reader.ts";
import { readResponseHead, type ResponseHead } from "../http1/message.ts";
import { closeQuietly, ConnPool } from "../http1/pool.ts";
import type { Exchange } from "./server.ts";

const encoder = new TextEncoder();
/** Largest answer head accepted from the decoder. */
const HEAD_LIMIT = 256 * 1024;

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

function isStale(error: unknown, reader: ConnReader): boolean {
  if (error instanceof ClosedEarlyError) return error.beforeAnyByte;
  return (error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe) && reader.received === 0;
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

  function failure(error: unknown, signal: AbortSignal): ProxyError {
    const classified = signal.aborted
      ? new UpstreamError("aborted", "request aborted by the client", error)
      : classifyFetchError(error);
    return decoderFailure(hostPort, classified);
  }

  async function exchange(
    reader: ConnReader,
    request: DecoderRequest,
    head: Uint8Array,
  ): Promise<ResponseHead> {
    const abort = () => closeQuietly(reader.conn);
    request.signal.addEventListener("abort", abort, { once: true });
    reader.resetReceived();
    try {
      const { stream } = request;
      if (stream) {
        await stream.continue();
        await relayBody(
          stream.reader,
          stream.head.framing,
          (bytes) => writeAll(reader.conn, bytes),
          { prefix: head },
        );
        stream.markBodyDone();
      } else {
        await writeAll(reader.conn, head);
      }
      return await readResponseHead(reader, request.method, HEAD_LIMIT);
    } finally {
      request.signal.removeEventListener("abort", abort);
    }
  }

  return {
    hostPort,
    async send(request) {
      const headText = encoder.encode(encodeHead(hostPort, request));
      const bytes = request.body === undefined || request.body.length === 0
        ? headText
        : concatBytes(headText, request.body);
      for (;;) {
        if (request.signal.aborted) {
          throw failure(request.signal.reason, request.signal);
        }
        let taken;
        try {
          taken = await pool.take();
        } catch (error) {
          throw failure(error, request.signal);
        }
        const { reader, reused } = taken;
        try {
          const head = await exchange(reader, request, bytes);
          return { reader, head };
        } catch (error) {
          closeQuietly(reader.conn);
          // A pooled connection the decoder closed while idle answered
          // nothing: send again when the body can be sent again.
          if (
            reused && !request.stream && isStale(error, reader) &&
            !request.signal.aborted
          ) {
            continue;
          }
          throw failure(error, request.signal);
        }
      }
    },
    release(answer, complete) {
      if (complete && answer.head.keepAlive) pool.give(answer.reader);
      else closeQuietly(answer.reader.conn);
    },
    close() {
      pool.close();
    },
  };
}
