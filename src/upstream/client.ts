/**
 * @module
 * The HTTP client for every upstream (prefillers and the local decoder):
 * Deno's `fetch` on one pooled `Deno.createHttpClient`, and failures
 * classified once so callers can map them to statuses without parsing error
 * strings.
 */

import type { HeaderList, HeaderSource } from "./headers.ts";

/** Why an upstream request produced no response. */
export type FailureKind =
  | "refused"
  | "dns"
  | "reset"
  | "aborted"
  | "connect_timeout"
  | "other";

/** An upstream request that failed before a response arrived. */
export class UpstreamError extends Error {
  /** Class of the failure. */
  readonly kind: FailureKind;
  /** The innermost, human-readable cause, e.g. "connection refused". */
  readonly detail: string;

  /** Wraps the error fetch threw. */
  constructor(kind: FailureKind, detail: string, cause: unknown) {
    super(detail, { cause });
    this.name = "UpstreamError";
    this.kind = kind;
    this.detail = detail;
  }
}

/** Options of one upstream request. */
export interface UpstreamRequest {
  readonly method: string;
  readonly headers: HeaderList;
  readonly body?: BodyInit | null;
  /** Aborts the request; the client's own signal, so a disconnect cancels it. */
  readonly signal: AbortSignal;
}

/** An answer read whole (the prefill leg's). */
export interface WholeResponse {
  readonly status: number;
  readonly headers: HeaderSource;
  readonly text: string;
}

/** Sends requests to upstream servers over pooled connections. */
export interface UpstreamClient {
  /** Sends a request; its answer streams. Throws `UpstreamError` when no response arrives. */
  send(url: string, request: UpstreamRequest): Promise<Response>;
  /** Sends a request and reads its (small) answer whole. Throws `UpstreamError` on failure. */
  sendAndRead(url: string, request: UpstreamRequest): Promise<WholeResponse>;
  /** Closes pooled connections. */
  close(): void;
}

/** Idle keep-alive connections kept per upstream host (the Go sidecar's default). */
export const MAX_IDLE_PER_HOST = 1024;
/**
 * How long an idle connection is kept. Below uvicorn's 5 s keep-alive, so the
 * sidecar never reuses a connection vLLM is about to close (llm-d #1564: the
 * Go sidecar's 90 s pool met uvicorn's 5 s with resets and 502s).
 */
export const IDLE_TIMEOUT_MS = 4000;

/**
 * Headers `fetch` adds to a request that lacks them, and what the sidecar
 * sends instead. `fetch` cannot omit them; these values mean what absence
 * means to the upstream. `accept-encoding: identity` keeps the upstream from
 * compressing, which `fetch` would undo silently; an empty `user-agent` keeps
 * the runtime's name out, as Go's reverse proxy does. `accept: *\/*` and
 * `accept-language: *` are what absence means (RFC 9110 §12.5.1, §12.5.4).
 */
const FETCH_DEFAULTS: readonly (readonly [string, string])[] = [
  ["accept", "*/*"],
  ["accept-language", "*"],
  ["user-agent", ""],
  ["accept-encoding", "identity"],
];

/** `headers` plus an explicit value for each header `fetch` would add. */
function withFetchDefaults(headers: HeaderList): HeaderList {
  let out: HeaderList | undefined;
  for (const [name, value] of FETCH_DEFAULTS) {
    if (headers.some(([present]) => present === name)) continue;
    out ??= headers.slice();
    out.push([name, value]);
  }
  return out ?? headers;
}

/**
 * Whether `fetch` may decode the answer to a request with `headers`: it
 * decodes gzip and br unless the request asks for `identity`, which the
 * sidecar sends when the client named no coding (checked on Deno 2.9.6).
 */
export function fetchMayDecode(headers: HeaderList): boolean {
  const sent = headers.find(([name]) => name === "accept-encoding")?.[1];
  return sent !== undefined && sent.trim().toLowerCase() !== "identity";
}

function innermostMessage(error: unknown): string {
  let current: unknown = error;
  let message = String(error);
  while (current instanceof Error) {
    message = current.message;
    current = current.cause;
  }
  return message;
}

/** Classifies the error `fetch` threw. */
function classifyFetchError(error: unknown): UpstreamError {
  if (error instanceof UpstreamError) return error;
  if (error instanceof DOMException && error.name === "AbortError") {
    return new UpstreamError("aborted", "request aborted by the client", error);
  }
  if (error instanceof Deno.errors.ConnectionRefused) {
    return new UpstreamError("refused", "connection refused", error);
  }
  if (
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.UnexpectedEof
  ) {
    return new UpstreamError("reset", "connection closed by the server", error);
  }
  const message = innermostMessage(error);
  if (/connection refused/i.test(message)) {
    return new UpstreamError("refused", "connection refused", error);
  }
  if (/dns error|failed to lookup address/i.test(message)) {
    return new UpstreamError("dns", "host name not found", error);
  }
  if (
    /connection (reset|closed)|broken pipe|unexpected eof|incomplete message/i
      .test(message)
  ) {
    return new UpstreamError("reset", "connection closed by the server", error);
  }
  // Deno prefixes the cause with the whole URL; keep the part after the last "): ".
  const detail = message.split(/\): /).pop() ?? message;
  return new UpstreamError("other", detail, error);
}

