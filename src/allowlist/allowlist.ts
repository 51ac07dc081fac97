/**
 * @module
 * The SSRF allowlist: which upstreams the routing headers may send the
 * sidecar to. Targets are resolved to addresses first and the addresses are
 * checked (the pool's ready pods on its target ports, and `-allowed-prefillers`),
 * and an admitted target is dialled at the address that was checked, so a
 * name cannot resolve one way for the check and another for the connection.
 */

import { ProxyError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import { type IpAddress, isUnspecified } from "./address.ts";
import { joinHostPort } from "../upstream/target.ts";
import type { Resolver } from "./resolve.ts";
import {
  formatStaticEntry,
  isAllowedByStaticList,
  type StaticEntry,
} from "./static_list.ts";

/** Members of the InferencePool as last seen: ready pods' addresses and the pool's target ports. */
export interface PoolMembers {
  /** Whether `address:port` is a ready pod of the pool on one of its target ports. */
  has(address: IpAddress, port: number): boolean;
  /** Whether `address` is a ready pod of the pool, whatever the port. */
  hasAddress(address: IpAddress): boolean;
}

/** The answer for one target. */
export type TargetVerdict =
  | {
    readonly allowed: true;
    /** `ip:port` to connect to (the target unchanged when filtering is off). */
    readonly connectHostPort: string;
  }
  | { readonly allowed: false; readonly reason: string };

/** Checks upstream targets named by request headers. */
export interface Allowlist {
  /** False when neither the pool nor a static list is configured: everything is admitted. */
  readonly enabled: boolean;
  /** Resolves and checks `target`; never throws. */
  checkTarget(target: UpstreamTarget): Promise<TargetVerdict>;
  /**
   * Whether an engine may be told to dial `address` on any port: a pool pod,
   * or an `-allowed-prefillers` entry's address whatever its port. The ports
   * engines dial each other on (NIXL side channel, bootstrap, P2P) are not
   * the pool's target ports, so only the host can be checked.
   */
  admitsAddress(address: IpAddress): Promise<boolean>;
}

/** Options of `createAllowlist`. */
export interface AllowlistOptions {
  readonly entries: readonly StaticEntry[];
  /** The InferencePool's members, when `-enable-ssrf-protection` is on. */
  readonly pool?: PoolMembers | undefined;
  readonly resolver: Resolver;
}

/** An allowlist that admits everything: SSRF protection off, as in the Go sidecar by default. */
export const OPEN_ALLOWLIST: Allowlist = {
  enabled: false,
  checkTarget: (target) =>
    Promise.resolve({ allowed: true, connectHostPort: target.hostPort }),
  admitsAddress: () => Promise.resolve(true),
};

/** Creates the allowlist from its sources; admits everything when there are none. */
export function createAllowlist(options: AllowlistOptions): Allowlist {
  const { entries, pool, resolver } = options;
  if (entries.length === 0 && pool === undefined) return OPEN_ALLOWLIST;
  async function isAllowed(address: IpAddress, port: number): Promise<boolean> {
    if (pool?.has(address, port)) return true;
    return await isAllowedByStaticList(entries, address, port, resolver);
  }
  return {
    enabled: true,
    async admitsAddress(address) {
      if (isUnspecified(address)) return false;
      if (pool?.hasAddress(address)) return true;
      return await isAllowedByStaticList(entries, address, undefined, resolver);
    },
    async checkTarget(target) {
      let addresses: readonly IpAddress[];
      try {
        addresses = await resolver.resolve(target.host);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        return { allowed: false, reason: `cannot resolve: ${reason}` };
      }
      for (const address of addresses) {
        // 0.0.0.0 and :: are dialled as this host: never a prefiller.
        if (isUnspecified(address)) continue;
        if (await isAllowed(address, target.port)) {
          return {
            allowed: true,
            connectHostPort: joinHostPort(address.text, target.port),
          };
        }
      }
      const seen = addresses.map((address) => address.text).join(", ");
      return {
        allowed: false,
        reason:
          `resolves to ${seen}, not in the allowlist on port ${target.port}`,
      };
    },
  };
}

/** Describes the static entries for the start-up log. */
export function describeEntries(entries: readonly StaticEntry[]): string[] {
  return entries.map(formatStaticEntry);
}

/** The Go sidecar's answer to a denied prefill target (LATEST and ORIG alike). */
export const PREFILL_DENIED_MESSAGE =
  "Forbidden: prefill target not allowed by SSRF protection";

/** Who asked, for the denial log line. */
export interface RequestOrigin {
  readonly log: Logger;
  readonly clientIp: string | undefined;
  readonly userAgent: string | null;
  readonly path: string;
}

/**
 * Admits the prefill target or throws a 403 `ProxyError` after logging the
 * target and the client; resolves with the `host:port` to dial.
 */
export async function admitPrefillTarget(
  allowlist: Allowlist,
  target: UpstreamTarget,
  origin: RequestOrigin,
): Promise<string> {
  const verdict = await allowlist.checkTarget(target);
  if (verdict.allowed) {
    if (allowlist.enabled) {
      origin.log.debug("SSRF protection: prefill target allowed", {
        target: target.hostPort,
        connect: verdict.connectHostPort,
      });
    }
    return verdict.connectHostPort;
  }
  origin.log.error("SSRF protection: prefill target not in allowlist", {
    target: target.hostPort,
    reason: verdict.reason,
    clientIP: origin.clientIp ?? "",
    userAgent: origin.userAgent ?? "",
    requestPath: origin.path,
  });
  throw new ProxyError(403, PREFILL_DENIED_MESSAGE, {
    code: "prefill_target_forbidden",
  });
}

/**
 * For headers whose targets are dropped rather than refused (the encoder and
 * KV-source headers, as in the Go sidecar): the `host:port` to dial, or
 * undefined after an info line naming the target and the client.
 */
export async function admitOptionalTarget(
  allowlist: Allowlist,
  target: UpstreamTarget,
  role: "encoder" | "KV cache source",
  origin: RequestOrigin,
): Promise<string | undefined> {
  const verdict = await allowlist.checkTarget(target);
  if (verdict.allowed) return verdict.connectHostPort;
  origin.log.info(`SSRF protection: ${role} not in allowlist, ignoring`, {
    target: target.hostPort,
    reason: verdict.reason,
    clientIP: origin.clientIp ?? "",
    userAgent: origin.userAgent ?? "",
    requestPath: origin.path,
  });
  return undefined;
}
