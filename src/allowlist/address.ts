/**
 * @module
 * IP addresses as the connection will see them. A host from a header is read
 * with the WHATWG URL parser, the one `fetch` uses, so `0`, `127.1`,
 * `2130706433`, `0x7f000001` and `010.0.0.1` become the dotted quad `fetch`
 * would dial; IPv4-mapped IPv6 (`::ffff:127.0.0.1`) becomes its IPv4 address,
 * which is where the kernel delivers it. Comparing these canonical forms, not
 * spellings, is what keeps an allowlist from being talked around.
 */

import ipaddr from "ipaddr.js";

/** A parsed address: its canonical text and the parsed value for range checks. */
export interface IpAddress {
  /** Dotted quad for IPv4 (mapped IPv6 included), RFC 5952 text for IPv6. */
  readonly text: string;
  readonly value: ipaddr.IPv4 | ipaddr.IPv6;
}

/** A CIDR range, e.g. `10.0.0.0/8` or `fd00::/8`. */
export interface IpRange {
  readonly text: string;
  readonly base: ipaddr.IPv4 | ipaddr.IPv6;
  readonly bits: number;
}

const DOTTED_QUAD = /^\d{1,3}(?:\.\d{1,3}){3}$/;

function fromValue(value: ipaddr.IPv4 | ipaddr.IPv6): IpAddress {
  if (value.kind() === "ipv6") {
    const v6 = value as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) return fromValue(v6.toIPv4Address());
    return { text: v6.toString(), value: v6 };
  }
  return { text: value.toString(), value };
}

/**
 * The address `host` names if it is an IP literal in any spelling `fetch`
 * accepts (IPv6 without brackets), else undefined (a host name, or nothing a
 * URL could hold).
 */
export function parseIpLiteral(host: string): IpAddress | undefined {
  let hostname: string;
  try {
    hostname = new URL(`http://${host.includes(":") ? `[${host}]` : host}/`)
      .hostname;
  } catch {
    return undefined;
  }
  if (hostname.startsWith("[")) {
    return fromValue(ipaddr.IPv6.parse(hostname.slice(1, -1)));
  }
  if (!DOTTED_QUAD.test(hostname)) return undefined;
  return fromValue(ipaddr.IPv4.parse(hostname));
}

/** Whether `host` is something a URL can hold as a host (a name or an IP literal). */
export function isValidUrlHost(host: string): boolean {
  try {
    new URL(`http://${host.includes(":") ? `[${host}]` : host}/`);
    return true;
  } catch {
    return false;
  }
}

/** Parses `a.b.c.d/n` or `v6/n`; undefined when `text` is not a CIDR. */
export function parseIpRange(text: string): IpRange | undefined {
  const slash = text.lastIndexOf("/");
  if (slash === -1) return undefined;
  const bitsText = text.slice(slash + 1);
  const base = parseIpLiteral(text.slice(0, slash));
  if (base === undefined || !/^\d{1,3}$/.test(bitsText)) return undefined;
  const bits = Number(bitsText);
  if (bits > (base.value.kind() === "ipv4" ? 32 : 128)) return undefined;
  return { text: `${base.text}/${bits}`, base: base.value, bits };
}

/** Whether `address` lies in `range` (an IPv4 range never holds an IPv6 address). */
export function isInRange(address: IpAddress, range: IpRange): boolean {
  if (address.value.kind() !== range.base.kind()) return false;
  return address.value.match(range.base, range.bits);
}

/**
 * Whether connecting to `address` reaches this host whatever the allowlist
 * says: the unspecified address (`0.0.0.0`, `::`, and `0.0.0.0/8`, "this
 * network") is dialled as the local host on Linux.
 */
export function isUnspecified(address: IpAddress): boolean {
  const range = address.value.range();
  return range === "unspecified";
}
