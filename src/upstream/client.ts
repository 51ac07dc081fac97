/**
 * @module
 * The HTTP client for every upstream (prefillers, encoders and the local
 * decoder): Deno's `fetch` on one pooled `Deno.createHttpClient` per stage,
 * each with its own TLS settings, and failures classified once so callers can
 * map them to statuses without parsing error strings.
 */

import { MAX_IDLE_CONNS_PER_HOST, type TlsStage } from "../flag_table.ts";
import { declaredLength, readBodyWithin } from "../body_limit.ts";
import type { HeaderList, HeaderSource } from "./headers.ts";
import { splitHostPort } from "./target.ts";

/**
 * Why an upstream request produced no response. `client_body` is the
 * request's own body failing as it was sent: the runtime's stream of a
 * client's body, whose client left mid-body.
 */
export type FailureKind =
  | "refused"
  | "dns"
  | "reset"
  | "aborted"
  | "client_body"
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
  /** Closes pooled connections (the root client: every stage's). */
  close(): void;
  /** URL of `pathAndQuery` on `hostPort` with this stage's scheme (`https` with TLS). */
  url(hostPort: string, pathAndQuery: string): string;
  /**
   * The client of `stage`, with its own pool and TLS settings. The client
   * `createUpstreamClient` returns is the decoder's.
   */
  stage(stage: UpstreamStage): UpstreamClient;
}

/** An upstream stage: what `-enable-tls` and `-tls-insecure-skip-verify` name. */
export type UpstreamStage = TlsStage;

/** TLS of one stage. */
export interface StageTls {
  /** Reach the stage over HTTPS. */
  readonly tls: boolean;
  /** Verify its certificate (against the default roots and `caCerts`). */
  readonly verify: boolean;
}

/** Options of `createUpstreamClient`; the default is plain HTTP everywhere. */
export interface UpstreamClientOptions {
  readonly stages?: Partial<Readonly<Record<UpstreamStage, StageTls>>>;
  /** PEM certificates trusted besides the default roots (`-ca-cert`). */
  readonly caCerts?: readonly string[];
  /** `-connect-timeout` in ms; 0 or absent: the kernel's own (about two minutes). */
  readonly connectTimeoutMs?: number;
  /** `-max-idle-conns-per-host`: idle keep-alive connections kept per host (Go's 1024 when absent). */
  readonly maxIdlePerHost?: number;
}

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
  // The second spellings are node's (undici, used for stages that skip verification).
  if (/connection refused|ECONNREFUSED/i.test(message)) {
    return new UpstreamError("refused", "connection refused", error);
  }
  if (/dns error|failed to lookup address|ENOTFOUND|EAI_AGAIN/i.test(message)) {
    return new UpstreamError("dns", "host name not found", error);
  }
  if (
    /connection (reset|closed)|broken pipe|unexpected eof|incomplete message|ECONNRESET|EPIPE|other side closed/i
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

/**
 * What Deno 2.9.6's `fetch` says, as the only text of its error's cause,
 * when the body it was sending is the runtime's stream of a client's
 * request and that client left mid-body (ext/fetch's `op_fetch_send` keeps
 * the body's own error as text only): the request body's `BadResource` on a
 * plain connection, rustls' unexpected end on TLS. The runtime's signal does
 * not fire then, nor does `completed` settle, so the text is all there is.
 */
const CLIENT_BODY_FAILURE = "Cannot read request body as underlying resource";
const TLS_PEER_DROPPED =
  "peer closed connection without sending TLS close_notify";

/**
 * `error`, the failure of reading a client's body, as a `client_body`
 * failure when its text says the client left; undefined otherwise. The TLS
 * text counts only where `tlsTextCounts`: a TLS upstream that drops without
 * close_notify (a killed vLLM) says the same.
 */
function clientBodyError(
  error: unknown,
  tlsTextCounts: boolean,
): UpstreamError | undefined {
  if (!(error instanceof Error)) return undefined;
  const message = innermostMessage(error);
  if (
    !message.startsWith(CLIENT_BODY_FAILURE) &&
    !(tlsTextCounts && message.startsWith(TLS_PEER_DROPPED))
  ) {
    return undefined;
  }
  return new UpstreamError(
    "client_body",
    `the client's request body ended early: ${message}`,
    error,
  );
}

/**
 * The failure of a request whose body, the client's own stream, broke
 * because its client left; undefined for any other failure, and for a body
 * the sidecar holds (a P/D leg's, a small one read whole), which no client
 * can break. From `fetch` the body's text is the cause's whole message, its
 * TLS text counting toward a plain upstream only. Through undici (a stage
 * that skips verification) the body said it itself (`clientBodyChunks`).
 */
function clientBodyFailure(
  error: unknown,
  request: UpstreamRequest,
  tlsUpstream: boolean,
): UpstreamError | undefined {
  if (error instanceof UpstreamError) return undefined;
  if (!(request.body instanceof ReadableStream)) return undefined;
  return clientBodyError(error, !tlsUpstream);
}

/** `fetch` bound to one stage's connection pool. */
interface StageTransport {
  fetch(url: string, init: RequestInit): Promise<Response>;
  close(): void;
}

function createDenoTransport(
  caCerts: readonly string[],
  maxIdlePerHost: number,
): StageTransport {
  const client = Deno.createHttpClient({
    poolMaxIdlePerHost: maxIdlePerHost,
    poolIdleTimeout: IDLE_TIMEOUT_MS,
    ...(caCerts.length > 0 ? { caCerts: [...caCerts] } : {}),
  });
  return {
    fetch: (url, init) => fetch(url, { ...init, client }),
    close: () => client.close(),
  };
}

/**
 * The client's body as undici reads it, its failure because its client left
 * said as a `client_body` failure: undici rejects with the body's own error,
 * whose text a TLS upstream's drop can also have.
 */
async function* clientBodyChunks(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of body) yield chunk;
  } catch (error) {
    // Read here, the TLS text can only be the client's.
    throw clientBodyError(error, true) ?? error;
  }
}

