/**
 * @module
 * Header hygiene for every hop: hop-by-hop headers are connection-scoped and
 * must not be forwarded in either direction (RFC 9110 §7.6.1), including any
 * header the `Connection` header names.
 */

import { HEADER_FORWARDED_FOR } from "../protocol/fields.ts";

const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** What the sidecar reads from a header set. */
export interface HeaderLookup {
  /** Every value of `name` joined by ", "; null when absent. */
  get(name: string): string | null;
}

/** A header set that can also be walked, pair by pair, names lower-cased. */
export interface HeaderSource
  extends HeaderLookup, Iterable<[string, string]> {}

/** The names the `Connection` header lists, lower-cased; undefined without one. */
export function connectionListed(
  headers: HeaderLookup,
): ReadonlySet<string> | undefined {
  const connection = headers.get("connection");
  if (connection === null) return undefined;
  return new Set(
    connection.split(",").map((name) => name.trim().toLowerCase()),
  );
}

/**
 * Header name/value pairs. Handing `fetch` and `Response` a list instead of a
 * `Headers` object skips a conversion, and each `Headers` iteration sorts it:
 * copying headers was the sidecar's largest own cost per request (bench).
 */
export type HeaderList = [string, string][];

/** Options of `buildUpstreamHeaders`. */
export interface UpstreamHeaderOptions {
  /** Client address appended to `X-Forwarded-For`, when known. */
  readonly clientIp?: string | undefined;
  /** Further headers to leave out (routing headers, a replaced body's length). */
  readonly omit?: readonly string[];
}

/** Headers of a request to an upstream, built from the client's request headers. */
export function buildUpstreamHeaders(
  incoming: HeaderSource,
  options: UpstreamHeaderOptions = {},
): HeaderList {
  const listed = connectionListed(incoming);
  const omit = options.omit ?? [];
  const { clientIp } = options;
  const out: HeaderList = [];
  let forwardedFor: string | undefined;
  for (const [name, value] of incoming) {
    // fetch derives Host from the upstream URL; the Go sidecar kept the client's.
    if (
      name === "host" || HOP_BY_HOP.has(name) || listed?.has(name) ||
      omit.includes(name)
    ) {
      continue;
    }
    if (name === HEADER_FORWARDED_FOR && clientIp !== undefined) {
      forwardedFor = value;
      continue;
    }
    out.push([name, value]);
  }
  if (clientIp !== undefined) {
    out.push([
      HEADER_FORWARDED_FOR,
      forwardedFor ? `${forwardedFor}, ${clientIp}` : clientIp,
    ]);
  }
  return out;
}

/** Options of `buildClientHeaders`. */
export interface ClientHeaderOptions {
  /**
   * Whether `fetch` was allowed to decode the answer: it decodes a gzip or br
   * body unless the request asked for `accept-encoding: identity`.
   */
  readonly fetchMayDecode?: boolean;
}

/** The body's `Content-Encoding`, trimmed and lower-cased; undefined without one. */
export function contentCodingOf(headers: HeaderLookup): string | undefined {
  return headers.get("content-encoding")?.trim().toLowerCase();
}

/**
 * Whether `fetch` decoded the body: only a single `gzip` or `br` coding on a
 * non-empty body is decoded, and only when the request let it; any other
 * coding (deflate, zstd, a list) arrives as sent and keeps its label.
 */
export function isDecodedByFetch(
  upstream: HeaderLookup,
  options: ClientHeaderOptions,
): boolean {
  if (!options.fetchMayDecode) return false;
  const coding = contentCodingOf(upstream);
  if (coding !== "gzip" && coding !== "br") return false;
  return upstream.get("content-length")?.trim() !== "0";
}

/**
 * Headers of a response relayed to the client. Deno's fetch decompresses
 * bodies but keeps `Content-Encoding`, so an answer it decoded loses that
 * header and its (compressed) `Content-Length`.
 */
export function buildClientHeaders(
  upstream: HeaderSource,
  options: ClientHeaderOptions = {},
): HeaderList {
  const listed = connectionListed(upstream);
  const decoded = isDecodedByFetch(upstream, options);
  const out: HeaderList = [];
  for (const [name, value] of upstream) {
    if (HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    if (decoded && (name === "content-encoding" || name === "content-length")) {
      continue;
    }
    out.push([name, value]);
  }
  return out;
}
