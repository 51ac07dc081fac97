/**
 * @module
 * Host names to addresses, through the system resolver (getaddrinfo: the
 * hosts file, then DNS), the one `fetch` uses, so `localhost.` and friends
 * resolve here as they would when dialled. Answers are cached briefly: the
 * check must not add a DNS round trip to every request.
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
  /** Clock in milliseconds (tests). */
  readonly now?: () => number;
}

/** Default cache lifetime: short enough that a pod's new address is seen within seconds. */
export const RESOLVE_TTL_MS = 5_000;
const MAX_CACHED = 1_024;

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
  const now = options.now ?? Date.now;
  const cache = new Map<string, { at: number; addresses: IpAddress[] }>();
  return {
    async resolve(host) {
      const literal = parseIpLiteral(host);
      if (literal !== undefined) return [literal];
      const key = host.toLowerCase();
      const cached = cache.get(key);
      if (cached !== undefined && now() - cached.at < ttlMs) {
        return cached.addresses;
      }
      const addresses: IpAddress[] = [];
      for (const text of await lookup(key)) {
        const address = parseIpLiteral(text);
        if (address !== undefined) addresses.push(address);
      }
      if (addresses.length === 0) {
        throw new Error(`host name "${host}" has no IP address`);
      }
      if (ttlMs > 0) {
        // Oldest first out; names are few (pods, services), this only bounds a flood.
        if (cache.size >= MAX_CACHED) {
          const oldest = cache.keys().next();
          if (!oldest.done) cache.delete(oldest.value);
        }
        cache.set(key, { at: now(), addresses });
      }
      return addresses;
    },
  };
}
