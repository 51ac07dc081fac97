/**
 * @module
 * Refuses a request whose `Host` header is not a host and port. Deno builds
 * a request's URL by joining the `Host` value and the request target as
 * text, and both the router and the upstream path are read from that URL: a
 * `Host` of `x/v1/load_lora_adapter?` turned `POST /v1/chat/completions`,
 * the request a gateway in front checked, into `POST /v1/load_lora_adapter`
 * on the decoder. RFC 9112 §3.2 asks for a 400 on an invalid `Host`, as the
 * Go sidecar's net/http answered (`httpguts.ValidHostHeader`). An HTTP/2
 * request without `host` is checked by the runtime alone: hyper refuses a
 * path in `:authority`, though not userinfo (`a@b`), which moves no path.
 */

import { ProxyError } from "../errors.ts";
import type { HeaderLookup } from "../upstream/headers.ts";

/**
 * Bytes of a `Host` value: RFC 3986's reg-name, IP literals and a port,
 * the set Go's `httpguts.ValidHostHeader` admits. No `/`, `?`, `#`, `\` or
 * `@`, which would end the authority, or change it, in the URL it is part of.
 */
const HOST_VALUE = /^[A-Za-z0-9!$%&'()*+,\-.:;=\[\]_~]*$/;

/** Whether `value` may be a request's `Host`: a host and port, nothing a URL reads past. */
export function isValidHostHeader(value: string): boolean {
  return HOST_VALUE.test(value);
}

/**
 * The path of the request target as the client sent it, query and fragment
 * removed: the URL's text after the scheme and the `Host` value it was built
 * from, which differs from the router's path when `Host` holds a path.
 */
export function targetPathOf(request: Request): string {
  const url = request.url;
  const host = request.headers.get("host");
  const scheme = url.slice(0, url.indexOf("://") + 3);
  const rest = host !== null && url.startsWith(`${scheme}${host}`)
    ? url.slice(scheme.length + host.length)
    : url.slice(url.indexOf("/", scheme.length));
  const end = rest.search(/[?#]/);
  return end === -1 ? rest : rest.slice(0, end);
}

/**
 * The 400 `invalid_host_header` for a `Host` holding more than a host and
 * port; undefined for a good one or none.
 */
export function invalidHostError(
  headers: HeaderLookup,
): ProxyError | undefined {
  const host = headers.get("host");
  if (host === null || isValidHostHeader(host)) return undefined;
  return new ProxyError(
    400,
    `Invalid Host header ${
      JSON.stringify(host)
    }: expected a host name or IP address and an optional port`,
    { code: "invalid_host_header", param: "host" },
  );
}
