/**
 * @module
 * Host names to addresses, through the system resolver (getaddrinfo: the
 * hosts file, then DNS), the one `fetch` uses, so `localhost.` and friends
 * resolve here as they would when dialled. Answers are cached briefly, and
 * failures more briefly still: the check must not add a DNS round trip to
 * every request, nor a name that does not resolve one to every request that
 * reaches it. Concurrent misses of one name share one lookup.
 */

import { type IpAddress, parseIpLiteral } from "./address.ts";

/** Looks a host name up; resolves with the address texts, in the resolver's order. */
export type LookupFunction = (host: string) => Promise<readonly string[]>;

/** Resolves hosts to canonical addresses. */
export interface Resolver {
  /** The addresses of `host` (one for an IP literal); rejects when the name does not resolve. */
  resolve(host: string): Promise<readonly IpAddress[]>;
}

/** Options of `createResolver`. */
export interface ResolverOptions {
  /** Replaces the system resolver (tests). */
  readonly lookup?: LookupFunction;
  /** How long an answer is reused; 0 disables the cache. */
  readonly ttlMs?: number;
  /** How long a failure is answered without a lookup; at most `ttlMs`. */
  readonly negativeTtlMs?: number;
  /** Clock in milliseconds (tests). */
  readonly now?: () => number;
}

/** Default cache lifetime: short enough that a pod's new address is seen within seconds. */
export const RESOLVE_TTL_MS = 5_000;
/** Default lifetime of a failure: a name that starts resolving is admitted soon after. */
export const RESOLVE_NEGATIVE_TTL_MS = 3_000;
/** Most names cached; past it the oldest is dropped. */
export const RESOLVE_MAX_NAMES = 1_024;

/** A cached answer, the addresses or the failure to answer again, and when it expires. */
type CacheEntry =
  | { readonly until: number; readonly addresses: readonly IpAddress[] }
  | { readonly until: number; readonly error: unknown };

async function lookupWithSystem(host: string): Promise<readonly string[]> {
  // Loaded on first use: node's DNS module costs memory a sidecar without names never needs.
  const { lookup } = await import("node:dns/promises");
  const answers = await lookup(host, { all: true, verbatim: true });
  return answers.map((answer) => answer.address);
}

/** Creates a resolver with a small time-bounded cache. */
export function createResolver(options: ResolverOptions = {}): Resolver {
  const lookup = options.lookup ?? lookupWithSystem;
  const ttlMs = options.ttlMs ?? RESOLVE_TTL_MS;
  const negativeTtlMs = Math.min(
    options.negativeTtlMs ?? RESOLVE_NEGATIVE_TTL_MS,
    ttlMs,
  );
  const now = options.now ?? Date.now;
  const cache = new Map<string, CacheEntry>();
  const inFlight = new Map<string, Promise<readonly IpAddress[]>>();

  function remember(key: string, entry: CacheEntry): void {
    cache.delete(key);
    // Oldest first out; names are few (pods, services), this only bounds a flood.
    if (cache.size >= RESOLVE_MAX_NAMES) {
      const oldest = cache.keys().next();
      if (!oldest.done) cache.delete(oldest.value);
    }
    cache.set(key, entry);
  }

  async function lookupAddresses(
    host: string,
    key: string,
  ): Promise<readonly IpAddress[]> {
    const addresses: IpAddress[] = [];
    for (const text of await lookup(key)) {
      const address = parseIpLiteral(text);
      if (address !== undefined) addresses.push(address);
    }
    if (addresses.length === 0) {
      throw new Error(`host name "${host}" has no IP address`);
    }
    return addresses;
  }

  async function resolveName(
    host: string,
    key: string,
  ): Promise<readonly IpAddress[]> {
    try {
      const addresses = await lookupAddresses(host, key);
      if (ttlMs > 0) remember(key, { until: now() + ttlMs, addresses });
      return addresses;
    } catch (error) {
      if (negativeTtlMs > 0) {
        remember(key, { until: now() + negativeTtlMs, error });
      }
      throw error;
    }
  }

  return {
    resolve(host) {
      const literal = parseIpLiteral(host);
      if (literal !== undefined) return Promise.resolve([literal]);
      const key = host.toLowerCase();
      const cached = cache.get(key);
      if (cached !== undefined && now() < cached.until) {
        return "error" in cached
          ? Promise.reject(cached.error)
          : Promise.resolve(cached.addresses);
      }
      // Requests that miss the same name together wait on one lookup.
      const pending = inFlight.get(key);
      if (pending !== undefined) return pending;
      const started = resolveName(host, key).finally(() =>
        inFlight.delete(key)
      );
      inFlight.set(key, started);
      return started;
    },
  };
}
