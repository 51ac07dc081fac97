/**
 * @module
 * What the connector tests share: a harness for any connector (with the
 * Mooncake bootstrap server it needs), deadlines on awaited events, and
 * readers of what crossed the wire.
 */

import type { ConnectorName } from "../../src/config.ts";
import { withDeadline } from "../support/deadline.ts";
import {
  createKvStore,
  type RecordedRequest,
} from "../../scripts/mock_vllm/mod.ts";
import {
  createHarness,
  type Harness,
  type HarnessOptions,
} from "../support/harness.ts";
import {
  startStubUpstream,
  type StubUpstream,
} from "../support/stub_upstream.ts";

/** Rejects when `promise` has not settled within `ms`, naming what was awaited. */
export function within<T>(
  promise: Promise<T>,
  label: string,
  ms = 5000,
): Promise<T> {
  return withDeadline(promise, ms, label);
}

/** The engines a test bootstrap server lists: one rank, a fixed id. */
export const TEST_ENGINES = { "0": { engine_id: "engine-rank-0" } };

/** A Mooncake bootstrap server on loopback: `GET /query` answers `engines`. */
export interface BootstrapStub extends AsyncDisposable {
  readonly port: number;
  /** Number of `/query` requests served. */
  queries(): number;
}

/** Starts a bootstrap server answering `/query` with `engines` (JSON) and `status`. */
export function startBootstrapStub(
  engines: unknown = TEST_ENGINES,
  status = 200,
): BootstrapStub {
  let queries = 0;
  const stub: StubUpstream = startStubUpstream((request) => {
    if (new URL(request.url).pathname !== "/query") {
      return new Response("not found", { status: 404 });
    }
    queries++;
    return new Response(
      typeof engines === "string" ? engines : JSON.stringify(engines),
      { status, headers: { "content-type": "application/json" } },
    );
  });
  return {
    port: stub.port,
    queries: () => queries,
    [Symbol.asyncDispose]: () => stub[Symbol.asyncDispose](),
  };
}

/** How long a mock waits for the other leg: a broken exchange fails well before test deadlines. */
const KV_WAIT_MS = 2000;

/**
 * Starts a prefill and a decode mock speaking `connector` (sharing one KV
 * store, for the connectors whose KV travels through one) and a sidecar
 * running it, told the ports the protocol needs: the prefiller's side
 * channel is its SGLang and Mooncake bootstrap server and its P2P listener.
 */
export async function createConnectorHarness(
  connector: ConnectorName,
  options: HarnessOptions = {},
): Promise<Harness> {
  const kvStore = createKvStore();
  return await createHarness({
    ...options,
    prefill: {
      kvConnector: connector,
      kvRole: "kv_producer",
      kvStore,
      kvWaitTimeoutMs: KV_WAIT_MS,
      ...options.prefill,
    },
    decode: {
      kvConnector: connector,
      kvRole: "kv_consumer",
      kvStore,
      kvWaitTimeoutMs: KV_WAIT_MS,
      ...options.decode,
    },
    config: (mocks) => ({
      connector,
      sglangBootstrapPort: mocks.prefill.sideChannelPort,
      mooncakeBootstrapPort: mocks.prefill.sideChannelPort,
      p2pConnectorPort: mocks.prefill.sideChannelPort,
      ...(typeof options.config === "function"
        ? options.config(mocks)
        : options.config),
    }),
  });
}

/** A recorded request's JSON body as an object. */
export function bodyOf(request: RecordedRequest | undefined): Record<
  string,
  unknown
> {
  if (request === undefined) throw new Error("no such request was recorded");
  const body = request.body;
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new Error(`request body is not a JSON object: ${request.bodyText}`);
  }
  return body as Record<string, unknown>;
}

/** `kv_transfer_params` of a recorded request, as an object. */
export function kvParamsOf(
  request: RecordedRequest | undefined,
): Record<string, unknown> {
  const params = bodyOf(request).kv_transfer_params;
  if (typeof params !== "object" || params === null) {
    throw new Error(`no kv_transfer_params object in ${request?.bodyText}`);
  }
  return params as Record<string, unknown>;
}

/** Whether `promise` is still pending after the promises queued so far ran. */
export async function isPending(promise: Promise<unknown>): Promise<boolean> {
  const marker = Symbol("pending");
  const first = await Promise.race([
    promise,
    new Promise((resolve) => setTimeout(() => resolve(marker), 0)),
  ]);
  return first === marker;
}

/** A request a recording upstream received. */
export interface ReceivedRequest {
  readonly path: string;
  readonly headers: Headers;
  readonly bodyText: string;
  /** Fires when the sidecar closes the request (Deno.serve's client-abort signal). */
  readonly signal: AbortSignal;
}

/** A loopback server that records requests and answers with a handler. */
export interface RecordingUpstream extends AsyncDisposable {
  readonly port: number;
  readonly hostPort: string;
  readonly requests: ReceivedRequest[];
}

/** Starts a recording upstream answering with `handler`. */
export function startRecordingUpstream(
  handler: (request: ReceivedRequest) => Response | Promise<Response>,
): RecordingUpstream {
  const requests: ReceivedRequest[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const received: ReceivedRequest = {
        path: new URL(request.url).pathname,
        headers: new Headers(request.headers),
        bodyText: await request.text(),
        signal: request.signal,
      };
      requests.push(received);
      return await handler(received);
    },
  );
  const { port } = server.addr;
  return {
    port,
    hostPort: `127.0.0.1:${port}`,
    requests,
    // A response a regression left open would hold a graceful shutdown
    // forever: the test then fails naming it rather than hanging the run.
    [Symbol.asyncDispose]: () =>
      withDeadline(
        server.shutdown(),
        2000,
        "the recording upstream's shutdown (a response left open)",
      ),
  };
}

/** A JSON answer. */
export function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** A streamed answer whose chunks the test pushes one by one. */
export interface ScriptedStream {
  readonly response: Response;
  push(text: string): void;
  close(): void;
  /** Breaks the stream mid-body. */
  fail(): void;
  /** Resolves when the reader cancelled the stream. */
  readonly cancelled: Promise<void>;
}

/** Creates an SSE answer the test feeds. */
export function scriptedStream(status = 200): ScriptedStream {
  const cancelled = Promise.withResolvers<void>();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel() {
      cancelled.resolve();
    },
  });
  const encoder = new TextEncoder();
  return {
    response: new Response(body, {
      status,
      headers: { "content-type": "text/event-stream" },
    }),
    push: (text) => controller.enqueue(encoder.encode(text)),
    close: () => controller.close(),
    fail: () => controller.error(new Error("stream broken on purpose")),
    cancelled: cancelled.promise,
  };
}

/** A chat stream chunk as vLLM sends it, with `delta` and `finish_reason`. */
export function chatChunk(
  delta: Record<string, unknown>,
  finishReason: string | null = null,
): string {
  return `data: ${
    JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion.chunk",
      choices: [{
        index: 0,
        delta,
        logprobs: null,
        "finish_reason": finishReason,
      }],
    })
  }\n\n`;
}
