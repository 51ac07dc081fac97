/**
 * @module
 * The request body limit (`-max-request-body-bytes`): a body the client
 * declares too large is refused from its `Content-Length` before a byte of it
 * is read, and a chunked body is counted as it is read or streamed on and cut
 * where it passes the limit. So a request holds at most the limit in memory,
 * whatever the client sends (issue 11: a 400 MB body once took 3.2 GB).
 *
 * Hono's `hono/body-limit` is not used: it reads a chunked body eagerly into
 * a queue, whether or not anyone consumes it, and its error is not a
 * `ProxyError`, so a streamed passthrough would lose its backpressure and the
 * 413 its place in the one error path.
 *
 * The bounded readers also bound the answers the sidecar reads whole: from
 * upstreams (`upstream/client.ts`) and from the Kubernetes API.
 *
 * A client's body read whole is timed too (`-client-body-timeout`): the
 * limit bounds its memory, not how long a client trickling it (or sending
 * nothing after its head) holds the request and its connection.
 */

import { errorMessage, ProxyError } from "./errors.ts";
import { timeReads } from "./read_timeout.ts";
import type { HeaderLookup } from "./upstream/headers.ts";

/** Default of `-max-request-body-bytes`: room for a multimodal request with inline images. */
export const DEFAULT_MAX_REQUEST_BODY_BYTES = 32 * 1024 * 1024;

/** The 413 answered for a body larger than `limit` bytes. */
function bodyTooLarge(limit: number): ProxyError {
  return new ProxyError(
    413,
    `Request body is larger than the limit of ${limit} bytes (-max-request-body-bytes)`,
    { code: "request_body_too_large" },
  );
}

/**
 * The body length the client declared, or undefined for a chunked body or
 * none. The runtime's HTTP engine has already refused a malformed or
 * conflicting `Content-Length`; it lets equal repeated values through as one
 * (RFC 9112 §6.3), which `Headers` joins with commas.
 */
export function declaredLength(headers: HeaderLookup): number | undefined {
  const text = headers.get("content-length");
  if (text === null || text === undefined) return undefined;
  // Asked several times a request: the one value the header nearly always
  // holds is read without splitting.
  if (!text.includes(",")) return lengthOf(text);
  const lengths = new Set(text.split(",").map(lengthOf));
  const [length] = lengths;
  return lengths.size === 1 ? length : undefined;
}

/** A length of decimal digits only (RFC 9110 §8.6), as a safe integer; undefined otherwise. */
function lengthOf(part: string): number | undefined {
  const digits = part.trim();
  if (!/^\d+$/.test(digits)) return undefined;
  const value = Number(digits);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** Whether the request came with chunked framing (HTTP/1.1 `Transfer-Encoding`). */
export function isChunked(headers: HeaderLookup): boolean {
  return /\bchunked\b/i.test(headers.get("transfer-encoding") ?? "");
}

/**
 * The declared length ({@linkcode declaredLength}); throws the 413 when it is
 * over `limit`. Reads nothing.
 */
export function ensureDeclaredWithin(
  headers: HeaderLookup,
  limit: number,
): number | undefined {
  const length = declaredLength(headers);
  if (length !== undefined && length > limit) throw bodyTooLarge(limit);
  return length;
}

function concatChunks(
  chunks: readonly Uint8Array[],
  total: number,
): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** What was read of a body, at most a limit's worth. */
interface ReadChunks {
  readonly chunks: Uint8Array[];
  readonly total: number;
  /** False when the body went on past the limit; the rest was cancelled, never read. */
  readonly complete: boolean;
}

/** The 408 of a client body whose next bytes did not come within `ms`. */
function clientBodyTimeout(ms: number): ProxyError {
  return new ProxyError(
    408,
    `Client sent no request body bytes for ${ms} ms (-client-body-timeout)`,
    { code: "client_body_timeout" },
  );
}

/**
 * At most `limit` bytes of `body`; with `timeoutMs` over 0, a read that
 * waits that long throws {@linkcode clientBodyTimeout}'s 408, the read left
 * outstanding (read_timeout.ts says why) and the rest never read.
 */
async function readChunks(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
  timeoutMs = 0,
): Promise<ReadChunks> {
  const chunks: Uint8Array[] = [];
  if (body === null) return { chunks, total: 0, complete: true };
  const reader = body.getReader();
  const timed = timeReads(reader, {
    ms: timeoutMs,
    expired: () => clientBodyTimeout(timeoutMs),
  });
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await timed.read();
      if (done) return { chunks, total, complete: true };
      if (total + value.byteLength > limit) {
        reader.cancel().catch(() => {});
        chunks.push(value.subarray(0, limit - total));
        return { chunks, total: limit, complete: false };
      }
      total += value.byteLength;
      chunks.push(value);
    }
  } finally {
    timed.release();
  }
}

