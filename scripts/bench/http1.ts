/**
 * @module
 * The benchmark clients' HTTP/1.1 requests: `node:http` with a keep-alive
 * agent. Under Deno it costs less CPU per request than `fetch` (measured:
 * about 37k against 26k requests/s on one core), so the client disturbs the
 * process under test less on a small machine.
 */

import http from "node:http";

/** A finished request: status and, when asked for, the body text. */
export interface Http1Answer {
  readonly status: number;
  readonly text: string;
}

/** Options of `post`. */
export interface PostOptions {
  readonly agent: http.Agent;
  readonly headers: Readonly<Record<string, string>>;
  /** Keep the body text (otherwise it is read and dropped). */
  readonly keepBody: boolean;
  /** Give up (reject) when the socket is silent this long. */
  readonly timeoutMs?: number;
}

/** A keep-alive agent, without a socket limit unless `maxSockets` (per host) is given. */
export function createAgent(maxSockets = Infinity): http.Agent {
  return new http.Agent({
    keepAlive: true,
    maxSockets,
    maxFreeSockets: 4096,
  });
}

/** POSTs `body` to `url` and reads the whole answer. */
export function post(
  url: URL,
  body: string,
  options: PostOptions,
): Promise<Http1Answer> {
  const { promise, resolve, reject } = Promise.withResolvers<Http1Answer>();
  const request = http.request({
    agent: options.agent,
    hostname: url.hostname,
    port: url.port,
    path: url.pathname + url.search,
    method: "POST",
    headers: {
      ...options.headers,
      "content-length": String(Buffer.byteLength(body)),
    },
  }, (response) => {
    const status = response.statusCode ?? 0;
    if (!options.keepBody) {
      response.on("end", () => resolve({ status, text: "" }));
      response.on("error", reject);
      response.resume();
      return;
    }
    let text = "";
    response.setEncoding("utf8");
    response.on("data", (chunk: string) => text += chunk);
    response.on("end", () => resolve({ status, text }));
    response.on("error", reject);
  });
  request.on("error", reject);
  if (options.timeoutMs !== undefined) {
    const ms = options.timeoutMs;
    request.setTimeout(
      ms,
      () => request.destroy(new Error(`No answer within ${ms} ms`)),
    );
  }
  request.end(body);
  return promise;
}

/** Writes all of `bytes` to a raw `conn` (the benchmark's socket-level clients and servers). */
export async function writeAll(
  conn: Deno.Conn,
  bytes: Uint8Array,
): Promise<void> {
  for (let sent = 0; sent < bytes.length;) {
    sent += await conn.write(bytes.subarray(sent));
  }
}

/** `--header "name: value"` arguments of the benchmark's own clients. */
export function headerArgs(headers: Record<string, string>): string[] {
  return Object.entries(headers).flatMap((
    [name, value],
  ) => ["--header", `${name}: ${value}`]);
}

/** The headers of `--header "name: value"` arguments: names lower-cased, both trimmed. */
export function parseHeaderArgs(
  values: readonly string[],
): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const value of values) {
    const colon = value.indexOf(":");
    headers[value.slice(0, colon).trim().toLowerCase()] = value.slice(colon + 1)
      .trim();
  }
  return headers;
}
