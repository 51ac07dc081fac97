/**
 * @module
 * Experiment (not shipped): the upstream HTTP clients a Deno proxy can use,
 * behind one interface, so `proxy.ts` can be measured with each. All of them
 * stream request and response bodies, take an `AbortSignal` and can do TLS.
 */

import http from "node:http";
import type { Readable } from "node:stream";
import {
  createFetchClient,
  createPooledFetchClient,
  type ProxyClient,
  RESPONSE_HOP_BY_HOP,
  type UpstreamInit,
} from "../floor_proxy.ts";

/** The client options measured. */
export type ClientName =
  | "fetch-default"
  | "fetch-pool"
  | "fetch-http1"
  | "node-http"
  | "undici-request"
  | "undici-fetch"
  | "hybrid";

/** Every client option, in the order they are reported. */
export const CLIENT_NAMES: readonly ClientName[] = [
  "fetch-default",
  "fetch-pool",
  "fetch-http1",
  "node-http",
  "undici-request",
  "undici-fetch",
  "hybrid",
];

function fromNodeHeaders(
  upstream: Record<string, string | string[] | undefined>,
): Headers {
  const out = new Headers();
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || RESPONSE_HOP_BY_HOP.has(name)) continue;
    if (Array.isArray(value)) { for (const v of value) out.append(name, v); }
    else out.append(name, value);
  }
  return out;
}

/** A web stream over a Node readable, with backpressure (pause when the queue is full). */
export function toWebStream(readable: Readable): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      readable.on("data", (chunk: Uint8Array) => {
        controller.enqueue(chunk);
        if ((controller.desiredSize ?? 1) <= 0) readable.pause();
      });
      readable.on("end", () => controller.close());
      readable.on("error", (error) => controller.error(error));
    },
    pull() {
      readable.resume();
    },
    cancel() {
      readable.destroy();
    },
  }, { highWaterMark: 65536, size: (chunk) => chunk.byteLength });
}

function nodeHttpClient(): ProxyClient {
  const agent = new http.Agent({
    keepAlive: true,
    maxSockets: Infinity,
    maxFreeSockets: 1024,
  });
  function send(
    url: string,
    init: UpstreamInit,
  ): Promise<http.IncomingMessage> {
    const { promise, resolve, reject } = Promise.withResolvers<
      http.IncomingMessage
    >();
    const target = new URL(url);
    const request = http.request({
      agent,
      hostname: target.hostname,
      port: target.port,
      path: target.pathname + target.search,
      method: init.method,
      headers: init.headers,
      signal: init.signal,
    }, resolve);
    request.on("error", reject);
    if (typeof init.body === "string" || init.body === null) {
      request.end(init.body ?? undefined);
    } else {
      void (async () => {
        for await (const chunk of init.body as ReadableStream<Uint8Array>) {
          request.write(chunk);
        }
        request.end();
      })().catch((error) => request.destroy(error));
    }
    return promise;
  }
  return {
    async stream(url, init) {
      const response = await send(url, init);
      return new Response(toWebStream(response), {
        status: response.statusCode ?? 502,
        headers: fromNodeHeaders(response.headers),
      });
    },
    async text(url, init) {
      const response = await send(url, init);
      response.setEncoding("utf8");
      let text = "";
      for await (const chunk of response) text += chunk;
      return text;
    },
  };
}

async function undiciRequestClient(): Promise<ProxyClient> {
  const undici = await import("undici");
  const agent = new undici.Agent({
    keepAliveTimeout: 4000,
    keepAliveMaxTimeout: 4000,
  });
  function send(url: string, init: UpstreamInit) {
    const target = new URL(url);
    return agent.request({
      origin: target.origin,
      path: target.pathname + target.search,
      method: init.method as "POST",
      headers: init.headers,
      body: init.body as string | null,
      signal: init.signal,
    });
  }
  return {
    async stream(url, init) {
      const response = await send(url, init);
      return new Response(toWebStream(response.body), {
        status: response.statusCode,
        headers: fromNodeHeaders(response.headers),
      });
    },
    async text(url, init) {
      return await (await send(url, init)).body.text();
    },
  };
}

async function undiciFetchClient(): Promise<ProxyClient> {
  const undici = await import("undici");
  const dispatcher = new undici.Agent({
    keepAliveTimeout: 4000,
    keepAliveMaxTimeout: 4000,
  });
  const send = (url: string, init: UpstreamInit) =>
    undici.fetch(url, {
      method: init.method,
      headers: init.headers,
      body: init.body,
      signal: init.signal,
      redirect: "manual",
      dispatcher,
      ...(init.body instanceof ReadableStream ? { duplex: "half" } : {}),
    });
  return {
    async stream(url, init) {
      const response = await send(url, init);
      const headers = new Headers();
      response.headers.forEach((value, name) => {
        if (!RESPONSE_HOP_BY_HOP.has(name)) headers.append(name, value);
      });
      return new Response(response.body as ReadableStream<Uint8Array> | null, {
        status: response.status,
        headers,
      });
    },
    async text(url, init) {
      return await (await send(url, init)).text();
    },
  };
}

/** Creates the client named `name`. */
export async function createClient(name: ClientName): Promise<ProxyClient> {
  switch (name) {
    case "fetch-default":
      return createFetchClient();
    case "fetch-pool":
      return createPooledFetchClient();
    case "fetch-http1":
      return createFetchClient(
        Deno.createHttpClient({
          http1: true,
          http2: false,
          poolMaxIdlePerHost: 1024,
          poolIdleTimeout: 4000,
        }),
      );
    case "node-http":
      return nodeHttpClient();
    case "undici-request":
      return await undiciRequestClient();
    case "undici-fetch":
      return await undiciFetchClient();
    case "hybrid": {
      // Whole-body reads (the prefill leg) on node:http, streamed answers on fetch.
      const streaming = createPooledFetchClient();
      const whole = nodeHttpClient();
      return { stream: streaming.stream, text: whole.text };
    }
  }
  throw new Error(`Unknown client "${name}"`);
}