/**
 * A stage that skips certificate verification. Deno's `fetch` can only skip
 * it for the whole process (`--unsafely-ignore-certificate-errors`), so such a
 * stage goes through undici on `node:tls`, whose `rejectUnauthorized: false`
 * holds for its own connections only. `undici.request`, not undici's
 * `fetch`: under Deno 2.9.6 the latter's body never errors when the server
 * closes mid-body, so a dropped upstream would hang the client. Loaded on
 * first use: undici reads environment variables when it loads.
 */
function createInsecureTransport(): StageTransport {
  type Undici = typeof import("undici");
  let loaded:
    | Promise<{ undici: Undici; agent: InstanceType<Undici["Agent"]> }>
    | undefined;
  let closed = false;
  return {
    async fetch(url, init) {
      loaded ??= import("undici").then((undici) => ({
        undici,
        agent: new undici.Agent({
          connect: { rejectUnauthorized: false },
          keepAliveTimeout: IDLE_TIMEOUT_MS,
          // undici gives up after 300 s without a head or body bytes; fetch,
          // on every other stage, never does. A long vLLM queue (a slow first
          // token) or a long non-streaming generation would fail on this
          // stage alone; the sidecar's own flags bound those waits.
          headersTimeout: 0,
          bodyTimeout: 0,
        }),
      }));
      const [{ undici, agent }, { Readable }] = await Promise.all([
        loaded,
        import("node:stream"),
      ]);
      const body = init.body;
      const answer = await undici.request(url, {
        method: (init.method ?? "GET") as "GET",
        headers: [...new Headers(init.headers).entries()].flat(),
        // undici takes any async iterable as a streamed body (its types say
        // Readable); a web stream is one. Through Readable.fromWeb, undici
        // misread the answer (content-length mismatch) under Deno 2.9.6.
        body: body instanceof ReadableStream
          ? clientBodyChunks(body) as unknown as InstanceType<typeof Readable>
          : typeof body === "string"
          ? body
          : null,
        ...(init.signal ? { signal: init.signal } : {}),
        dispatcher: agent,
      });
      const headers = new Headers();
      for (const [name, value] of Object.entries(answer.headers)) {
        for (const item of Array.isArray(value) ? value : [value ?? ""]) {
          headers.append(name, item);
        }
      }
      const stream = Readable.toWeb(answer.body) as unknown as ReadableStream<
        Uint8Array
      >;
      // A status without a body (204, 304) cannot carry a stream.
      const empty = answer.statusCode === 204 || answer.statusCode === 304;
      if (empty) await stream.cancel();
      return new Response(empty ? null : stream, {
        status: answer.statusCode,
        headers,
      });
    },
    close() {
      if (closed) return;
      closed = true;
      void loaded?.then(({ agent }) => agent.close());
    },
  };
}

