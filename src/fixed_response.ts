/**
 * @module
 * Responses whose body the sidecar holds whole (an answer it rewrote or
 * rebuilt), sent with their Content-Length. The access line and the metrics
 * read that header to know such a body is not a stream: reading
 * `response.body` instead turns a text body into a stream that Deno's server
 * then pumps through JavaScript rather than writing it at once (3.4% of the
 * busy time of non-streaming P/D, measured under load).
 */

/** Status line and headers of a `fixedResponse`. */
export interface FixedResponseInit {
  readonly status: number;
  readonly statusText?: string;
  /** Any Content-Length among them is replaced by the body's. */
  readonly headers: HeadersInit;
}

/** A code unit past U+007F: text without one takes a byte a unit in UTF-8. */
const NON_ASCII = /[\u0080-\uffff]/;

/**
 * Bytes `text` takes in UTF-8 as the runtime encodes it: a lone surrogate
 * becomes U+FFFD, three bytes, as `TextEncoder` writes it.
 */
export function utf8Length(text: string): number {
  if (!NON_ASCII.test(text)) return text.length;
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && isLowSurrogate(text, i + 1)) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

function isLowSurrogate(text: string, index: number): boolean {
  const unit = text.charCodeAt(index);
  return unit >= 0xdc00 && unit <= 0xdfff;
}

/**
 * `headers` as a list, without the Content-Length its new body replaces, and
 * whether a Content-Type was among them.
 */
function withoutLength(
  headers: HeadersInit,
): { readonly list: [string, string][]; readonly typed: boolean } {
  const entries = headers instanceof Headers || Array.isArray(headers)
    ? headers
    : Object.entries(headers);
  const list: [string, string][] = [];
  let typed = false;
  for (const [name, value] of entries) {
    const lower = name.toLowerCase();
    if (lower === "content-type") typed = true;
    if (lower !== "content-length") list.push([name, value]);
  }
  return { list, typed };
}

/**
 * A response with `content` as its body and that body's Content-Length. A
 * text body is handed over as text: the runtime encodes it once as it
 * writes it, where encoding it here cost an encode and a copy (about 8 us
 * of the 13 us this took per answer, measured).
 */
export function fixedResponse(
  content: string | Uint8Array<ArrayBuffer>,
  init: FixedResponseInit,
): Response {
  const length = typeof content === "string"
    ? utf8Length(content)
    : content.byteLength;
  const { list, typed } = withoutLength(init.headers);
  list.push(["content-length", String(length)]);
  const response = new Response(content, {
    status: init.status,
    ...(init.statusText === undefined ? {} : { statusText: init.statusText }),
    headers: list,
  });
  // A text body brings `text/plain` when no type was given; the answer
  // relayed keeps the type its upstream sent, or none.
  if (typeof content === "string" && !typed) {
    response.headers.delete("content-type");
  }
  return response;
}
