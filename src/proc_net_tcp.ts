/**
 * @module
 * Linux's TCP socket tables, `/proc/net/tcp` and `/proc/net/tcp6`, as text:
 * how the kernel prints a socket's address pair, and the state of the
 * sockets a caller asks about. Pure functions; reading the files is the
 * caller's business.
 */

import ipaddr from "ipaddr.js";

/** One of the kernel's TCP tables: IPv4 sockets, or IPv6 (and dual-stack) ones. */
export type TcpTable = "tcp" | "tcp6";

/** Socket states as the tables print them (include/net/tcp_states.h). */
export const TCP_STATE = {
  established: 0x01,
  timeWait: 0x06,
  close: 0x07,
  closeWait: 0x08,
  lastAck: 0x09,
  listen: 0x0a,
  closing: 0x0b,
} as const;

/**
 * States in which the peer has sent its FIN or the socket is closed: the
 * client will send nothing more, and Deno's own check for a gone client
 * (`poll_peer_closed`, a read that returns EOF) would say it left too.
 */
const PEER_GONE_STATES: ReadonlySet<number> = new Set([
  TCP_STATE.closeWait,
  TCP_STATE.lastAck,
  TCP_STATE.closing,
  TCP_STATE.timeWait,
  TCP_STATE.close,
]);

/** Whether a socket in `state` has heard the last of its peer. */
export function isPeerGoneState(state: number): boolean {
  return PEER_GONE_STATES.has(state);
}

/** The table a socket bound to `hostname` is listed in. */
export function tableOf(hostname: string): TcpTable {
  return hostname.includes(":") ? "tcp6" : "tcp";
}

/**
 * Whether this machine stores a 32-bit word low byte first. The kernel
 * prints an address as `%08X` of each 32-bit word of the network-order
 * bytes read in host order, so on little-endian machines the bytes of every
 * word appear reversed (127.0.0.1 is `0100007F`).
 */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function hexWords(bytes: readonly number[]): string {
  let text = "";
  for (let word = 0; word < bytes.length; word += 4) {
    const group = bytes.slice(word, word + 4);
    if (LITTLE_ENDIAN) group.reverse();
    for (const byte of group) text += byte.toString(16).padStart(2, "0");
  }
  return text.toUpperCase();
}

/** `bytes` of an IPv4 or IPv6 address (any spelling, zone dropped), or undefined. */
function addressBytes(hostname: string, table: TcpTable): number[] | undefined {
  const bare = hostname.split("%")[0] ?? "";
  if (!ipaddr.isValid(bare)) return undefined;
  const parsed = ipaddr.parse(bare);
  if (table === "tcp") {
    if (parsed.kind() === "ipv4") return parsed.toByteArray();
    const v6 = parsed as ipaddr.IPv6;
    return v6.isIPv4MappedAddress()
      ? v6.toIPv4Address().toByteArray()
      : undefined;
  }
  // An IPv4 peer of a dual-stack socket is listed v4-mapped in tcp6.
  return parsed.kind() === "ipv4"
    ? (parsed as ipaddr.IPv4).toIPv4MappedAddress().toByteArray()
    : parsed.toByteArray();
}

/** An address and port as the table prints them (`0100007F:1F90`), or undefined. */
export function formatEndpoint(
  hostname: string,
  port: number,
  table: TcpTable,
): string | undefined {
  const bytes = addressBytes(hostname, table);
  if (bytes === undefined || !Number.isInteger(port)) return undefined;
  if (port < 0 || port > 0xffff) return undefined;
  return `${hexWords(bytes)}:${
    port.toString(16).toUpperCase().padStart(4, "0")
  }`;
}

/** An address and port, as `Deno.NetAddr` gives them. */
export interface Endpoint {
  readonly hostname: string;
  readonly port: number;
}

/**
 * The key of the socket from `local` to `remote` in `table`: both endpoints
 * as the table prints them, joined by a space as in its lines; undefined
 * when an address cannot be listed in that table.
 */
export function socketKey(
  table: TcpTable,
  local: Endpoint,
  remote: Endpoint,
): string | undefined {
  const from = formatEndpoint(local.hostname, local.port, table);
  const to = formatEndpoint(remote.hostname, remote.port, table);
  return from === undefined || to === undefined ? undefined : `${from} ${to}`;
}

/** The key of a socket listening on `local`: its remote endpoint is all zeros. */
export function listenerKey(
  table: TcpTable,
  local: Endpoint,
): string | undefined {
  const any = table === "tcp" ? "0.0.0.0" : "::";
  return socketKey(table, local, { hostname: any, port: 0 });
}

/**
 * The state of each socket of `wanted` that `text` (a whole table) lists.
 * A line is `  sl: LOCAL REMOTE ST ...`; lines that do not have that shape
 * are skipped, never guessed at. When a key is listed twice (a table read
 * while it changed), the last line wins.
 */
export function socketStates(
  text: string,
  wanted: ReadonlySet<string>,
): Map<string, number> {
  const states = new Map<string, number>();
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end === -1) end = text.length;
    const colon = text.indexOf(": ", start);
    if (colon !== -1 && colon < end) {
      const keyEnd = text.indexOf(" ", text.indexOf(" ", colon + 2) + 1);
      if (keyEnd !== -1 && keyEnd < end) {
        const key = text.slice(colon + 2, keyEnd);
        if (wanted.has(key)) {
          const state = Number.parseInt(text.slice(keyEnd + 1, keyEnd + 3), 16);
          if (Number.isInteger(state)) states.set(key, state);
        }
      }
    }
    start = end + 1;
  }
  return states;
}
