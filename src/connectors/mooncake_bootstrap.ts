/**
 * @module
 * The Mooncake bootstrap server a vLLM prefiller runs next to its API: `GET
 * /query` lists its engines per data-parallel rank (vllm-wire.md §3.5), and
 * a bounded cache keeps the answer per server so a request costs no extra
 * round trip.
 */

import { type BoundedMap, createBoundedMap } from "../bounded_map.ts";
import { startDeadline } from "../deadline.ts";
import { ProxyError } from "../errors.ts";
import { PATH_MOONCAKE_QUERY } from "../protocol/fields.ts";
import { isJsonObject } from "../protocol/request.ts";
import {
  type UpstreamClient,
  UpstreamError,
  type WholeResponse,
} from "../upstream/client.ts";

/** One engine of a prefiller: its data-parallel rank (the key `/query` uses) and engine id. */
export interface MooncakeEngine {
  readonly dpRank: string;
  readonly engineId: string;
}

/** Options of `queryBootstrap`. */
export interface BootstrapQueryOptions {
  /** The client's signal: a client that leaves cancels the query. */
  readonly signal: AbortSignal;
  /** The query fails when no answer came within this many milliseconds. */
  readonly timeoutMs: number;
}

/** Stable code of every bootstrap failure. */
const BOOTSTRAP_ERROR_CODE = "mooncake_bootstrap_failed";

/** How long the query may take, as the Go sidecar allows. */
export const BOOTSTRAP_QUERY_TIMEOUT_MS = 5000;

/**
 * Asks the bootstrap server at `baseUrl` (`http://host:port`) for its
 * engines. Throws a 502 `ProxyError` naming the server when it cannot be
 * reached in time or answers anything but engines.
 */
export async function queryBootstrap(
  upstream: UpstreamClient,
  baseUrl: string,
  options: BootstrapQueryOptions,
): Promise<MooncakeEngine[]> {
  const url = `${baseUrl}${PATH_MOONCAKE_QUERY}`;
  const deadline = startDeadline(options.signal, options.timeoutMs);
  let reply: WholeResponse;
  try {
    reply = await upstream.sendAndRead(url, {
      method: "GET",
      headers: [],
      signal: deadline.signal,
    });
  } catch (error) {
    const detail = deadline.expired
      ? `no answer within ${options.timeoutMs} ms`
      : error instanceof UpstreamError
      ? error.detail
      : String(error);
    throw new ProxyError(
      502,
      `Cannot query Mooncake bootstrap server "${url}": ${detail}`,
      { code: BOOTSTRAP_ERROR_CODE, cause: error },
    );
  } finally {
    deadline.clear();
  }
  if (reply.status < 200 || reply.status >= 300) {
    throw new ProxyError(
      502,
      `Mooncake bootstrap server "${url}" answered ${reply.status}`,
      { code: BOOTSTRAP_ERROR_CODE },
    );
  }
  const engines = parseEngines(reply.text);
  if (engines.length === 0) {
    throw new ProxyError(
      502,
      `Mooncake bootstrap server "${url}" answered no engine_id: ${
        reply.text.slice(0, 200)
      }`,
      { code: BOOTSTRAP_ERROR_CODE },
    );
  }
  return engines;
}

/** The engines of a `/query` answer: `{"<dp_rank>": {"engine_id": "<id>", …}, …}`. */
export function parseEngines(text: string): MooncakeEngine[] {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return [];
  }
  if (!isJsonObject(body)) return [];
  const engines: MooncakeEngine[] = [];
  for (const [dpRank, entry] of Object.entries(body)) {
    if (isJsonObject(entry) && typeof entry.engine_id === "string") {
      engines.push({ dpRank, engineId: entry.engine_id });
    }
  }
  return engines;
}

/** Engines per bootstrap server, least recently used dropped first. */
export type EngineCache = BoundedMap<readonly MooncakeEngine[]>;

/** The Go sidecar's bound on cached prefillers. */
export const ENGINE_CACHE_LIMIT = 1024;

/** Creates an empty cache of at most `limit` servers. */
export function createEngineCache(limit = ENGINE_CACHE_LIMIT): EngineCache {
  return createBoundedMap(limit, { touchOnGet: true });
}