/** The error to throw for a failed request: an abort by the client, or the classified cause. */
export function upstreamFailure(
  error: unknown,
  signal: AbortSignal,
): UpstreamError {
  if (signal.aborted) {
    return new UpstreamError("aborted", "request aborted by the client", error);
  }
  return classifyFetchError(error);
}

/** Options of `createUpstreamClient`. */
export interface UpstreamClientOptions {
  /** `-connect-timeout` in ms; 0 or absent: the kernel's own (about two minutes). */
  readonly connectTimeoutMs?: number;
  /** How long an idle pooled connection is kept; `IDLE_TIMEOUT_MS` by default. */
  readonly idleTimeoutMs?: number;
}

/**
 * Whether a request that met a closed connection may be sent again: only
 * when its body was never a stream, so the same bytes can go out twice.
 */
function isReplayable(request: UpstreamRequest): boolean {
  const body = request.body;
  return body === undefined || body === null || typeof body === "string" ||
    body instanceof Uint8Array;
}

/** Creates the pooled client shared by all upstream requests. */
export function createUpstreamClient(
  options: UpstreamClientOptions = {},
): UpstreamClient {
  const idleTimeoutMs = options.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
  const client = Deno.createHttpClient({
    poolMaxIdlePerHost: MAX_IDLE_PER_HOST,
    poolIdleTimeout: idleTimeoutMs,
  });
  const probe = createConnectProbe(
    options.connectTimeoutMs ?? 0,
    idleTimeoutMs,
  );
  function attempt(url: string, request: UpstreamRequest): Promise<Response> {
    return fetch(url, {
      method: request.method,
      headers: withFetchDefaults(request.headers),
      body: request.body ?? null,
      signal: request.signal,
      redirect: "manual",
      client,
    });
  }
  async function send(
    url: string,
    request: UpstreamRequest,
  ): Promise<Response> {
    await probe.ensureReachable(url, request.signal);
    let response: Response;
    try {
      response = await attempt(url, request);
    } catch (error) {
      const failure = upstreamFailure(error, request.signal);
      // A pooled connection the upstream closed as the request went out
      // (its keep-alive ran out first, llm-d #1564): the upstream never saw
      // the request, so the same bytes go once more, on a new connection.
      if (failure.kind !== "reset" || !isReplayable(request)) throw failure;
      try {
        response = await attempt(url, request);
      } catch (again) {
        throw upstreamFailure(again, request.signal);
      }
    }
    probe.reached(url);
    return response;
  }
  return {
    send,
    async sendAndRead(url, request) {
      const response = await send(url, request);
      try {
        return {
          status: response.status,
          headers: response.headers,
          text: await response.text(),
        };
      } catch (error) {
        throw upstreamFailure(error, request.signal);
      }
    },
    close() {
      client.close();
    },
  };
}

/** The `-connect-timeout` check made before a request. */
interface ConnectProbe {
  /** Throws `UpstreamError` when the URL's host cannot be connected to in time. */
  ensureReachable(url: string, signal: AbortSignal): Promise<void>;
  /** Records that the URL's host answered, so its next requests skip the probe. */
  reached(url: string): void;
}

/** Most hosts remembered as reached; more and the memory starts over. */
const MAX_REMEMBERED_HOSTS = 4096;

/** `host:port` of an `http://host:port/…` URL. */
function hostPortOf(url: string): string {
  const start = url.indexOf("//") + 2;
  const end = url.indexOf("/", start);
  return url.slice(start, end === -1 ? undefined : end);
}

/**
 * The connect timeout. Deno's `fetch` has no connect-timeout option, and a
 * signal on the request cannot tell a slow connect from a slow answer, so
 * before a request to a host not answered within the pool's idle time (no
 * pooled connection can be left), a TCP connect to it is tried and closed:
 * it measures exactly the connect, and costs one handshake per cold host.
 */
function createConnectProbe(timeoutMs: number, freshMs: number): ConnectProbe {
  const lastReached = new Map<string, number>();
  if (timeoutMs <= 0) {
    return { ensureReachable: () => Promise.resolve(), reached() {} };
  }
  async function connect(hostPort: string, signal: AbortSignal) {
    const colon = hostPort.lastIndexOf(":");
    const hostname = hostPort.slice(0, colon).replace(/^\[|\]$/g, "");
    const port = Number(hostPort.slice(colon + 1));
    const timeout = AbortSignal.timeout(timeoutMs);
    try {
      const conn = await Deno.connect({
        hostname,
        port,
        signal: AbortSignal.any([signal, timeout]),
      });
      conn.close();
    } catch (error) {
      if (timeout.aborted && !signal.aborted) {
        throw new UpstreamError(
          "connect_timeout",
          `no TCP connection within ${timeoutMs} ms`,
          error,
        );
      }
      throw upstreamFailure(error, signal);
    }
  }
  return {
    async ensureReachable(url, signal) {
      const hostPort = hostPortOf(url);
      const last = lastReached.get(hostPort);
      if (last !== undefined && performance.now() - last < freshMs) return;
      await connect(hostPort, signal);
    },
    reached(url) {
      if (lastReached.size >= MAX_REMEMBERED_HOSTS) lastReached.clear();
      lastReached.set(hostPortOf(url), performance.now());
    },
  };
}