/** Methods a server may be asked twice with no other effect than once (Go's `isReplayable`). */
const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

/** Headers by which a client says its request may run twice (Go's `isReplayable`). */
const IDEMPOTENCY_KEYS = new Set(["idempotency-key", "x-idempotency-key"]);

/**
 * Whether a request that met a closed connection may be sent again: a reset
 * after the request went out cannot tell a keep-alive that ran out from an
 * upstream that read the request and died, so only a request that may run
 * twice (an idempotent method, or one the client marked with an idempotency
 * key, as Go's transport allows) whose body was never a stream goes again.
 * A P/D leg is a POST: sent twice, a decode would generate twice and pull
 * the prefiller's KV blocks twice. A reused connection that closes before
 * any answer is beyond reach: Deno 2.9.6's `fetch` sends the request again
 * itself on a new connection, whatever its method (checked).
 */
function isReplayable(request: UpstreamRequest): boolean {
  const body = request.body;
  const buffered = body === undefined || body === null ||
    typeof body === "string" || body instanceof Uint8Array;
  return buffered && (
    IDEMPOTENT_METHODS.has(request.method.toUpperCase()) ||
    request.headers.some(([name]) => IDEMPOTENCY_KEYS.has(name.toLowerCase()))
  );
}

function createStageClient(
  tls: StageTls,
  transport: StageTransport,
  probe: ConnectProbe,
): Omit<UpstreamClient, "stage"> {
  const scheme = tls.tls ? "https" : "http";
  function attempt(url: string, request: UpstreamRequest): Promise<Response> {
    return transport.fetch(url, {
      method: request.method,
      headers: withFetchDefaults(request.headers),
      body: request.body ?? null,
      signal: request.signal,
      redirect: "manual",
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
      const failure = clientBodyFailure(error, request, tls.tls) ??
        upstreamFailure(error, request.signal);
      // A pooled connection the upstream closed as the request went out
      // (its keep-alive ran out first, llm-d #1564): a request that may run
      // twice goes once more, on a new connection.
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
          text: await readAnswerText(response),
        };
      } catch (error) {
        if (error instanceof UpstreamError) throw error;
        throw upstreamFailure(error, request.signal);
      }
    },
    close: () => transport.close(),
    url: (hostPort, pathAndQuery) => `${scheme}://${hostPort}${pathAndQuery}`,
  };
}

/**
 * Largest answer read whole (prefill, encoder, bootstrap and chunk
 * answers): twice the default request body limit. The upstream is named by
 * the client's header, so its answer is as hostile as the client: unbounded,
 * an answer that never ends would take the process's memory.
 */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

function answerTooLarge(): UpstreamError {
  return new UpstreamError(
    "other",
    `answer larger than ${MAX_ANSWER_BYTES} bytes`,
    undefined,
  );
}

/**
 * The answer as text, at most `MAX_ANSWER_BYTES`: with a declared length
 * the runtime reads it natively (it delivers no more than declared),
 * without one it is read chunk by chunk and cut at the bound.
 */
async function readAnswerText(response: Response): Promise<string> {
  const length = declaredLength(response.headers);
  if (length !== undefined && length > MAX_ANSWER_BYTES) {
    response.body?.cancel().catch(() => {});
    throw answerTooLarge();
  }
  if (length !== undefined) return await response.text();
  const bytes = await readBodyWithin(response.body, MAX_ANSWER_BYTES);
  if (bytes === undefined) throw answerTooLarge();
  return utf8.decode(bytes);
}

const utf8 = new TextDecoder();

