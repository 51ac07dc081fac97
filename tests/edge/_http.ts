/**
 * @module
 * A test's own reading of HTTP/1.1 bytes off the wire, and a raw upstream
 * that records what reached it: independent of the runtime's HTTP code, so
 * the edge tests see exactly what crossed each socket.
 */

import { startScriptedServer } from "../support/stub_upstream.ts";
import { createWaiters } from "../support/deadline.ts";
import { readUntil, writeText } from "../support/sockets.ts";

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder();

/** One HTTP/1.1 message as it was framed on the wire. */
export interface WireMessage {
  /** Request line or status line. */
  readonly startLine: string;
  /** Header fields in order, names lower-cased, values as sent. */
  readonly headers: readonly (readonly [string, string])[];
  /** The body after removing chunked framing. */
  readonly body: Uint8Array;
  /** Whether the body was sent with chunked framing. */
  readonly chunked: boolean;
}

/** Status code of a response. */
export function statusOf(message: WireMessage): number {
  return Number(message.startLine.split(" ")[1]);
}

/** Every value of header `name`. */
export function headerValues(message: WireMessage, name: string): string[] {
  return message.headers.filter(([key]) => key === name).map(([, value]) =>
    value
  );
}

/** The body as UTF-8 text. */
export function bodyText(message: WireMessage): string {
  return utf8.decode(message.body);
}

function indexOfSequence(bytes: Uint8Array, text: string, from: number) {
  outer: for (let i = from; i <= bytes.length - text.length; i++) {
    for (let j = 0; j < text.length; j++) {
      if (bytes[i + j] !== text.charCodeAt(j)) continue outer;
    }
    return i;
  }
  return -1;
}

/** Reads chunked framing from `start`; the body and where the message ends, or undefined if incomplete. */
function readChunked(bytes: Uint8Array, start: number) {
  const parts: Uint8Array[] = [];
  let at = start;
  for (;;) {
    const lineEnd = indexOfSequence(bytes, "\r\n", at);
    if (lineEnd === -1) return undefined;
    const size = parseInt(latin1.decode(bytes.subarray(at, lineEnd)), 16);
    if (Number.isNaN(size)) throw new Error("bad chunk size line");
    at = lineEnd + 2;
    if (size === 0) {
      const trailerEnd = indexOfSequence(bytes, "\r\n", at);
      if (trailerEnd !== at) return undefined;
      const body = new Uint8Array(
        parts.reduce((n, part) => n + part.length, 0),
      );
      let offset = 0;
      for (const part of parts) {
        body.set(part, offset);
        offset += part.length;
      }
      return { body, end: at + 2 };
    }
    if (bytes.length < at + size + 2) return undefined;
    parts.push(bytes.subarray(at, at + size));
    at += size + 2;
  }
}

/** Options of `parseMessages`. */
export interface ParseOptions {
  readonly kind: "request" | "response";
  /** The peer closed: a response without a length runs to the end (HTTP/1.0 style). */
  readonly closed?: boolean;
}

/** Splits `bytes` into the complete messages it holds. */
export function parseMessages(
  bytes: Uint8Array,
  options: ParseOptions,
): WireMessage[] {
  return splitMessages(bytes, options).messages;
}

/** The complete messages in `bytes`, and where the first incomplete one starts. */
function splitMessages(
  bytes: Uint8Array,
  options: ParseOptions,
): { messages: WireMessage[]; end: number } {
  const messages: WireMessage[] = [];
  let at = 0;
  while (at < bytes.length) {
    const headEnd = indexOfSequence(bytes, "\r\n\r\n", at);
    if (headEnd === -1) break;
    const [startLine = "", ...lines] = latin1.decode(
      bytes.subarray(at, headEnd),
    ).split("\r\n");
    const headers = lines.map((line): [string, string] => {
      const colon = line.indexOf(":");
      return [
        line.slice(0, colon).toLowerCase(),
        line.slice(colon + 1).trim(),
      ];
    });
    const bodyStart = headEnd + 4;
    const message = { startLine, headers };
    const status = Number(startLine.split(" ")[1]);
    const lengths = headers.filter(([name]) => name === "content-length");
    const chunked = headers.some(([name, value]) =>
      name === "transfer-encoding" && /chunked/i.test(value)
    );
    if (options.kind === "response" && status >= 100 && status < 200) {
      messages.push({ ...message, body: new Uint8Array(), chunked: false });
      at = bodyStart;
    } else if (chunked) {
      const read = readChunked(bytes, bodyStart);
      if (!read) break;
      messages.push({ ...message, body: read.body, chunked: true });
      at = read.end;
    } else if (lengths.length > 0 || options.kind === "request") {
      const length = Number(lengths[0]?.[1] ?? 0);
      if (bytes.length < bodyStart + length) break;
      messages.push({
        ...message,
        body: bytes.slice(bodyStart, bodyStart + length),
        chunked: false,
      });
      at = bodyStart + length;
    } else {
      if (!options.closed) break;
      messages.push({
        ...message,
        body: bytes.slice(bodyStart),
        chunked: false,
      });
      at = bytes.length;
    }
  }
  return { messages, end: at };
}

