/**
 * @module
 * Moving message bodies between connections without looking inside them:
 * Content-Length and chunked bodies are relayed as they arrived, framing
 * included, in one write per read; a body can also be read whole.
 */

import { ChunkedScanner } from "./chunked.ts";
import { ClosedEarlyError, type ConnReader } from "./conn_reader.ts";
import type { Framing } from "./message.ts";
import { withEncoded, withUtf8 } from "./write.ts";

const decoder = new TextDecoder();

/** Writes bytes somewhere, resolving once they are handed to the socket. */
export type ByteSink = (bytes: Uint8Array) => Promise<void>;

/** Options of `relayBody`. */
export interface RelayOptions {
  /** Text to send before the body, in the same write as its first bytes (a message head). */
  readonly prefix?: string;
  /** Send a chunked body's data without its framing (to an HTTP/1.0 peer). */
  readonly dechunk?: boolean;
}

/**
 * Relays the body framed by `framing` from `reader` to `sink`. Throws
 * `ClosedEarlyError` when the sender closes before the body is complete
 * (a close-delimited body ends normally that way).
 */
export async function relayBody(
  reader: ConnReader,
  framing: Framing,
  sink: ByteSink,
  options: RelayOptions = {},
): Promise<void> {
  let prefix = options.prefix;
  const send = (bytes: Uint8Array): Promise<void> => {
    if (prefix === undefined) return sink(bytes);
    const head = prefix;
    prefix = undefined;
    return withEncoded(head, bytes, sink);
  };
  switch (framing.kind) {
    case "none":
      break;
    case "length": {
      let remaining = framing.length;
      while (remaining > 0) {
        const bytes = await reader.some(remaining);
        if (bytes === undefined) throw new ClosedEarlyError(false);
        await send(bytes);
        reader.consume(bytes.length);
        remaining -= bytes.length;
      }
      break;
    }
    case "chunked": {
      const scanner = new ChunkedScanner();
      while (!scanner.done) {
        const bytes = await reader.some(Number.MAX_SAFE_INTEGER);
        if (bytes === undefined) throw new ClosedEarlyError(false);
        if (options.dechunk) {
          const spans: Uint8Array[] = [];
          const used = scanner.scan(bytes, (span) => spans.push(span));
          for (const span of spans) await send(span);
          reader.consume(used);
        } else {
          const used = scanner.scan(bytes);
          // Usually a read holds whole chunks: send it without a new view.
          await send(used === bytes.length ? bytes : bytes.subarray(0, used));
          reader.consume(used);
        }
      }
      break;
    }
    case "close":
      for (
        let bytes = await reader.some(Number.MAX_SAFE_INTEGER);
        bytes !== undefined;
        bytes = await reader.some(Number.MAX_SAFE_INTEGER)
      ) {
        await send(bytes);
        reader.consume(bytes.length);
      }
      break;
  }
  if (prefix !== undefined) await withUtf8(prefix, sink);
}

/** Reads the body framed by `framing` whole, without its framing. */
export async function readBody(
  reader: ConnReader,
  framing: Framing,
): Promise<Uint8Array> {
  if (framing.kind === "none") return new Uint8Array(0);
  if (framing.kind === "length") return await reader.exactly(framing.length);
  const parts: Uint8Array[] = [];
  let total = 0;
  await relayBody(reader, framing, (bytes) => {
    parts.push(bytes.slice());
    total += bytes.length;
    return Promise.resolve();
  }, { dechunk: true });
  const body = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    body.set(part, offset);
    offset += part.length;
  }
  return body;
}

/**
 * Reads the body framed by `framing` whole and decodes it as UTF-8 (invalid
 * bytes replaced); a Content-Length body is decoded where it was read.
 */
export async function readText(
  reader: ConnReader,
  framing: Framing,
): Promise<string> {
  const bytes = framing.kind === "length"
    ? await reader.view(framing.length)
    : await readBody(reader, framing);
  return decoder.decode(bytes);
}
