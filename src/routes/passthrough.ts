/**
 * @module
 * Every request the sidecar does not disaggregate goes to the local vLLM
 * unchanged: method, path, query, end-to-end headers and body, streamed both
 * ways with the client's abort signal. A small body with a declared length is
 * read whole first and sent with the head; a chunked body is cut at
 * `-max-request-body-bytes`.
 */

import type { Context, Handler } from "hono";
import { admitBodyAddresses } from "../allowlist/body_addresses.ts";
import type { RequestOrigin } from "../allowlist/allowlist.ts";
import {
  type ClientBodyReading,
  ensureDeclaredWithin,
  isChunked,
  limitBodyStream,
  type LimitedBody,
  readDeclaredBody,
  readWholeBody,
} from "../body_limit.ts";
import { decoderHostPort } from "../config.ts";
import type { AppEnv, Deps, ServeBindings } from "../context.ts";
import { VERBOSITY_DEBUG } from "../log.ts";
import { clientLeftOf } from "../middleware/request_context.ts";
import { ROUTING_HEADERS } from "../protocol/fields.ts";
import { ProxyError } from "../errors.ts";
import { buildUpstreamHeaders, connectionListed } from "../upstream/headers.ts";
import { TRACE_CONTEXT_HEADERS } from "../tracing.ts";
import { forwardToDecoder } from "../upstream/relay.ts";

/** What passthrough leaves out when the runtime injects its own trace context. */
const OMITTED_WHEN_TRACING: readonly string[] = [
  ...ROUTING_HEADERS,
  ...TRACE_CONTEXT_HEADERS,
];

/**
 * Methods `fetch` refuses to send, compared without case (the Fetch
 * standard's forbidden methods): asked to, it throws, which read as a
 * decoder that cannot be reached (a 502 and an error line per request).
 */
const UNSENDABLE_METHODS: ReadonlySet<string> = new Set([
  "CONNECT",
  "TRACE",
  "TRACK",
]);

/** The 405 for a method no upstream can be asked, before anything is read or sent. */
function ensureSendableMethod(method: string): void {
  if (!UNSENDABLE_METHODS.has(method.toUpperCase())) return;
  throw new ProxyError(
    405,
    `Method "${method}" is not supported by the sidecar`,
    { code: "method_not_allowed" },
  );
}

/**
 * Whether the request asks to become a WebSocket: `Upgrade` lists
 * `websocket` (or `websocket/<version>`, any case) and `Connection` names
 * `upgrade`, as Go's proxy (and RFC 9110 §7.8) reads an upgrade; an
 * `Upgrade` alone is a hop-by-hop header to drop.
 */
function asksForWebSocket(headers: Headers): boolean {
  const upgrade = headers.get("upgrade");
  if (upgrade === null || connectionListed(headers)?.has("upgrade") !== true) {
    return false;
  }
  return upgrade.split(",").some((item) => {
    const protocol = item.trim().toLowerCase();
    return protocol === "websocket" || protocol.startsWith("websocket/");
  });
}

/**
 * The 501 for a WebSocket upgrade, before anything is read or sent. Go's
 * proxy relays one (vLLM's `/v1/realtime`); here the runtime's per-connection
 * server ends an upgraded session right after its 101 (Deno 2.9.6, pinned in
 * tests/runtime_http_test.ts), and sent on as a plain GET it got vLLM's 404,
 * which named no cause.
 */
function ensureNotWebSocket(headers: Headers): void {
  if (!asksForWebSocket(headers)) return;
  throw new ProxyError(
    501,
    "WebSocket upgrades are not relayed by the sidecar yet: connect to the decoder's port for /v1/realtime",
    { code: "websocket_not_supported", clientAsk: true },
  );
}

/** Path and query of the request, as sent. */
export function pathAndQueryOf(request: Request): string {
  const url = request.url;
  const start = url.indexOf("/", url.indexOf("//") + 2);
  return start === -1 ? "/" : url.slice(start);
}

