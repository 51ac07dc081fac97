/**
 * @module
 * `-allowed-prefillers`: a fixed list of upstreams the routing headers may
 * name, for deployments without Kubernetes or beside the InferencePool.
 * Entries are an IP (any port), `ip:port`, `[v6]:port`, a CIDR (any port), or
 * a host name with or without a port; names are compared by the addresses
 * they resolve to, like the targets themselves.
 */

import {
  type IpAddress,
  type IpRange,
  isInRange,
  isValidUrlHost,
  parseIpLiteral,
  parseIpRange,
} from "./address.ts";
import type { Resolver } from "./resolve.ts";

/** One parsed entry of the list. */
export type StaticEntry =
  | { readonly kind: "range"; readonly range: IpRange }
  | {
    readonly kind: "address";
    readonly address: IpAddress;
    readonly port: number | undefined;
  }
  | {
    readonly kind: "name";
    readonly host: string;
    readonly port: number | undefined;
  };

const PORT = /^\d{1,5}$/;

function parsePort(text: string, entry: string): number {
  const port = PORT.test(text) ? Number(text) : 0;
  if (port < 1 || port > 65535) {
    throw new Error(`port "${text}" of "${entry}" is not from 1 to 65535`);
  }
  return port;
}

function hostEntry(
  host: string,
  port: number | undefined,
  entry: string,
): StaticEntry {
  const address = parseIpLiteral(host);
  if (address !== undefined) return { kind: "address", address, port };
  if (host === "" || host.includes(":") || !isValidUrlHost(host)) {
    throw new Error(`"${entry}" is not a host, host:port, IP or CIDR`);
  }
  return { kind: "name", host: host.toLowerCase().replace(/\.$/, ""), port };
}

/** Parses one entry; throws an Error saying what is wrong with it. */
export function parseStaticEntry(text: string): StaticEntry {
  const entry = text.trim();
  if (entry.includes("/")) {
    const range = parseIpRange(entry);
    if (range === undefined) throw new Error(`"${entry}" is not a valid CIDR`);
    return { kind: "range", range };
  }
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed?.[1] !== undefined) {
    const address = parseIpLiteral(bracketed[1]);
    if (address === undefined || !bracketed[1].includes(":")) {
      throw new Error(`"${entry}" is not a valid IPv6 address`);
    }
    const port = bracketed[2] === undefined
      ? undefined
      : parsePort(bracketed[2], entry);
    return { kind: "address", address, port };
  }
  const colons = entry.split(":").length - 1;
  if (colons > 1) {
    // A bare IPv6 address: it cannot carry a port without brackets.
    const address = parseIpLiteral(entry);
    if (address === undefined) {
      throw new Error(`"${entry}" is not a valid IPv6 address`);
    }
    return { kind: "address", address, port: undefined };
  }
  if (colons === 1) {
    const [host = "", portText = ""] = entry.split(":");
    return hostEntry(host, parsePort(portText, entry), entry);
  }
  return hostEntry(entry, undefined, entry);
}

/** The entry as written back for logs. */
export function formatStaticEntry(entry: StaticEntry): string {
  switch (entry.kind) {
    case "range":
      return entry.range.text;
    case "address": {
      const host = entry.address.text.includes(":")
        ? `[${entry.address.text}]`
        : entry.address.text;
      return entry.port === undefined ? host : `${host}:${entry.port}`;
    }
    case "name":
      return entry.port === undefined
        ? entry.host
        : `${entry.host}:${entry.port}`;
  }
}

/**
 * Whether `address:port` is admitted by `entries`, or `address` on any port
 * when `port` is undefined. Names are resolved through `resolver` (cached);
 * a name that does not resolve admits nothing.
 */
export async function isAllowedByStaticList(
  entries: readonly StaticEntry[],
  address: IpAddress,
  port: number | undefined,
  resolver: Resolver,
): Promise<boolean> {
  for (const entry of entries) {
    if (entry.kind === "range") {
      if (isInRange(address, entry.range)) return true;
      continue;
    }
    if (
      port !== undefined && entry.port !== undefined && entry.port !== port
    ) continue;
    if (entry.kind === "address") {
      if (entry.address.text === address.text) return true;
      continue;
    }
    const resolved = await resolver.resolve(entry.host).catch(() => []);
    if (resolved.some((candidate) => candidate.text === address.text)) {
      return true;
    }
  }
  return false;
}
