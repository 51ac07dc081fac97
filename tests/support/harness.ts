/**
 * @module
 * A sidecar between two recording mock vLLMs (a prefiller and a decoder), for
 * tests that assert what crossed the wire. `await using` closes everything.
 */

import { OPEN_ALLOWLIST } from "../../src/allowlist/allowlist.ts";
import type { Hono } from "hono";
import { createApp } from "../../src/app.ts";
import type { Metrics } from "../../src/metrics.ts";
import type { Config } from "../../src/config.ts";
import type { AppEnv } from "../../src/context.ts";
import { createLogger } from "../../src/log.ts";
import { createWaiters } from "./deadline.ts";
import { DEFAULT_RESILIENCE } from "../../src/resilience_flags.ts";
import type { TcpTableReader } from "../../src/peer_watch.ts";
import { serveApp } from "../../src/server.ts";
import type { TlsCertificate } from "../../src/tls.ts";
import { createUpstreamClient } from "../../src/upstream/client.ts";
import { upstreamClientOptions } from "../../src/security.ts";
import {
  createMockVllm,
  type MockVllm,
  type MockVllmOptions,
} from "../../scripts/mock_vllm/mod.ts";

/** Options of `createHarness`. */
export interface HarnessOptions {
  /** Config overrides, or a function of the mocks returning them (ports the sidecar must be told). */
  readonly config?:
    | Partial<Config>
    | ((mocks: { prefill: MockVllm; decode: MockVllm }) => Partial<Config>);
  readonly prefill?: MockVllmOptions;
  readonly decode?: MockVllmOptions;
  readonly random?: () => number;
  /** Where the app records its metrics. */
  readonly metrics?: Metrics;
  /** `-ca-cert`'s certificates, trusted by the stages that verify. */
  readonly caCerts?: readonly string[];
}

/** A running sidecar wired to two mocks. */
export interface Harness extends AsyncDisposable {
  readonly prefill: MockVllm;
  readonly decode: MockVllm;
  readonly app: Hono<AppEnv>;
  readonly config: Config;
  /** Parsed JSON log lines the sidecar wrote. */
  readonly logs: Record<string, unknown>[];
  /** The first line written so far or later that matches; rejects after `ms` (default 2 s). */
  nextLog(
    predicate: (line: Record<string, unknown>) => boolean,
    ms?: number,
  ): Promise<Record<string, unknown>>;
  /** The access line of request `id` (any request's without), as `nextLog` finds it. */
  accessLine(id?: string, ms?: number): Promise<Record<string, unknown>>;
  /** Sends a request to the app in process. */
  request(path: string, init?: RequestInit): Promise<Response>;
  /** POSTs a JSON `body` to the app in process with the prefill mock named as prefiller. */
  pd(
    path: string,
    body: string,
    headers?: Record<string, string>,
  ): Promise<Response>;
  /**
   * Serves the app on a loopback port; returns its base URL. With
   * `readTcpTable` the peer watch runs on the TCP tables it reads (e.g.
   * through `cat`, tests/support/tcp_tables.ts), as with
   * `-watch-client-connections`; without, it is off, as by default.
   */
  listen(tls?: TlsCertificate, readTcpTable?: TcpTableReader): string;
  /** `x-prefiller-host-port` value naming the prefill mock. */
  readonly prefillerHeader: string;
}