/** An IPv4 address as the runtime writes it mapped into IPv6. */
const MAPPED_IPV4 = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;

/** Client address from `Deno.serve`'s connection info, when there is one. */
export function clientIpOf(c: Context<AppEnv>): string | undefined {
  // c.env is undefined when the app is called without connection info.
  const env: ServeBindings | undefined = c.env;
  const hostname = env?.remoteAddr?.hostname;
  // The dual-stack listener ("::", the default) sees an IPv4 client as
  // "::ffff:a.b.c.d"; Go names that peer "a.b.c.d", and X-Forwarded-For and
  // the SSRF log carry it so. Every request on the default listener comes
  // here, so a match, not a parse.
  return hostname === undefined
    ? undefined
    : MAPPED_IPV4.exec(hostname)?.[1] ?? hostname;
}

/**
 * Largest body read whole before it is sent on. Deno's fetch leaves Nagle's
 * algorithm on for upstream sockets (no TCP_NODELAY option on 2.9.6), so a
 * streamed body written after its head waited for the decoder's delayed ACK:
 * 42.5 ms p50 between head and body, against 0.0 ms when head and body go
 * out in one write. Above this size the body streams, and the delay is small
 * beside the time to send it.
 */
export const WHOLE_BODY_BYTES = 1024 * 1024;

/** What is sent to the decoder as the body, and when a streamed one was refused. */
interface OutgoingBody {
  readonly body: BodyInit | null;
  /**
   * A chunked body's refusal (past the limit, or broken framing); absent
   * for a body of known length.
   */
  readonly limited?: Pick<LimitedBody, "refused" | "refusal">;
}

/** How the request's body is read whole: its limit, its timeout, and who hears of a client gone. */
export function clientBodyReading(
  deps: Deps,
  c: Context<AppEnv>,
): ClientBodyReading {
  return {
    limit: deps.config.maxRequestBodyBytes,
    timeoutMs: deps.config.clientBodyTimeout,
    left: clientLeftOf(c),
  };
}

async function outgoingBody(
  request: Request,
  reading: ClientBodyReading,
  read: Uint8Array<ArrayBuffer> | undefined,
): Promise<OutgoingBody> {
  if (read !== undefined) return { body: read };
  if (request.body === null) return { body: null };
  const length = ensureDeclaredWithin(request.headers, reading.limit);
  // The engine delivers no more than a declared length, which is within the
  // limit. Handed over as the runtime's own stream, it goes out with its
  // Content-Length (a stream of JavaScript's would go chunked), but no body
  // reader of ours sees its client leave mid-body: fetch's failure tells
  // (`client_body` in upstream/client.ts). Nor is it timed: the decoder
  // reads it, as it reads every body that streams.
  if (length !== undefined && length > WHOLE_BODY_BYTES) {
    return { body: request.body };
  }
  if (length === undefined && isChunked(request.headers)) {
    const limited = limitBodyStream(request.body, reading.limit, reading.left);
    return { body: limited.stream, limited };
  }
  // A small declared length, or neither length nor chunked framing (HTTP/2
  // without Content-Length): read whole, up to the limit.
  return {
    body: length === undefined
      ? await readWholeBody(request, reading)
      : await readDeclaredBody(request, length, reading),
  };
}

/**
 * Streams the request to the decoder and its answer back. A chunked body
 * that passes the limit or breaks its framing aborts the decoder's request:
 * before the decoder answered, the client gets the 413 or 400; after, the
 * answer is cut off (the decoder answered a request it never got whole), and
 * a warning says why.
 */