/**
 * Reads a client's body whole, throwing the 413 as soon as more than `limit`
 * bytes arrived, or the 408 once a read waited `timeoutMs`; the rest is
 * never read (the runtime closes the connection after the answer, as the
 * body was not consumed).
 */
async function readBodyBytes(
  body: ReadableStream<Uint8Array> | null,
  options: { readonly limit: number; readonly timeoutMs: number },
): Promise<Uint8Array<ArrayBuffer>> {
  const bytes = await readBodyWithin(body, options.limit, options.timeoutMs);
  if (bytes === undefined) throw bodyTooLarge(options.limit);
  return bytes;
}

/**
 * A body read whole, or undefined as soon as more than `limit` bytes arrived
 * (the rest cancelled, never read, and what was read not copied); with
 * `timeoutMs` over 0, a read that waits that long throws the 408.
 */
export async function readBodyWithin(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
  timeoutMs = 0,
): Promise<Uint8Array<ArrayBuffer> | undefined> {
  const { chunks, total, complete } = await readChunks(body, limit, timeoutMs);
  return complete ? concatChunks(chunks, total) : undefined;
}

/**
 * Reads at most `limit` bytes of a body, for a caller that decides itself
 * what a longer body means: the body is cancelled at the first chunk past
 * the limit, so one that never ends holds no more than the limit.
 */
export async function readBodyPrefix(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const { chunks, total } = await readChunks(body, limit);
  return concatChunks(chunks, total);
}

const utf8 = new TextDecoder();

/**
 * Told by a body reader that the client left in the middle of its body (a
 * read of it failed), with the read's error; the request context takes it
 * as the client gone (`clientLeftOf`), since the runtime's signal may never
 * say so then.
 */
export type ClientLeft = (cause: unknown) => void;

/** How a request's body is read whole. */
export interface ClientBodyReading {
  /** `-max-request-body-bytes`. */
  readonly limit: number;
  /** `-client-body-timeout` in ms: longest wait on one read of the body; 0 off. */
  readonly timeoutMs: number;
  /** Told when the client leaves in the middle of its body. */
  readonly left: ClientLeft;
}

/**
 * A body of declared `length` read whole (the runtime delivers no more than
 * declared). Fewer bytes is the client gone: Deno 2.9.6 ends an HTTP/2 body
 * at the client's stream reset without an error. Untimed, the runtime's own
 * reader takes it in one call; timed, it is read chunk by chunk, as only
 * that sees the time between two reads.
 */
export async function readDeclaredBody(
  request: Request,
  length: number,
  reading: ClientBodyReading,
): Promise<Uint8Array<ArrayBuffer>> {
  const { timeoutMs, left } = reading;
  const bytes = await readFromClient(
    () =>
      timeoutMs > 0
        ? readBodyBytes(request.body, { limit: length, timeoutMs })
        : request.bytes(),
    left,
  );
  if (bytes.byteLength === length) return bytes;
  const cause = new Error(
    `Request body ended after ${bytes.byteLength} of its ${length} declared bytes`,
  );
  left(cause);
  throw clientDisconnected(cause);
}

/**
 * The request body whole, at most `limit` bytes of it: a declared length
 * over the limit is refused before reading, a chunked body where it passes;
 * a client that lets a read of it wait `timeoutMs` gets the 408.
 */
