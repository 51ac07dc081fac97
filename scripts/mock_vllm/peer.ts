/**
 * Calls from one mock to another's KV side channel: the decoder asking a
 * prefiller for blocks, a room, a transfer or a cached prefix. Reaching the
 * peer is the caller's business to judge; this only separates "the peer
 * answered" from "the peer could not be reached".
 *
 * @module
 */

import { isRecord } from "./parse_request.ts";

/** What a peer call produced. */
export type PeerAnswer =
  | {
    readonly ok: true;
    readonly status: number;
    readonly body: Readonly<Record<string, unknown>>;
  }
  | { readonly ok: false; readonly reason: string };

/** `host:port` for a URL, with IPv6 literals bracketed. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[")
    ? `[${host}]:${port}`
    : `${host}:${port}`;
}

/**
 * The `http://host:port` a decoder dials for a host and port received in a
 * request, or undefined when they are not a usable address. A string port is
 * accepted, as Python's socket code would take "5600".
 */
export function peerBaseUrl(host: unknown, port: unknown): string | undefined {
  const n = typeof port === "string" && /^\d+$/.test(port)
    ? Number(port)
    : port;
  if (typeof host !== "string" || host === "" || !isPort(n)) return undefined;
  return `http://${formatHostPort(host, n)}`;
}

/** True for an integer TCP port 1..65535. */
export function isPort(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) > 0 &&
    (value as number) < 65_536;
}

/**
 * Sends `body` as JSON to `url` (POST) or GETs it; rejects only when
 * `signal` aborts. A non-JSON answer body reads as `{}`.
 */
export async function callPeer(
  url: string,
  body: unknown,
  signal: AbortSignal,
): Promise<PeerAnswer> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: body === undefined ? "GET" : "POST",
      ...(body === undefined ? {} : {
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      }),
      signal,
    });
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    return {
      ok: false,
      reason: `cannot reach ${new URL(url).host}: ${messageOf(error)}`,
    };
  }
  const answer: unknown = await response.json().catch(() => undefined);
  return {
    ok: true,
    status: response.status,
    body: isRecord(answer) ? answer : {},
  };
}

/** What a peer's side channel gave for a KV read. */
export type PullAnswer =
  | {
    readonly ok: true;
    /** `num_tokens` of its 200 answer. */
    readonly numTokens: number;
    readonly body: Readonly<Record<string, unknown>>;
  }
  | {
    readonly ok: false;
    /** Its refusal, or why it could not be reached. */
    readonly reason: string;
    readonly reached: boolean;
  };

/** Asks a peer's side channel for KV ({@linkcode callPeer}); anything but a 200 is a refusal. */
export async function pullFromPeer(
  url: string,
  body: unknown,
  signal: AbortSignal,
): Promise<PullAnswer> {
  const answer = await callPeer(url, body, signal);
  if (!answer.ok) return { ok: false, reason: answer.reason, reached: false };
  if (answer.status !== 200) {
    return { ok: false, reason: refusalOf(answer), reached: true };
  }
  return {
    ok: true,
    numTokens: countOf(answer.body, "num_tokens"),
    body: answer.body,
  };
}

/** The refusal reason a side channel sent, or `HTTP <status>`. */
export function refusalOf(answer: {
  readonly status: number;
  readonly body: Readonly<Record<string, unknown>>;
}): string {
  return typeof answer.body.reason === "string"
    ? answer.body.reason
    : `HTTP ${answer.status}`;
}

/** A non-negative integer field of a peer answer, else 0. */
export function countOf(
  body: Readonly<Record<string, unknown>>,
  key: string,
): number {
  const value = body[key];
  return Number.isInteger(value) && (value as number) >= 0
    ? value as number
    : 0;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