export async function passthroughRequest(
  deps: Deps,
  c: Context<AppEnv>,
  /** The body, when the caller had to read it whole first (SSRF checks). */
  read?: Uint8Array<ArrayBuffer>,
): Promise<Response> {
  const request = c.req.raw;
  ensureSendableMethod(request.method);
  ensureNotWebSocket(request.headers);
  const log = c.get("log");
  if (log.enabled(VERBOSITY_DEBUG)) {
    log.debug("proxying to decoder", {
      method: request.method,
      path: c.req.path,
    });
  }
  const reading = clientBodyReading(deps, c);
  const { limit, left } = reading;
  const { body, limited } = await outgoingBody(request, reading, read);
  const clientGone = c.get("clientGone");
  const signal = limited === undefined
    ? clientGone
    : AbortSignal.any([clientGone, limited.refused]);
  try {
    const response = await forwardToDecoder(deps.upstream, {
      hostPort: decoderHostPort(deps.config),
      pathAndQuery: pathAndQueryOf(request),
      // The first-byte timeout needs the body's `stream`, which passthrough never parses.
      watch: {
        firstByteMs: 0,
        idleMs: deps.config.streamIdleTimeout,
        log,
        access: c.get("observation").access,
      },
    }, {
      method: request.method,
      headers: buildUpstreamHeaders(request.headers, {
        clientIp: clientIpOf(c),
        // The runtime injects its own trace context when it traces (see tracing.ts).
        omit: c.get("observation").tracing.injects
          ? OMITTED_WHEN_TRACING
          : ROUTING_HEADERS,
      }),
      body,
      signal,
    });
    limited?.refused.addEventListener("abort", () => {
      const code = limited.refusal()?.code;
      const why = code === "request_body_too_large"
        ? "passed the limit"
        : "broke its framing";
      log.warn(
        `request body ${why} after the decoder answered: answer cut off`,
        { code, limit, status: response.status },
      );
    }, { once: true });
    return response;
  } catch (error) {
    // The runtime's own body stream broke inside fetch, where no reader of
    // ours saw it: the client left mid-body (see `decoderFailure`).
    if (error instanceof ProxyError && error.code === "client_disconnected") {
      left(error.cause);
    }
    // The client's answer is the refusal, not the decoder request it cut.
    throw limited?.refusal() ?? error;
  }
}

/** Who sent the request, for the SSRF denial log line. */
function originOf(c: Context<AppEnv>): RequestOrigin {
  const request = c.req.raw;
  return {
    log: c.get("log"),
    clientIp: clientIpOf(c),
    userAgent: request.headers.get("user-agent"),
    path: pathAndQueryOf(request),
  };
}

/**
 * Refuses, with a 403, a body `text` that tells the engines to dial an
 * address the SSRF allowlist does not admit; nothing with protection off.
 */
export async function admitBody(
  deps: Deps,
  c: Context<AppEnv>,
  text: string,
): Promise<void> {
  if (deps.allowlist?.enabled !== true) return;
  await admitBodyAddresses(deps.allowlist, text, originOf(c));
}

const utf8 = new TextDecoder();

/**
 * Passthrough with the body read whole (at most `-max-request-body-bytes`)
 * and checked by {@linkcode admitBody} before anything is sent: for SSRF
 * protection, on requests whose body an engine reads an address from.
 */
export async function passthroughChecked(
  deps: Deps,
  c: Context<AppEnv>,
): Promise<Response> {
  const bytes = await readWholeBody(c.req.raw, clientBodyReading(deps, c));
  await admitBody(deps, c, utf8.decode(bytes));
  return await passthroughRequest(deps, c, bytes);
}

/**
 * Paths the sidecar does not intercept on which an engine still reads an
 * address from the body: SGLang's native generate takes `bootstrap_host`.
 */
const ADDRESS_CHECKED_PATHS: ReadonlySet<string> = new Set(["/generate"]);

/** Handler for the catch-all route. */
export function createPassthroughHandler(deps: Deps): Handler<AppEnv> {
  return function passthrough(c) {
    if (
      deps.allowlist?.enabled === true && c.req.method === "POST" &&
      ADDRESS_CHECKED_PATHS.has(c.req.path)
    ) {
      return passthroughChecked(deps, c);
    }
    return passthroughRequest(deps, c);
  };
}
