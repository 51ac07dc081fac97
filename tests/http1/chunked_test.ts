import assert from "node:assert/strict";
import {
  ChunkedFramingError,
  ChunkedScanner,
} from "../../src/http1/chunked.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What scanning a message fed in pieces produced. */
interface Scanned {
  /** Bytes the scanner claimed, summed over every feed. */
  readonly used: number;
  /** The body data, from the `onData` spans. */
  readonly data: string;
  readonly done: boolean;
}

/** Feeds `pieces` one after the other to a fresh scanner. */
function scanPieces(pieces: readonly Uint8Array[]): Scanned {
  const scanner = new ChunkedScanner();
  const spans: Uint8Array[] = [];
  let used = 0;
  for (const piece of pieces) {
    used += scanner.scan(piece, (span) => spans.push(span.slice()));
  }
  return {
    used,
    data: spans.map((span) => decoder.decode(span)).join(""),
    done: scanner.done,
  };
}

/** `text` cut at each offset of `cuts`. */
function cut(text: string, cuts: readonly number[]): Uint8Array[] {
  const bytes = encoder.encode(text);
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const at of [...cuts, bytes.length]) {
    pieces.push(bytes.subarray(from, at));
    from = at;
  }
  return pieces;
}

/** `text` one byte per piece. */
function bytewise(text: string): Uint8Array[] {
  return [...encoder.encode(text)].map((byte) => Uint8Array.of(byte));
}

/** Scans `text` whole and returns the framing error it raises. */
function framingError(text: string): ChunkedFramingError {
  const scanner = new ChunkedScanner();
  try {
    scanner.scan(encoder.encode(text));
  } catch (error) {
    assert.ok(error instanceof ChunkedFramingError, String(error));
    return error;
  }
  assert.fail(`no framing error for ${JSON.stringify(text)}`);
}

const MESSAGE = "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n" +
  "0\r\nx-trailer: yes\r\n\r\n";
const MESSAGE_DATA = "hello 0123456789";

Deno.test("chunked scanner reads a whole message in one feed", () => {
  const scanned = scanPieces([encoder.encode(MESSAGE)]);
  assert.deepEqual(scanned, {
    used: encoder.encode(MESSAGE).length,
    data: MESSAGE_DATA,
    done: true,
  });
});

Deno.test("chunked scanner gives the same result at every split point", () => {
  const length = encoder.encode(MESSAGE).length;
  for (let at = 0; at <= length; at++) {
    assert.deepEqual(
      scanPieces(cut(MESSAGE, [at])),
      { used: length, data: MESSAGE_DATA, done: true },
      `split at ${at}`,
    );
  }
  for (let first = 1; first < length; first += 3) {
    for (let second = first; second < length; second += 5) {
      assert.deepEqual(
        scanPieces(cut(MESSAGE, [first, second])),
        { used: length, data: MESSAGE_DATA, done: true },
        `split at ${first} and ${second}`,
      );
    }
  }
});

Deno.test("chunked scanner reads a message fed one byte at a time", () => {
  const scanner = new ChunkedScanner();
  const pieces = bytewise(MESSAGE);
  let data = "";
  for (const [index, piece] of pieces.entries()) {
    assert.equal(scanner.done, false, `done before byte ${index}`);
    const used = scanner.scan(piece, (span) => data += decoder.decode(span));
    assert.equal(used, 1, `byte ${index} not claimed`);
  }
  assert.equal(scanner.done, true);
  assert.equal(data, MESSAGE_DATA);
});

Deno.test("chunked scanner ignores chunk extensions, quoted or bare", () => {
  const text = '3;name=value;flag\r\nabc\r\n2 ; q="a;b"\r\nde\r\n' +
    "0;last=1\r\n\r\n";
  assert.deepEqual(scanPieces([encoder.encode(text)]), {
    used: encoder.encode(text).length,
    data: "abcde",
    done: true,
  });
  assert.deepEqual(scanPieces(bytewise(text)).data, "abcde");
});

Deno.test("chunked scanner reads upper- and lower-case hex sizes", () => {
  const text = `1a\r\n${"x".repeat(26)}\r\n1A\r\n${"y".repeat(26)}\r\n` +
    "0\r\n\r\n";
  const scanned = scanPieces([encoder.encode(text)]);
  assert.equal(scanned.data, "x".repeat(26) + "y".repeat(26));
  assert.equal(scanned.done, true);
});

Deno.test("chunked scanner is done only after the empty line that ends the trailers", () => {
  const scanner = new ChunkedScanner();
  const head = "0\r\nx-a: 1\r\nx-b: 2\r\n\r";
  assert.equal(scanner.scan(encoder.encode(head)), head.length);
  assert.equal(scanner.done, false);
  assert.equal(scanner.scan(encoder.encode("\n")), 1);
  assert.equal(scanner.done, true);
});

Deno.test("chunked scanner stops exactly at the end of the message", () => {
  const next = "POST /next HTTP/1.1\r\nhost: x\r\n\r\n";
  const bytes = encoder.encode(MESSAGE + next);
  const scanner = new ChunkedScanner();
  let data = "";
  const used = scanner.scan(bytes, (span) => data += decoder.decode(span));
  assert.equal(used, encoder.encode(MESSAGE).length);
  assert.equal(scanner.done, true);
  assert.equal(data, MESSAGE_DATA);
  assert.equal(decoder.decode(bytes.subarray(used)), next);
  // Once done, nothing more belongs to the body.
  assert.equal(scanner.scan(encoder.encode(next)), 0);
});