export async function readWholeBody(
  request: Request,
  reading: ClientBodyReading,
): Promise<Uint8Array<ArrayBuffer>> {
  const length = ensureDeclaredWithin(request.headers, reading.limit);
  if (length !== undefined) {
    return await readDeclaredBody(request, length, reading);
  }
  return await readFromClient(
    () => readBodyBytes(request.body, reading),
    reading.left,
  );
}

/** The request body as text, read as {@linkcode readWholeBody} reads it. */
export async function readBodyText(
  request: Request,
  reading: ClientBodyReading,
): Promise<string> {
  return utf8.decode(await readWholeBody(request, reading));
}

/**
 * Whether a failed read of the client's body is the HTTP/1 parser refusing
 * it (Deno 2.9.6: a plain `Error` "invalid HTTP/1 request: …", e.g. for a
 * chunk size that is not hex) from a client still connected. Every other
 * failure is the client gone: `BadResource` when a plain connection closes,
 * `Deno.errors.Http` when a TLS peer drops without close_notify or an
 * HTTP/2 client resets its stream. An HTTP/2 framing error is `Http` too,
 * but the runtime resets that stream, so no answer could reach it.
 */
function isMalformedBody(error: unknown): boolean {
  return error instanceof Error && !(error instanceof Deno.errors.Http) &&
    error.message.startsWith("invalid HTTP/1 request");
}

/**
 * What a failed read of the client's body means: the client gone (`left`
 * is told; a 499 stops the request), or a body the runtime could not parse,
 * such as broken chunk framing, from a client still there (its 400).
 */
function clientReadFailure(error: unknown, left: ClientLeft): ProxyError {
  if (isMalformedBody(error)) {
    return new ProxyError(
      400,
      `Malformed request body: ${errorMessage(error)}`,
      { code: "invalid_request_body", cause: error },
    );
  }
  left(error);
  return clientDisconnected(error);
}

/** The 499 of a client that left while sending its request body. */
export function clientDisconnected(cause: unknown): ProxyError {
  return new ProxyError(
    499,
    "Client disconnected while sending its request body",
    { code: "client_disconnected", cause },
  );
}

/** `read` of the client's body; a read that fails throws {@linkcode clientReadFailure}'s error. */
export async function readFromClient<T>(
  read: () => Promise<T>,
  left: ClientLeft,
): Promise<T> {
  try {
    return await read();
  } catch (error) {
    if (error instanceof ProxyError) throw error;
    throw clientReadFailure(error, left);
  }
}

/** A body stream cut at the limit, and how to learn that it was refused. */
export interface LimitedBody {
  readonly stream: ReadableStream<Uint8Array>;
  /**
   * Aborts when the body was refused, with the `ProxyError` to answer as its
   * reason: past the limit (413) or malformed (400). A client gone does not
   * abort it: `left` is told instead.
   */
  readonly refused: AbortSignal;
  /** Why `refused` aborted: the answer the client gets; undefined until then. */
  refusal(): ProxyError | undefined;
}

/**
 * `body` streamed on as it is pulled (backpressure kept: nothing is read
 * ahead of the consumer), erroring with the 413 once more than `limit` bytes
 * went through; the client's body is cancelled then, so reading stops there.
 * A read that fails is told before the stream errors, so whoever sees the
 * error already knows why: the client gone (`left`) or the body malformed
 * (`refused`).
 */
export function limitBodyStream(
  body: ReadableStream<Uint8Array>,
  limit: number,
  left: ClientLeft,
): LimitedBody {
  const reader = body.getReader();
  const refused = new AbortController();
  let refusal: ProxyError | undefined;
  const refuse = (error: ProxyError) => {
    refusal = error;
    refused.abort(error);
  };
  let total = 0;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let read: ReadableStreamReadResult<Uint8Array>;
      try {
        read = await reader.read();
      } catch (error) {
        const failure = clientReadFailure(error, left);
        if (failure.status !== 499) refuse(failure);
        throw error;
      }
      const { done, value } = read;
      if (done) {
        controller.close();
        return;
      }
      total += value.byteLength;
      if (total > limit) {
        const error = bodyTooLarge(limit);
        reader.cancel(error).catch(() => {});
        refuse(error);
        controller.error(error);
        return;
      }
      controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  return { stream, refused: refused.signal, refusal: () => refusal };
}