/** Builds a `Config` for tests: plain HTTP, loopback, everything logged. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    port: 8000,
    listenHost: "127.0.0.1",
    modelServerPort: 8001,
    connector: "nixlv2",
    dataParallelSize: 1,
    dataParallelRank: 0,
    podIp: "",
    enableP2pPull: false,
    p2pConnectorPort: 7777,
    mooncakeBootstrapPort: 8998,
    sglangBootstrapPort: 8998,
    secureProxy: false,
    certPath: "",
    enablePrefillerSampling: false,
    verbosity: 5,
    workers: 1,
    metricsPort: 0,
    tracing: false,
    watchClientConnections: false,
    ecConnector: "",
    decodeChunkSize: 0,
    // SSRF protection and upstream TLS (issue 11): off.
    ssrfProtection: false,
    inferencePool: undefined,
    allowedPrefillers: [],
    allowlistSyncTimeoutMs: 30_000,
    tlsStages: [],
    insecureSkipVerifyStages: [],
    caCertPath: "",
    maxRequestBodyBytes: 33554432,
    maxConnections: 0,
    maxIdleConnsPerHost: 1024,
    maxClientResets: 100,
    ...DEFAULT_RESILIENCE,
    // Raw-socket upstreams count connections; the connect probe would add one.
    connectTimeout: 0,
    ...overrides,
  };
}

/** Starts a prefill mock, a decode mock and the sidecar in front of the decoder. */
export async function createHarness(
  options: HarnessOptions = {},
): Promise<Harness> {
  const prefill = await createMockVllm({
    name: "prefiller",
    ...options.prefill,
  });
  const decode = await createMockVllm({ name: "decoder", ...options.decode });
  const overrides = typeof options.config === "function"
    ? options.config({ prefill, decode })
    : options.config;
  const config = testConfig({ modelServerPort: decode.port, ...overrides });
  const logs: Record<string, unknown>[] = [];
  const written = createWaiters();
  const log = createLogger({
    verbosity: config.verbosity,
    write(line) {
      logs.push(JSON.parse(line));
      written.notify();
    },
  });
  const nextLog = (
    predicate: (line: Record<string, unknown>) => boolean,
    ms = 2000,
  ) =>
    written.until(() => logs.find(predicate), `a log line where ${predicate}`, {
      ms,
    });
  // Per-stage TLS from the config, as src/listener.ts builds it.
  const upstream = createUpstreamClient(
    upstreamClientOptions(config, options.caCerts ?? []),
  );
  const app = createApp({
    config,
    log,
    upstream,
    // As main.ts does: the open allowlist when SSRF protection is off.
    allowlist: OPEN_ALLOWLIST,
    ...(options.random ? { random: options.random } : {}),
    ...(options.metrics ? { metrics: options.metrics } : {}),
  });
  const servers: Deno.HttpServer[] = [];
  function listen(tls?: TlsCertificate, readTcpTable?: TcpTableReader): string {
    const server = serveApp(app, {
      hostname: "127.0.0.1",
      port: 0,
      tls,
      log,
      maxClientResets: config.maxClientResets,
      ...(readTcpTable ? { readTcpTable } : {}),
    });
    servers.push(server);
    return `${tls ? "https" : "http"}://127.0.0.1:${server.addr.port}`;
  }
  const request = async (path: string, init?: RequestInit) =>
    await app.request(path, init);
  return {
    prefill,
    decode,
    app,
    config,
    logs,
    nextLog,
    accessLine: (id, ms) => nextLog(isAccessLine(id), ms),
    prefillerHeader: `127.0.0.1:${prefill.port}`,
    request,
    pd: (path, body, headers = {}) =>
      request(path, {
        method: "POST",
        headers: jsonHeaders({
          "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
          ...headers,
        }),
        body,
      }),
    listen,
    async [Symbol.asyncDispose]() {
      await Promise.all(servers.map((server) => server.shutdown()));
      await Promise.all([prefill.close(), decode.close()]);
      upstream.close();
    },
  };
}

/** Whether a log line is the access line of request `id`, or of any request without `id`. */
export function isAccessLine(
  id?: string,
): (line: Record<string, unknown>) => boolean {
  return (line) =>
    line.msg === "request handled" &&
    (id === undefined || line.request_id === id);
}

/** A chat completion request body. */
export function chatBody(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    model: "Qwen/Qwen3-0.6B",
    messages: [{ role: "user", content: "Hello there" }],
    max_tokens: 8,
    ...extra,
  });
}

/** Headers of a JSON request, plus `extra`. */
export function jsonHeaders(extra: Record<string, string> = {}): Headers {
  return new Headers({ "content-type": "application/json", ...extra });
}

/** POSTs `body` to `/v1/chat/completions` of a listening sidecar (`base`); gives up after 10 s. */
export async function postChatOverHttp(
  base: string,
  body: string,
  headers: HeadersInit,
): Promise<Response> {
  return await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers,
    body,
    signal: AbortSignal.timeout(10_000),
  });
}

/** Reads an SSE body and returns the `data:` payloads in order. */
export async function readSseData(response: Response): Promise<string[]> {
  const text = await response.text();
  return text.split("\n\n").filter((event) => event.startsWith("data: ")).map((
    event,
  ) => event.slice("data: ".length));
}
