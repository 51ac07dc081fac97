/**
 * @module
 * Host names to addresses, through the system resolver (getaddrinfo: the
 * hosts file, then DNS), the one `fetch` uses, so `localhost.` and friends
 * resolve here as they would when dialled. Answers are cached briefly, and
 * failures more briefly still: the check must not add a DNS round trip to
 * every request, nor a name that does not resolve one to every request that
 * reaches it. Concurrent misses of one name share one lookup.
 */

import { settleWithin } from "../settle_within.ts";
import { type BoundedMap, createBoundedMap } from "../bounded_map.ts";
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
  /** Longest a lookup is waited for; {@linkcode RESOLVE_TIMEOUT_MS} by default. */
  readonly timeoutMs?: number;
}

/** Default cache lifetime: short enough that a pod's new address is seen within seconds. */
export const RESOLVE_TTL_MS = 5_000;
/** Default lifetime of a failure: a name that starts resolving is admitted soon after. */
export const RESOLVE_NEGATIVE_TTL_MS = 3_000;
/**
 * Longest a lookup is waited for before the name counts as not resolving:
 * every request naming it waits on the one lookup, so a DNS server that never
 * answers must not hold them all (glibc's own default is 5 s per try).
 */
export const RESOLVE_TIMEOUT_MS = 10_000;
/** Most names whose addresses are cached; past it the oldest is dropped. */
export const RESOLVE_MAX_NAMES = 1_024;
/**
 * Most failed names cached, apart from the answers: names that do not resolve
 * come from clients' headers, so a flood of them must not push out the names
 * that do.
 */
export const RESOLVE_MAX_FAILED_NAMES = 256;

/** A cached answer or failure, and when it expires. */
interface CacheEntry<T> {
  readonly until: number;
  readonly value: T;
}

/** The value of `key` in `cache` unless it expired at `now`. */
function fresh<T>(
  cache: BoundedMap<CacheEntry<T>>,
  key: string,
  now: number,
): T | undefined {
  const entry = cache.get(key);
  return entry !== undefined && now < entry.until ? entry.value : undefined;
}

async function lookupWithSystem(host: string): Promise<readonly string[]> {
  // Loaded on first use: node's DNS module costs memory a sidecar without names never needs.
  const { lookup } = await import("node:dns/promises");
  const answers = await lookup(host, { all: true, verbatim: true });
  return answers.map((answer) => answer.address);
}

/** Creates a resolver with a small time-bounded cache. */
export function createResolver(options: ResolverOptions = {}): Resolver {
  const lookup = options.lookup ?? lookupWithSystem;
  const timeoutMs = options.timeoutMs ?? RESOLVE_TIMEOUT_MS;
  const ttlMs = options.ttlMs ?? RESOLVE_TTL_MS;
  // A cache turned off (ttlMs 0) keeps no failures either.
  const negativeTtlMs = Math.min(RESOLVE_NEGATIVE_TTL_MS, ttlMs);
  const now = options.now ?? Date.now;
  const answers = createBoundedMap<CacheEntry<readonly IpAddress[]>>(
    RESOLVE_MAX_NAMES,
  );
  // The failure is kept to answer again; wrapped, so an `undefined` thrown is still a hit.
  const failures = createBoundedMap<CacheEntry<{ readonly error: unknown }>>(
    RESOLVE_MAX_FAILED_NAMES,
  );
  const inFlight = new Map<string, Promise<readonly IpAddress[]>>();

  async function lookupWithin(key: string): Promise<readonly string[]> {
    const answer = await settleWithin(lookup(key), timeoutMs);
    if (answer === undefined) {
      throw new Error(`no answer within ${timeoutMs} ms`);
    }
    return answer;
  }

  async function lookupAddresses(
    host: string,
    key: string,
  ): Promise<readonly IpAddress[]> {
    const addresses: IpAddress[] = [];
    for (const text of await lookupWithin(key)) {
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
      failures.delete(key);
      if (ttlMs > 0) {
        answers.set(key, { until: now() + ttlMs, value: addresses });
      }
      return addresses;
    } catch (error) {
      answers.delete(key);
      if (negativeTtlMs > 0) {
        failures.set(key, { until: now() + negativeTtlMs, value: { error } });
      }
      throw error;
    }
  }

  return {
    resolve(host) {
      const literal = parseIpLiteral(host);
      if (literal !== undefined) return Promise.resolve([literal]);
      const key = host.toLowerCase();
      const at = now();
      const addresses = fresh(answers, key, at);
      if (addresses !== undefined) return Promise.resolve(addresses);
      const failure = fresh(failures, key, at);
      if (failure !== undefined) return Promise.reject(failure.error);
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
