/**
 * @module
 * Every request the sidecar does not disaggregate goes to the local vLLM
 * unchanged: method, path, query, end-to-end headers and body, streamed both
 * ways with the client's abort signal.
 */

import type { Context, Handler } from "hono";
import { decoderHostPort } from "../config.ts";
import type { AppEnv, Deps, ServeBindings } from "../context.ts";
import { VERBOSITY_DEBUG } from "../log.ts";
import { ROUTING_HEADERS } from "../protocol/fields.ts";
import { buildUpstreamHeaders } from "../upstream/headers.ts";
import { forwardToDecoder } from "../upstream/relay.ts";

/** Path and query of the request, as sent. */
export function pathAndQueryOf(request: Request): string {
  const url = request.url;
  const start = url.indexOf("/", url.indexOf("//") + 2);
  return start === -1 ? "/" : url.slice(start);
}

/** Client address from `Deno.serve`'s connection info, when there is one. */
export function clientIpOf(c: Context<AppEnv>): string | undefined {
  // c.env is undefined when the app is called without connection info.
  const env: ServeBindings | undefined = c.env;
  return env?.remoteAddr?.hostname;
}

/** Streams the request to the decoder and its answer back. */
export function passthroughRequest(
  deps: Deps,
  c: Context<AppEnv>,
): Promise<Response> {
  const request = c.req.raw;
  const log = c.get("log");
  if (log.enabled(VERBOSITY_DEBUG)) {
    log.debug("proxying to decoder", {
      method: request.method,
      path: c.req.path,
    });
  }
  return forwardToDecoder(deps.upstream, {
    hostPort: decoderHostPort(deps.config),
    pathAndQuery: pathAndQueryOf(request),
    // The first-byte timeout needs the body's `stream`, which passthrough never parses.
    watch: { firstByteMs: 0, idleMs: deps.config.streamIdleTimeout, log },
  }, {
    method: request.method,
    headers: buildUpstreamHeaders(request.headers, {
      clientIp: clientIpOf(c),
      omit: ROUTING_HEADERS,
    }),
    body: request.body,
    signal: request.signal,
  });
}

/** Handler for the catch-all route. */
export function createPassthroughHandler(deps: Deps): Handler<AppEnv> {
  return function passthrough(c) {
    return passthroughRequest(deps, c);
  };
}
