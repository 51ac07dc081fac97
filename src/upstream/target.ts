/**
 * @module
 * Parses a prefill target taken from a request header. The value comes from
 * the network, so it is validated strictly before any connection is made:
 * only `host:port`, `ip:port`, `[v6]:port` and `http://host:port`.
 */

import { ProxyError } from "../errors.ts";

/** A validated upstream address. */
export interface UpstreamTarget {
  /** Host name or IP; IPv6 without brackets. */
  readonly host: string;
  readonly port: number;
  /** Normalised `host:port` (`[v6]:port`), the key for pools and allowlists. */
  readonly hostPort: string;
}

// RFC 1123 labels (underscores tolerated, Kubernetes service names never
// need more), or an IPv4 literal; IPv6 is matched separately in brackets.
const HOST_NAME =
  /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$/;
const HOST_PORT = /^(?<host>[^\[\]:/]+):(?<port>\d{1,5})$/;
const BRACKETED_HOST_PORT =
  /^\[(?<host>[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?)\]:(?<port>\d{1,5})$/;
const SCHEME = /^(?<scheme>[A-Za-z][A-Za-z0-9+.-]*):\/\//;

/** What a target names, for the 400 a malformed one gets. */
export interface TargetKind {
  /** E.g. "prefill target", as the message says it. */
  readonly what: string;
  /** The error's stable code. */
  readonly code: string;
}

/** A prefill target: `x-prefiller-host-port` (or the legacy header). */
export const PREFILL_TARGET: TargetKind = {
  what: "prefill target",
  code: "invalid_prefill_target",
};

/** Where a target is read from: for its error messages. */
interface Spelling {
  readonly value: string;
  readonly header: string;
  readonly kind: TargetKind;
}

function reject(at: Spelling, reason: string): never {
  throw new ProxyError(
    400,
    `Invalid ${at.kind.what} ${
      JSON.stringify(at.value)
    } in header "${at.header}": ${reason}`,
    { code: at.kind.code },
  );
}

function parsePort(at: Spelling, text: string): number {
  const port = Number(text);
  if (port < 1 || port > 65535) {
    reject(at, `port ${text} is out of range 1-65535`);
  }
  return port;
}

/** Go's `net.JoinHostPort`: `host:port`, an IPv6 host in brackets. */
export function joinHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Go's `net.SplitHostPort` for the `host:port` texts `joinHostPort` writes:
 * the host without brackets, and the port.
 */
export function splitHostPort(
  hostPort: string,
): { readonly host: string; readonly port: number } {
  const colon = hostPort.lastIndexOf(":");
  const host = hostPort.slice(0, colon);
  return {
    host: host.startsWith("[") ? host.slice(1, -1) : host,
    port: Number(hostPort.slice(colon + 1)),
  };
}

/** Parses one target spelled in `header` (a prefill target by default); throws a 400 `ProxyError`. */
export function parseTarget(
  value: string,
  header: string,
  kind: TargetKind = PREFILL_TARGET,
): UpstreamTarget {
  const at: Spelling = { value, header, kind };
  // deno-lint-ignore no-control-regex -- rejecting control characters is the point (header injection)
  if (/[\0-\x1f\x7f\s]/.test(value)) {
    reject(at, "control characters or spaces");
  }
  let rest = value;
  const scheme = SCHEME.exec(rest)?.groups?.scheme;
  if (scheme !== undefined) {
    if (scheme.toLowerCase() !== "http") {
      reject(
        at,
        `scheme "${scheme}" is not supported, use host:port`,
      );
    }
    rest = rest.slice(scheme.length + 3);
  }
  // The Go sidecar built "http://" + value, so a trailing slash worked there,
  // with or without the scheme.
  if (rest.endsWith("/")) rest = rest.slice(0, -1);
  if (rest.includes("@")) reject(at, "credentials are not allowed");
  if (/[/?#]/.test(rest)) {
    reject(at, "a path, query or fragment is not allowed");
  }
  const bracketed = BRACKETED_HOST_PORT.exec(rest)?.groups;
  if (bracketed?.host !== undefined && bracketed.port !== undefined) {
    // The pattern admits any run of hex digits, colons and dots; only a real
    // IPv6 address (zone aside, which URLs cannot hold) may reach a dial.
    const address = bracketed.host.split("%")[0] ?? "";
    if (!URL.canParse(`http://[${address}]/`)) {
      reject(at, `"${address}" is not a valid IPv6 address`);
    }
    const port = parsePort(at, bracketed.port);
    const host = bracketed.host.toLowerCase();
    return { host, port, hostPort: `[${host}]:${port}` };
  }
  const plain = HOST_PORT.exec(rest)?.groups;
  if (plain?.host === undefined || plain.port === undefined) {
    reject(
      at,
      "expected host:port, [ipv6]:port or http://host:port",
    );
  }
  if (!HOST_NAME.test(plain.host)) {
    reject(at, `"${plain.host}" is not a valid host name`);
  }
  const port = parsePort(at, plain.port);
  const host = plain.host.toLowerCase().replace(/\.$/, "");
  return { host, port, hostPort: `${host}:${port}` };
}
