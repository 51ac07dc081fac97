/**
 * @module
 * Experiment (not shipped): a minimal P/D and passthrough proxy built the way
 * the sidecar is (Hono on `Deno.serve`, or bare `Deno.serve` for reference),
 * whose upstream HTTP client is chosen with `--client`, so the clients can be
 * compared under the same load on the same upstreams. It keeps what the
 * sidecar's hot path must keep: request and response bodies streamed, the
 * client's abort signal passed on, hop-by-hop headers dropped.
 *
 *   deno run --allow-net --allow-env --allow-read scripts/bench/experiments/proxy.ts \
 *     --client fetch-pool --framework hono --port 8000 --decoder-port 8001
 */

import { Hono } from "hono";
import { parseArgs } from "node:util";
import { buildDecodeBody, PREFILL_KV_TRANSFER_PARAMS } from "../pd_client.ts";
import { type ClientName, createClient, type ProxyClient } from "./clients.ts";

const PREFILLER_HEADER = "x-prefiller-host-port";
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "proxy-connection",
  "host",
  "content-length",
  PREFILLER_HEADER,
]);
const PREFILL_KV = JSON.stringify(PREFILL_KV_TRANSFER_PARAMS);

/** Request headers for an upstream: the client's, less hop-by-hop and routing ones. */
export function upstreamHeaders(incoming: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of incoming) {
    if (!HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function pathOf(url: string): string {
  return url.slice(url.indexOf("/", url.indexOf("//") + 2));
}

/** Prefill body: the client's text with token limits 1, no streaming, and the NIXL request. */
export function prefillBody(text: string): string {
  const end = text.lastIndexOf("}");
  return `${
    text.slice(0, end)
  },"stream":false,"max_tokens":1,"max_completion_tokens":1,"min_tokens":1,"kv_transfer_params":${PREFILL_KV}}`;
}

/** Serves one request: P/D when the prefiller header is there, passthrough otherwise. */
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
  // Parsed once, as the sidecar validates the body.
  JSON.parse(text);
  const reply = await client.text(`http://${prefiller}${path}`, {
    method: "POST",
    headers,
    body: prefillBody(text),
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
      client: { type: "string", default: "fetch-pool" },
      framework: { type: "string", default: "hono" },
      port: { type: "string", default: "0" },
      "decoder-port": { type: "string" },
      "reuse-port": { type: "boolean", default: false },
    },
  });
  const client = await createClient(values.client as ClientName);
  const decoder = `http://127.0.0.1:${values["decoder-port"]}`;
  let handler: (request: Request) => Response | Promise<Response>;
  if (values.framework === "bare") {
    handler = (request) => proxy(client, request, decoder);
  } else {
    const app = new Hono();
    app.all("*", (c) => proxy(client, c.req.raw, decoder));
    handler = app.fetch;
  }
  Deno.serve({
    hostname: "127.0.0.1",
    port: Number(values.port),
    // Several processes on one port, the kernel spreading connections (Linux SO_REUSEPORT).
    reusePort: values["reuse-port"],
    onListen({ port }) {
      Deno.stdout.writeSync(
        new TextEncoder().encode(`${JSON.stringify({ port })}\n`),
      );
    },
  }, handler);
}
