/**
 * @module
 * HTTP/1.x message heads as the wire engine reads them: the request line or
 * status line, the header fields (names lower-cased, as `Headers` has them),
 * and how the body is framed (RFC 9112 §6.3). Anything ambiguous, such as
 * both Content-Length and Transfer-Encoding (request smuggling), is refused
 * with a `ProxyError` carrying the status to answer.
 */

import { ProxyError } from "../errors.ts";
import type { HeaderList } from "../upstream/headers.ts";
import { ClosedEarlyError, type ConnReader } from "./conn_reader.ts";

/** How a message body is delimited. */
export type Framing =
  | { readonly kind: "none" }
  | { readonly kind: "length"; readonly length: number }
  | { readonly kind: "chunked" }
  /** Until the sender closes the connection (responses only). */
  | { readonly kind: "close" };

/** Header fields with `Headers`' lookup, over the list as it arrived. */
export class HeaderBag {
  /** Pairs in arrival order, names lower-cased. */
  readonly list: HeaderList;

  /** Wraps `list` (names already lower-cased). */
  constructor(list: HeaderList) {
    this.list = list;
  }

  /** Every value of `name` joined by ", ", as `Headers.get` does; null when absent. */
  get(name: string): string | null {
    let joined: string | null = null;
    for (const [key, value] of this.list) {
      if (key === name) {
        joined = joined === null ? value : `${joined}, ${value}`;
      }
    }
    return joined;
  }

  /** The pairs, as `Headers` iterates. */
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.list[Symbol.iterator]();
  }
}

/** A request head. */
export interface RequestHead {
  readonly method: string;
  /** Origin-form target: path and query. */
  readonly target: string;
  /** The target's path, without the query. */
  readonly path: string;
  readonly version: "1.0" | "1.1";
  readonly headers: HeaderBag;
  readonly framing: Framing;
  /** Whether the client allows another request on the connection afterwards. */
  readonly keepAlive: boolean;
  /** The client waits for `100 Continue` before sending its body. */
  readonly expectContinue: boolean;
}

/** A response head. */
export interface ResponseHead {
  readonly version: "1.0" | "1.1";
  readonly status: number;
  readonly reason: string;
  readonly headers: HeaderBag;
  readonly framing: Framing;
  /** Whether the server keeps the connection open after this response. */
  readonly keepAlive: boolean;
}

// RFC 9110 §5.6.2 token characters.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const LENGTH = /^\d{1,15}$/;
// A field value must not carry CR, LF or NUL (RFC 9110 §5.5): relayed as is,
// a bare LF would start a header line of the client's choosing upstream.
const UNSAFE_VALUE = /[\0\r\n]/;
// Visible ASCII only: the target is written into the upstream request line.
const TARGET = /^[\x21-\x7e]+$/;
const STATUS_LINE = /^(HTTP\/1\.[01]) (\d{3})(?: (.*))?$/;

function parseFields(lines: string[], from: number): HeaderBag {
  const list: HeaderList = [];
  for (let i = from; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new ProxyError(400, "malformed header line");
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) {
      // Also refuses obsolete line folding (a line starting with a space).
      throw new ProxyError(400, "malformed header name");
    }
    const value = line.slice(colon + 1).trim();
    if (UNSAFE_VALUE.test(value)) {
      throw new ProxyError(400, "header value with CR, LF or NUL");
    }
    list.push([name.toLowerCase(), value]);
  }
  return new HeaderBag(list);
}

function bodyFraming(
  headers: HeaderBag,
  otherwise: Framing,
): Framing {
  const encoding = headers.get("transfer-encoding");
  const length = headers.get("content-length");
  if (encoding !== null) {
    if (length !== null) {
      throw new ProxyError(
        400,
        "both Transfer-Encoding and Content-Length are set",
      );
    }
    const codings = encoding.toLowerCase().split(",").map((c) => c.trim());
    if (codings.length !== 1 || codings[0] !== "chunked") {
      throw new ProxyError(
        501,
        `unsupported transfer coding "${encoding}"`,
      );
    }
    return { kind: "chunked" };
  }
  if (length !== null) {
    if (LENGTH.test(length)) return { kind: "length", length: Number(length) };
    // Several fields (or a list) are fine only when they all agree.
    const values = new Set(length.split(",").map((v) => v.trim()));
    const [value] = values;
    if (values.size !== 1 || value === undefined || !LENGTH.test(value)) {
      throw new ProxyError(400, "invalid Content-Length");
    }
    return { kind: "length", length: Number(value) };
  }
  return otherwise;
}