Deno.test("chunked scanner stops at the end when the next message comes in the same small feed", () => {
  const text = "2\r\nok\r\n0\r\n\r\nGET";
  const pieces = cut(text, [4, 12]);
  const scanner = new ChunkedScanner();
  const used = pieces.map((piece) => scanner.scan(piece));
  assert.deepEqual(used, [4, 8, 0]);
  assert.equal(scanner.done, true);
});

Deno.test("chunked scanner reports data spans as views of the fed bytes, split where the feeds split", () => {
  const bytes = encoder.encode("6\r\nabcdef\r\n0\r\n\r\n");
  const scanner = new ChunkedScanner();
  const spans: Uint8Array[] = [];
  scanner.scan(bytes.subarray(0, 6), (span) => spans.push(span));
  scanner.scan(bytes.subarray(6), (span) => spans.push(span));
  assert.deepEqual(spans.map((span) => decoder.decode(span)), ["abc", "def"]);
  // Views, not copies: the relay writes them without copying.
  assert.equal(spans[0]!.buffer, bytes.buffer);
  assert.equal(spans[0]!.byteOffset, 3);
  assert.equal(spans[1]!.byteOffset, 6);
});

Deno.test("chunked scanner reports no data span for framing alone", () => {
  const spans: Uint8Array[] = [];
  const scanner = new ChunkedScanner();
  scanner.scan(encoder.encode("0\r\nx: y\r\n\r\n"), (span) => spans.push(span));
  assert.equal(scanner.done, true);
  assert.deepEqual(spans, []);
});

Deno.test("chunked scanner follows a chunk larger than any feed", () => {
  const size = 100_000;
  const text = `${size.toString(16)}\r\n${"z".repeat(size)}\r\n0\r\n\r\n`;
  const cuts: number[] = [];
  for (let at = 1000; at < text.length; at += 4093) cuts.push(at);
  const scanned = scanPieces(cut(text, cuts));
  assert.equal(scanned.done, true);
  assert.equal(scanned.used, text.length);
  assert.equal(scanned.data, "z".repeat(size));
});

Deno.test("chunked scanner refuses a size that is not hex", () => {
  assert.match(framingError("g\r\nx\r\n").message, /bad chunk size/);
  assert.match(framingError("-1\r\nx\r\n").message, /bad chunk size/);
  assert.match(framingError("0x5\r\nhello\r\n").message, /bad chunk size/);
});

Deno.test("chunked scanner refuses a size line without a size", () => {
  assert.match(framingError("\r\n").message, /missing chunk size/);
  assert.match(framingError(";ext\r\n").message, /missing chunk size/);
});

Deno.test("chunked scanner refuses a missing CRLF", () => {
  // A bare LF ends neither the size line nor the data.
  assert.match(
    framingError("5\nhello\r\n").message,
    /control character in chunk-size line/,
  );
  assert.match(framingError("5\rhello").message, /expected LF/);
  assert.match(
    framingError("5\r\nhelloX\r\n").message,
    /chunk data longer than its size/,
  );
  assert.match(framingError("5\r\nhello\rX").message, /expected LF/);
  assert.match(framingError("0\r\n\rX").message, /expected LF/);
  assert.match(framingError("0\r\nx: y\rX").message, /expected LF/);
});

Deno.test("chunked scanner refuses a framing error found in a later feed", () => {
  const scanner = new ChunkedScanner();
  assert.equal(scanner.scan(encoder.encode("3\r\nab")), 5);
  assert.throws(
    () => scanner.scan(encoder.encode("cd\r\n")),
    ChunkedFramingError,
  );
});

Deno.test("chunked scanner refuses a bare LF or NUL inside a chunk extension", () => {
  // RFC 9112 §7.1.1 allows only tokens and quoted strings there. The body is
  // relayed with its framing, so an upstream that ends the line at the LF
  // would read a different body from the same bytes.
  for (const extension of [";a\nb", ";a=\n", ";a\0b"]) {
    assert.throws(
      () =>
        new ChunkedScanner().scan(encoder.encode(`2${extension}\r\nok\r\n`)),
      ChunkedFramingError,
      JSON.stringify(extension),
    );
  }
});

Deno.test("chunked scanner refuses overlong size lines, sizes and trailers", () => {
  assert.match(
    framingError(`1;${"e".repeat(5000)}\r\n`).message,
    /chunk-size line too long/,
  );
  assert.match(
    framingError(`${"f".repeat(13)}\r\n`).message,
    /chunk size too large/,
  );
  assert.match(
    framingError(`0\r\nx-long: ${"v".repeat(5000)}\r\n\r\n`).message,
    /trailer line too long/,
  );
});

Deno.test("chunked scanner accepts lines just under the limits", () => {
  const extension = `1;${"e".repeat(4000)}\r\nx\r\n0\r\n\r\n`;
  assert.equal(scanPieces([encoder.encode(extension)]).done, true);
  const trailer = `0\r\nx-long: ${"v".repeat(4000)}\r\n\r\n`;
  assert.equal(scanPieces([encoder.encode(trailer)]).done, true);
  const size = `${"0".repeat(11)}1\r\nx\r\n0\r\n\r\n`;
  assert.equal(scanPieces([encoder.encode(size)]).data, "x");
});