const PLAIN: StageTls = { tls: false, verify: true };

/**
 * Creates the upstream clients, one connection pool per stage, and returns
 * the decoder's; `stage()` gives the others. Skipping verification applies
 * to exactly the stages configured so, never to the process.
 */
export function createUpstreamClient(
  options: UpstreamClientOptions = {},
): UpstreamClient {
  const caCerts = options.caCerts ?? [];
  const probe = createConnectProbe(
    options.connectTimeoutMs ?? 0,
    IDLE_TIMEOUT_MS,
  );
  const stages = new Map<UpstreamStage, UpstreamClient>();
  function stage(name: UpstreamStage): UpstreamClient {
    const existing = stages.get(name);
    if (existing) return existing;
    const tls = options.stages?.[name] ?? PLAIN;
    const transport = tls.tls && !tls.verify
      ? createInsecureTransport()
      : createDenoTransport(
        caCerts,
        options.maxIdlePerHost ?? MAX_IDLE_CONNS_PER_HOST,
      );
    const client: UpstreamClient = {
      ...createStageClient(tls, transport, probe),
      stage,
    };
    stages.set(name, client);
    return client;
  }
  const decoder = stage("decoder");
  return {
    ...decoder,
    close() {
      for (const client of stages.values()) client.close();
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

/** `host:port` of an `http(s)://host:port/…` URL. */
function hostPortOf(url: string): string {
  const start = url.indexOf("//") + 2;
  const end = url.indexOf("/", start);
  return url.slice(start, end === -1 ? undefined : end);
}

/**
 * A TLS 1.2 ClientHello (ECDHE with AES-GCM or ChaCha20, P-256, P-384 or
 * X25519, ECDSA or RSA signatures; TLS 1.3 suites listed too): enough for
 * any TLS server to answer, with its ServerHello or with an alert.
 */
function clientHello(): Uint8Array {
  const suites = [
    0x1301,
    0x1302,
    0x1303,
    0xc02b,
    0xc02f,
    0xc02c,
    0xc030,
    0xcca9,
    0xcca8,
  ];
  const groups = [0x001d, 0x0017, 0x0018];
  const signatures = [
    0x0403,
    0x0804,
    0x0401,
    0x0503,
    0x0805,
    0x0501,
    0x0806,
    0x0601,
  ];
  const u16 = (value: number) => [value >> 8, value & 0xff];
  const list = (values: number[]) => [
    ...u16(values.length * 2),
    ...values.flatMap(u16),
  ];
  const extension = (type: number, data: number[]) => [
    ...u16(type),
    ...u16(data.length),
    ...data,
  ];
  const extensions = [
    ...extension(0x000a, list(groups)),
    ...extension(0x000b, [1, 0]),
    ...extension(0x000d, list(signatures)),
  ];
  const random = [...crypto.getRandomValues(new Uint8Array(32))];
  const body = [
    0x03,
    0x03,
    ...random,
    0,
    ...list(suites),
    1,
    0,
    ...u16(extensions.length),
    ...extensions,
  ];
  const handshake = [1, 0, ...u16(body.length), ...body];
  return new Uint8Array([
    0x16,
    0x03,
    0x01,
    ...u16(handshake.length),
    ...handshake,
  ]);
}

/**
 * Ends the probe of a TLS upstream: it must answer a ClientHello within what
 * is left of the connect timeout. Deno's `fetch` has no handshake timeout
 * (Go's transport has 10 s), so an upstream that accepted connections and
 * never answered held every request to it until its client gave up. Any
 * answer counts, an alert or a close too: the request's own connection
 * then fails with the reason (a certificate the stage refuses, a plain-HTTP
 * upstream). The hello is written by hand on the TCP connection because
 * Deno 2.9.6 does not close a TLS connection still in its handshake when
 * JavaScript closes it: its socket stayed open until the upstream left.
 */
async function answersHelloWithin(
  conn: Deno.TcpConn,
  leftMs: number,
  timeoutMs: number,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"expired">((resolve) => {
    timer = setTimeout(() => resolve("expired"), Math.max(0, leftMs));
  });
  try {
    const answered = conn.write(clientHello())
      .then(() => conn.read(new Uint8Array(1)))
      .then(() => "answered" as const, () => "answered" as const);
    if (await Promise.race([answered, expired]) === "expired") {
      throw new UpstreamError(
        "connect_timeout",
        `no TLS handshake within ${timeoutMs} ms`,
        undefined,
      );
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * A TCP connection to `hostname`. `Deno.connect` dials only the first
 * address a name resolves to, where `fetch` (and Go) try them all:
 * `localhost`, the verified TLS decoder's name, is dialled at 127.0.0.1 then
 * ::1, so a pod whose resolver puts ::1 first does not see an IPv4-only vLLM
 * refuse the probe while `fetch` would reach it.
 */
async function connectTcp(
  hostname: string,
  port: number,
  signal: AbortSignal,
): Promise<Deno.TcpConn> {
  if (hostname.toLowerCase() !== "localhost") {
    return await Deno.connect({ hostname, port, signal });
  }
  try {
    return await Deno.connect({ hostname: "127.0.0.1", port, signal });
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionRefused)) throw error;
    return await Deno.connect({ hostname: "::1", port, signal }).catch(() => {
      throw error;
    });
  }
}

/**
 * The connect timeout. Deno's `fetch` has no connect-timeout option, and a
 * signal on the request cannot tell a slow connect from a slow answer, so
 * before a request to a host not answered within the pool's idle time (no
 * pooled connection can be left), a TCP connect to it is tried and closed
 * (after a ClientHello toward an `https` one, see `answersHelloWithin`): it
 * measures exactly the connect, and costs one handshake per cold host.
 * Requests that find the same host cold share that one probe: a burst of
 * 2,000 requests once sent 2,000 probes, which filled the upstream's accept
 * queue and turned the burst into connect timeouts (issue 9's bench, 2c).
 */
function createConnectProbe(timeoutMs: number, freshMs: number): ConnectProbe {
  const lastReached = new Map<string, number>();
  const inFlight = new Map<string, Promise<void>>();
  if (timeoutMs <= 0) {
    return { ensureReachable: () => Promise.resolve(), reached() {} };
  }
  function remember(hostPort: string): void {
    if (lastReached.size >= MAX_REMEMBERED_HOSTS) lastReached.clear();
    lastReached.set(hostPort, performance.now());
  }
  // No client's signal: the probe serves every request waiting on it.
  async function connect(hostPort: string, tls: boolean): Promise<void> {
    const { host: hostname, port } = splitHostPort(hostPort);
    const started = performance.now();
    const timeout = AbortSignal.timeout(timeoutMs);
    let conn: Deno.TcpConn;
    try {
      conn = await connectTcp(hostname, port, timeout);
    } catch (error) {
      if (timeout.aborted) {
        throw new UpstreamError(
          "connect_timeout",
          `no TCP connection within ${timeoutMs} ms`,
          error,
        );
      }
      throw classifyFetchError(error);
    }
    if (tls) {
      await answersHelloWithin(
        conn,
        timeoutMs - (performance.now() - started),
        timeoutMs,
      );
    } else {
      conn.close();
    }
    remember(hostPort);
  }
  function probe(hostPort: string, tls: boolean): Promise<void> {
    const existing = inFlight.get(hostPort);
    if (existing) return existing;
    const started = connect(hostPort, tls).finally(() =>
      inFlight.delete(hostPort)
    );
    inFlight.set(hostPort, started);
    return started;
  }
  return {
    async ensureReachable(url, signal) {
      const hostPort = hostPortOf(url);
      const last = lastReached.get(hostPort);
      if (last !== undefined && performance.now() - last < freshMs) return;
      if (signal.aborted) throw upstreamFailure(signal.reason, signal);
      const aborted = Promise.withResolvers<never>();
      const onAbort = () => aborted.reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        await Promise.race([
          probe(hostPort, url.startsWith("https:")),
          aborted.promise,
        ]);
      } catch (error) {
        if (signal.aborted) throw upstreamFailure(error, signal);
        throw error;
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
    },
    reached(url) {
      remember(hostPortOf(url));
    },
  };
}