/** What a client read from one exchange. */
export interface Exchange {
  readonly responses: WireMessage[];
  /** Whether the sidecar closed the connection. */
  readonly closed: boolean;
  /** Everything read, as text. */
  readonly text: string;
}

/** Options of `exchange`. */
export interface ExchangeOptions {
  /** Final answers to wait for (1 by default). */
  readonly responses?: number;
  /** Read on until the sidecar closes the connection. */
  readonly untilClosed?: boolean;
  readonly ms?: number;
}

/**
 * Writes `request` on `conn` and reads until `responses` final answers
 * arrived or the sidecar closed the connection.
 */
export async function exchange(
  conn: Deno.Conn,
  request: string | Uint8Array,
  options: ExchangeOptions = {},
): Promise<Exchange> {
  const wanted = options.responses ?? 1;
  await writeText(conn, request);
  const finals = (bytes: Uint8Array) =>
    parseMessages(bytes, { kind: "response" }).filter(
      (message) => statusOf(message) >= 200,
    ).length;
  const read = await readUntil(
    conn,
    (_text, bytes) => !options.untilClosed && finals(bytes) >= wanted,
    options.ms,
  );
  return {
    responses: parseMessages(read.bytes, {
      kind: "response",
      closed: read.closed,
    }),
    closed: read.closed,
    text: read.text,
  };
}

/** A raw upstream that answers each complete request and records every byte. */
export interface RecordingUpstream extends AsyncDisposable {
  readonly port: number;
  readonly hostPort: string;
  /** Complete requests, in the order they arrived. */
  readonly requests: WireMessage[];
  /** Every byte received on every connection, as text. */
  received(): string;
  /** Resolves with request `index` (0-based) once it arrived. */
  request(index: number): Promise<WireMessage>;
}

/** An answer of a recording upstream: status, headers and body. */
export interface CannedAnswer {
  readonly status?: number;
  readonly headers?: readonly (readonly [string, string])[];
  readonly body?: string | Uint8Array;
}

/** Starts an upstream that answers every request with `answer(request)`. */
export function startRecordingUpstream(
  answer: (request: WireMessage) => CannedAnswer = () => ({ body: "{}" }),
): RecordingUpstream {
  const requests: WireMessage[] = [];
  const received: Uint8Array[] = [];
  const arrivals = createWaiters();
  const server = startScriptedServer(async (conn) => {
    let pending = new Uint8Array();
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const read = await conn.read(buffer).catch(() => null);
      if (read === null) return;
      received.push(buffer.slice(0, read));
      const joined = new Uint8Array(pending.length + read);
      joined.set(pending);
      joined.set(buffer.subarray(0, read), pending.length);
      pending = joined;
      const { messages, end } = splitMessages(pending, { kind: "request" });
      pending = pending.slice(end);
      for (const message of messages) {
        requests.push(message);
        arrivals.notify();
        await writeText(conn, renderAnswer(answer(message)));
      }
    }
  });
  return {
    port: server.port,
    hostPort: `127.0.0.1:${server.port}`,
    requests,
    received: () => received.map((part) => latin1.decode(part)).join(""),
    request: (index) =>
      arrivals.until(() => requests[index], `upstream request #${index}`),
    [Symbol.asyncDispose]: () => server[Symbol.asyncDispose](),
  };
}

function renderAnswer(answer: CannedAnswer): Uint8Array {
  const body = typeof answer.body === "string"
    ? new TextEncoder().encode(answer.body)
    : answer.body ?? new Uint8Array();
  const headers = answer.headers ?? [["content-type", "application/json"]];
  const head = [
    `HTTP/1.1 ${answer.status ?? 200} OK`,
    ...headers.map(([name, value]) => `${name}: ${value}`),
    `content-length: ${body.length}`,
    "",
    "",
  ].join("\r\n");
  const out = new Uint8Array(head.length + body.length);
  out.set(new TextEncoder().encode(head));
  out.set(body, head.length);
  return out;
}