function keepAliveOf(version: "1.0" | "1.1", headers: HeaderBag): boolean {
  const connection = headers.get("connection")?.toLowerCase() ?? "";
  return version === "1.1"
    ? !connection.includes("close")
    : connection.includes("keep-alive");
}

function versionOf(text: string | undefined): "1.0" | "1.1" {
  if (text === "HTTP/1.1") return "1.1";
  if (text === "HTTP/1.0") return "1.0";
  throw new ProxyError(505, `unsupported protocol "${text ?? ""}"`);
}

/** Parses a request head (without its final empty line). */
export function parseRequestHead(text: string): RequestHead {
  const lines = text.split("\r\n");
  // A client may send empty lines before the request line (RFC 9112 §2.2).
  let first = 0;
  while (lines[first] === "" && first < lines.length - 1) first++;
  const parts = lines[first]!.split(" ");
  if (parts.length !== 3) {
    throw new ProxyError(400, "malformed request line");
  }
  const [method, rawTarget, protocol] = parts as [string, string, string];
  if (!TOKEN.test(method)) throw new ProxyError(400, "malformed method");
  const version = versionOf(protocol);
  if (!TARGET.test(rawTarget)) {
    throw new ProxyError(400, "malformed request target");
  }
  let target = rawTarget;
  if (!target.startsWith("/")) {
    // Absolute form, which proxies must accept (RFC 9112 §3.2.2).
    const match = /^https?:\/\/[^/?#]*(.*)$/i.exec(target);
    if (match === null) {
      if (target !== "*") {
        throw new ProxyError(400, "malformed request target");
      }
    } else {
      const rest = match[1] ?? "";
      target = rest.startsWith("/") ? rest : `/${rest}`;
    }
  }
  const headers = parseFields(lines, first + 1);
  let hosts = 0;
  for (const [name] of headers.list) if (name === "host") hosts++;
  if (hosts > 1 || (version === "1.1" && hosts === 0)) {
    throw new ProxyError(400, "a request needs exactly one Host header");
  }
  const framing = bodyFraming(headers, { kind: "none" });
  const query = target.indexOf("?");
  return {
    method,
    target,
    path: query === -1 ? target : target.slice(0, query),
    version,
    headers,
    framing,
    // An HTTP/1.0 body in chunks cannot be trusted to end where we think
    // (RFC 9112 §6.1): close after it.
    keepAlive: keepAliveOf(version, headers) &&
      !(version === "1.0" && framing.kind === "chunked"),
    expectContinue: headers.get("expect")?.toLowerCase() === "100-continue" &&
      version === "1.1",
  };
}

/** Parses a response head to a request with `method`. */
export function parseResponseHead(text: string, method: string): ResponseHead {
  const lines = text.split("\r\n");
  const match = STATUS_LINE.exec(lines[0]!);
  if (match === null) throw new TypeError("malformed status line");
  const version = versionOf(match[1]);
  const status = Number(match[2]);
  const headers = parseFields(lines, 1);
  const bodiless = method === "HEAD" || status < 200 || status === 204 ||
    status === 304;
  const framing: Framing = bodiless
    ? { kind: "none" }
    : bodyFraming(headers, { kind: "close" });
  const keepAlive = framing.kind !== "close" && keepAliveOf(version, headers);
  return {
    version,
    status,
    reason: match[3] ?? "",
    headers,
    framing,
    keepAlive,
  };
}

/** Largest answer head accepted from an upstream. */
const RESPONSE_HEAD_LIMIT = 256 * 1024;

/**
 * Reads the final answer's head to a `method` request off `reader`, skipping
 * interim answers (100 Continue, 103 Early Hints). A 101 is refused: the
 * sidecar does not relay protocol upgrades.
 */
export async function readResponseHead(
  reader: ConnReader,
  method: string,
): Promise<ResponseHead> {
  for (;;) {
    const text = await reader.head(RESPONSE_HEAD_LIMIT);
    if (text === undefined) throw new ClosedEarlyError(reader.received === 0);
    const head = parseResponseHead(text, method);
    if (head.status === 101) {
      throw new TypeError("protocol upgrades are not supported by the sidecar");
    }
    if (head.status >= 200) return head;
  }
}
