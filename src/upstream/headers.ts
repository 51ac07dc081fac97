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

function connectionListed(headers: Headers): ReadonlySet<string> | undefined {
  const connection = headers.get("connection");
  if (connection === null) return undefined;
  return new Set(
    connection.split(",").map((name) => name.trim().toLowerCase()),
  );
}

/** Options of `buildUpstreamHeaders`. */
export interface UpstreamHeaderOptions {
  /** Client address appended to `X-Forwarded-For`, when known. */
  readonly clientIp?: string | undefined;
  /** Further headers to leave out (routing headers, a replaced body's length). */
  readonly omit?: readonly string[];
}

/** Headers of a request to an upstream, built from the client's request headers. */
export function buildUpstreamHeaders(
  incoming: Headers,
  options: UpstreamHeaderOptions = {},
): Headers {
  const listed = connectionListed(incoming);
  const omit = options.omit ?? [];
  const out = new Headers();
  for (const [name, value] of incoming) {
    // fetch derives Host from the upstream URL; the Go sidecar kept the client's.
    if (
      name === "host" || HOP_BY_HOP.has(name) || listed?.has(name) ||
      omit.includes(name)
    ) {
      continue;
    }
    out.append(name, value);
  }
  if (options.clientIp !== undefined) {
    const prior = incoming.get(HEADER_FORWARDED_FOR);
    out.set(
      HEADER_FORWARDED_FOR,
      prior ? `${prior}, ${options.clientIp}` : options.clientIp,
    );
  }
  return out;
}

/**
 * Headers of a response relayed to the client. Deno's fetch decompresses
 * bodies but keeps `Content-Encoding`, so an encoded answer loses that header
 * and its (compressed) `Content-Length`.
 */
export function buildClientHeaders(upstream: Headers): Headers {
  const listed = connectionListed(upstream);
  const decoded = upstream.has("content-encoding");
  const out = new Headers();
  for (const [name, value] of upstream) {
    if (HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    if (decoded && (name === "content-encoding" || name === "content-length")) {
      continue;
    }
    out.append(name, value);
  }
  return out;
}
