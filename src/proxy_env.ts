/**
 * @module
 * Keeps loopback traffic off an HTTP proxy named in the environment, as the Go
 * sidecar does. Its transports use Go's `http.ProxyFromEnvironment`, which never
 * proxies `localhost` or a loopback address; Deno's `fetch` reads the same
 * variables but proxies those too, so with `HTTP_PROXY` set every request to
 * the local decoder (`127.0.0.1:<model-server-port>`) would go to the proxy.
 */

import type { Env } from "./flag_table.ts";

/** Variables that make Deno's `fetch` use a proxy (Go reads all but `ALL_PROXY`). */
export const PROXY_ENV_VARS = [
  "HTTP_PROXY",
  "http_proxy",
  "HTTPS_PROXY",
  "https_proxy",
  "ALL_PROXY",
  "all_proxy",
] as const;

/** Where hosts that bypass the proxy are listed, in the order Go reads them. */
export const NO_PROXY_ENV_VARS = ["NO_PROXY", "no_proxy"] as const;

/** What Go's proxy selection always bypasses, in `NO_PROXY` syntax. */
const LOOPBACK = ["localhost", "127.0.0.0/8", "::1"] as const;

/**
 * The `NO_PROXY` value that adds loopback to the hosts `env` already exempts,
 * or undefined when no proxy is set (nothing to change) or loopback is listed.
 */
export function buildLoopbackNoProxy(env: Env): string | undefined {
  if (!PROXY_ENV_VARS.some((name) => (env[name] ?? "") !== "")) {
    return undefined;
  }
  // Go takes the first non-empty of NO_PROXY and no_proxy.
  const current = NO_PROXY_ENV_VARS.map((name) => env[name] ?? "")
    .find((value) => value !== "") ?? "";
  const listed = new Set(
    current.split(",").map((entry) => entry.trim().toLowerCase()),
  );
  const missing = LOOPBACK.filter((entry) => !listed.has(entry));
  if (missing.length === 0) return undefined;
  return [current, ...missing].filter((entry) => entry !== "").join(",");
}
