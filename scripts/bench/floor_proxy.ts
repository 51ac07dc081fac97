/**
 * @module
 * The runtime floor: the least a P/D proxy on `Deno.serve` + `fetch` can
 * cost. Bare `Deno.serve` (no router, no middleware), one pooled
 * `Deno.createHttpClient` for both legs, the prefill answer read whole and
 * the decode answer streamed back, and nothing else of the sidecar's work
 * (no validation beyond one `JSON.parse`, no logging, no metrics). The bench
 * runs it beside the sidecar, with the same V8 flags, so each target shows
 * how much of the sidecar's gap is the runtime's. It keeps what any proxy's
 * hot path must keep: bodies streamed, the client's abort passed on,
 * hop-by-hop headers dropped. Prints `{"port":N}` once listening.
 *
 *   deno run --allow-net scripts/bench/floor_proxy.ts --decoder-port 8001 [--port 8000]
 */

import { parseArgs } from "node:util";
import {
  buildDecodeBody,
  PREFILL_KV_TRANSFER_PARAMS,
  prefillBodyOf,
} from "./pd_client.ts";

/** The routing header that makes a request P/D. */
const PREFILLER_HEADER = "x-prefiller-host-port";
/** The request field a prefill must not carry (vllm-wire.md §1.4). */
const STREAM_OPTIONS = "stream_options";
/** Response headers that belong to one connection, not to the answer. */
export const RESPONSE_HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "proxy-connection",
]);
/** Request headers not passed on: those, the ones fetch sets, and the routing header. */
const REQUEST_HOP_BY_HOP = new Set([
  ...RESPONSE_HOP_BY_HOP,
  "host",
  "content-length",
  PREFILLER_HEADER,
]);
const PREFILL_KV = JSON.stringify(PREFILL_KV_TRANSFER_PARAMS);

/** One upstream request. */
export interface UpstreamInit {
  readonly method: string;
  readonly headers: Record<string, string>;
  readonly body: string | ReadableStream<Uint8Array> | null;
  readonly signal: AbortSignal;
}

/** What a proxy needs from its upstream client. */
export interface ProxyClient {
  /** Sends the request; the answer's body streams to the proxy's client. */
  stream(url: string, init: UpstreamInit): Promise<Response>;
  /** Sends the request and reads the whole answer (the prefill leg). */
  text(url: string, init: UpstreamInit): Promise<string>;
}

function responseHeaders(upstream: Headers): Headers {
  const out = new Headers();
  for (const [name, value] of upstream) {
    if (!RESPONSE_HOP_BY_HOP.has(name)) out.append(name, value);
  }
  return out;
}

/** A `ProxyClient` on `fetch`, through `client`'s pool when given. */
export function createFetchClient(client?: Deno.HttpClient): ProxyClient {
  const send = (url: string, init: UpstreamInit) =>
    fetch(url, {
      ...init,
      redirect: "manual",
      ...(client === undefined ? {} : { client }),
    });
  return {
    async stream(url, init) {
      const response = await send(url, init);
      return new Response(response.body, {
        status: response.status,
        headers: responseHeaders(response.headers),
      });
    },
    async text(url, init) {
      return await (await send(url, init)).text();
    },
  };
}

/** The floor's client: `fetch` on one pool, idle connections closed before vLLM's 5 s keep-alive does. */
export function createPooledFetchClient(): ProxyClient {
  return createFetchClient(
    Deno.createHttpClient({ poolMaxIdlePerHost: 1024, poolIdleTimeout: 4000 }),
  );
}

/** Request headers for an upstream: the client's, less hop-by-hop and routing ones. */
function upstreamHeaders(incoming: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of incoming) {
    if (!REQUEST_HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function pathOf(url: string): string {
  return url.slice(url.indexOf("/", url.indexOf("//") + 2));
}

function isObject(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Prefill body: the client's text with token limits 1, no streaming, and the
 * NIXL request. A request carrying `stream_options` (a streaming one) is
 * rebuilt from `request`, its parsed text, without them, as the sidecar and
 * the bench's client send it: vLLM rejects them unless `stream` is true.
 * Any other is edited as text, the cheaper way.
 */
export function prefillBody(text: string, request: unknown): string {
  if (isObject(request) && STREAM_OPTIONS in request) {
    return prefillBodyOf(request);
  }
  const end = text.lastIndexOf("}");
  return `${
    text.slice(0, end)
  },"stream":false,"max_tokens":1,"max_completion_tokens":1,"min_tokens":1,"kv_transfer_params":${PREFILL_KV}}`;
}

/** Serves one request: P/D when the prefiller header is there, passthrough to `decoder` otherwise. */
export async function proxy(
  client: ProxyClient,
  request: Request,
  decoder: string,
): Promise<Response> {
  const path = pathOf(request.url);
  const headers = upstreamHeaders(request.headers);
  const prefiller = request.headers.get(PREFILLER_HEADER);
  if (prefiller === null) {
    return await client.stream(`${decoder}${path}`, {
      method: request.method,
      headers,
      body: request.body,
      signal: request.signal,
    });
  }
  const text = await request.text();
  // Parsed once, as any proxy that reads the body validates it.
  const parsed: unknown = JSON.parse(text);
  const reply = await client.text(`http://${prefiller}${path}`, {
    method: "POST",
    headers,
    body: prefillBody(text, parsed),
    signal: request.signal,
  });
  return await client.stream(`${decoder}${path}`, {
    method: "POST",
    headers,
    body: buildDecodeBody(text, reply),
    signal: request.signal,
  });
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "0" },
      "decoder-port": { type: "string" },
    },
  });
  if (values["decoder-port"] === undefined) {
    Deno.stderr.writeSync(
      new TextEncoder().encode('The flag "--decoder-port" is required\n'),
    );
    Deno.exit(2);
  }
  const client = createPooledFetchClient();
  const decoder = `http://127.0.0.1:${values["decoder-port"]}`;
  Deno.serve({
    hostname: "127.0.0.1",
    port: Number(values.port),
    // The sidecar's listen queue (src/server.ts LISTEN_BACKLOG): with Deno's
    // default of 511 a 2,000-connection burst overflows it and wrk's retried
    // SYNs would be charged to the runtime.
    tcpBacklog: 4096,
    onListen({ port }) {
      Deno.stdout.writeSync(
        new TextEncoder().encode(`${JSON.stringify({ port })}\n`),
      );
    },
  }, (request) => proxy(client, request, decoder));
}
