/**
 * @module
 * A scanner for HTTP/1.1 chunked framing (RFC 9112 §7.1) that finds where a
 * message ends without copying it, so a chunked body can be relayed verbatim,
 * framing and all, in one write per read. It can also report the data spans,
 * for a body read whole or relayed to an HTTP/1.0 client without framing.
 */

const CR = 13;
const LF = 10;
/** Longest chunk-size line accepted (size, extensions): a guard against garbage. */
const MAX_LINE = 4096;

const enum State {
  Size,
  SizeLineEnd,
  Data,
  DataCr,
  DataLf,
  TrailerLineStart,
  TrailerLine,
  TrailerLineEnd,
  FinalLf,
  Done,
}

/** Malformed chunked framing. */
export class ChunkedFramingError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(`malformed chunked body: ${message}`);
    this.name = "ChunkedFramingError";
  }
}

/** Receives the spans of body data inside scanned bytes. */
export type DataSink = (bytes: Uint8Array) => void;

/** Tracks position in a chunked body across reads. */
export class ChunkedScanner {
  #state = State.Size;
  #size = 0;
  #digits = 0;
  #inExtension = false;
  #lineLength = 0;
  #remaining = 0;

  /** Whether the last chunk and trailers have been seen. */
  get done(): boolean {
    return this.#state === State.Done;
  }

  /**
   * Scans `bytes`; returns how many belong to the body (all of them unless
   * the body ends inside). Calls `onData` with each span of body data.
   */
  scan(bytes: Uint8Array, onData?: DataSink): number {
    let i = 0;
    const length = bytes.length;
    while (i < length && this.#state !== State.Done) {
      switch (this.#state) {
        case State.Size: {
          const byte = bytes[i++]!;
          if (++this.#lineLength > MAX_LINE) {
            throw new ChunkedFramingError("chunk-size line too long");
          }
          if (byte === CR) {
            if (this.#digits === 0) {
              throw new ChunkedFramingError("missing chunk size");
            }
            this.#state = State.SizeLineEnd;
          } else if (isControl(byte)) {
            // A bare LF would end the line for some parsers and not others.
            throw new ChunkedFramingError(
              "control character in chunk-size line",
            );
          } else if (this.#inExtension) {
            // Extensions are ignored (and relayed as they came).
          } else if (byte === 0x3b /* ; */ || byte === 0x20 || byte === 0x09) {
            this.#inExtension = true;
          } else {
            const digit = hexValue(byte);
            if (digit < 0) throw new ChunkedFramingError("bad chunk size");
            if (++this.#digits > 12) {
              throw new ChunkedFramingError("chunk size too large");
            }
            this.#size = this.#size * 16 + digit;
          }
          break;
        }
        case State.SizeLineEnd: {
          if (bytes[i++] !== LF) throw new ChunkedFramingError("expected LF");
          if (this.#size === 0) {
            this.#state = State.TrailerLineStart;
          } else {
            this.#remaining = this.#size;
            this.#state = State.Data;
          }
          this.#size = this.#digits = this.#lineLength = 0;
          this.#inExtension = false;
          break;
        }
        case State.Data: {
          const take = Math.min(this.#remaining, length - i);
          onData?.(bytes.subarray(i, i + take));
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = State.DataCr;
          break;
        }
        case State.DataCr:
          if (bytes[i++] !== CR) {
            throw new ChunkedFramingError("chunk data longer than its size");
          }
          this.#state = State.DataLf;
          break;
        case State.DataLf:
          if (bytes[i++] !== LF) throw new ChunkedFramingError("expected LF");
          this.#state = State.Size;
          break;
        case State.TrailerLineStart:
          // An empty line ends the trailers (and the message).
          if (bytes[i++] === CR) {
            this.#state = State.FinalLf;
          } else {
            this.#lineLength = 1;
            this.#state = State.TrailerLine;
          }
          break;
        case State.TrailerLine:
          if (++this.#lineLength > MAX_LINE) {
            throw new ChunkedFramingError("trailer line too long");
          }
          {
            const byte = bytes[i++]!;
            if (byte === CR) this.#state = State.TrailerLineEnd;
            else if (isControl(byte)) {
              throw new ChunkedFramingError("control character in a trailer");
            }
          }
          break;
        case State.TrailerLineEnd:
          if (bytes[i++] !== LF) throw new ChunkedFramingError("expected LF");
          this.#lineLength = 0;
          this.#state = State.TrailerLineStart;
          break;
        case State.FinalLf:
          if (bytes[i++] !== LF) throw new ChunkedFramingError("expected LF");
          this.#state = State.Done;
          break;
      }
    }
    return i;
  }
}

/** Control characters other than horizontal tab (CR is checked first). */
function isControl(byte: number): boolean {
  return (byte < 0x20 && byte !== 0x09) || byte === 0x7f;
}

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x57;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x37;
  return -1;
}
