/**
 * The per-request pipeline: record what arrived, link it to an abort signal,
 * dispatch to a route, render errors in vLLM's shape, and log the access line.
 *
 * @module
 */

import type { EngineContext } from "./engine.ts";
import {
  errorResponse,
  internalServerError,
  jsonResponse,
  VllmError,
} from "./errors.ts";
import { handleGeneration } from "./generation.ts";
import type { Knobs } from "./knobs.ts";
import type { MockLogger } from "./log.ts";
import { handleOps, OPS_ROUTES, type OpsContext } from "./ops_routes.ts";
import {
  type ApiKind,
  type ParsedBody,
  parseJsonBody,
  requestIdHeader,
} from "./parse_request.ts";
import { formatHostPort } from "./peer.ts";
import type { Recorder, Recording } from "./recorder.ts";
import {
  type SideChannelContext,
  tryServeSideChannel,
} from "./side_channel.ts";
import {
  isWebSocketUpgrade,
  REALTIME_PATH,
  serveRealtime,
} from "./realtime.ts";
import { SSE_CONTENT_TYPE, StreamBreak } from "./sse.ts";

const GENERATION_ROUTES: Readonly<Record<string, ApiKind>> = {
  "/v1/chat/completions": "chat",
  "/v1/completions": "completions",
  "/v1/responses": "responses",
  "/v1/messages": "messages",
  "/inference/v1/generate": "generate",
};

/** State of one mock that request handling reads. */
export interface MockState {
  readonly knobs: Knobs;
  readonly logger: MockLogger;
  readonly recorder: Recorder;
  readonly engine: EngineContext;
  readonly ops: OpsContext;
  readonly sideChannel: SideChannelContext;
  /** Controllers of requests whose response is not finished yet. */
  readonly inFlight: Set<AbortController>;
  /** The API listener also answers KV pulls (no dedicated side-channel listener). */
  sharesSideChannel: boolean;
  closing: boolean;
}

/** Serves one request on the API listener. */
export async function handleRequest(
  state: MockState,
  request: Request,
  info: Deno.ServeHandlerInfo,
): Promise<Response> {
  const { pathname, search } = new URL(request.url);
  const sideChannel = state.sharesSideChannel
    ? tryServeSideChannel(request, pathname, state.sideChannel)
    : undefined;
  if (sideChannel !== undefined) return await sideChannel;
  if (pathname === REALTIME_PATH && isWebSocketUpgrade(request)) {
    return acceptRealtime(state, request, info);
  }
  const bodyText = await request.text().catch(() => "");
  const parsed = parseJsonBody(bodyText);
  const body = parsed.ok ? parsed.value : undefined;
  const api = request.method === "POST"
    ? GENERATION_ROUTES[pathname]
    : undefined;
  const record = state.recorder.add({
    method: request.method,
    path: pathname,
    search,
    headers: new Headers(request.headers),
    bodyText,
    body,
    role: api === undefined ? "other" : state.engine.connector.roleOf({
      body,
      bodyText,
      headers: request.headers,
    }),
  });
  const controller = trackFlight(state, request, record);
  let response: Response;
  try {
    response = api === undefined
      ? routeOther(state.ops, request, pathname, parsed)
      : await handleGeneration({
        api,
        request,
        record,
        parsed,
        engine: state.engine,
        signal: controller.signal,
        abort: () => controller.abort(clientGone()),
      });
  } catch (error) {
    response = renderError(state.logger, error);
  }
  return finishResponse(state, { request, record, response, info });
}

/** Records a realtime handshake and runs its session; the record settles when the session closes. */
function acceptRealtime(
  state: MockState,
  request: Request,
  info: Deno.ServeHandlerInfo,
): Response {
  const url = new URL(request.url);
  // The upgrade closes the request: what it says is read first.
  const client = formatClient(info);
  const record = state.recorder.add({
    method: request.method,
    path: url.pathname,
    search: url.search,
    headers: new Headers(request.headers),
    bodyText: "",
    body: undefined,
    role: "other",
  });
  const session = serveRealtime(request, state.knobs.model);
  record.webSocket = session.record;
  record.status = 101;
  void session.closed.then(() => record.settle("completed"));
  state.logger.access(client, request.method, record.path + record.search, 101);
  return session.response;
}

function clientGone(): DOMException {
  return new DOMException("Client disconnected", "AbortError");
}

/** The reason in-flight requests are aborted with on `close()`. */
export function shuttingDown(): DOMException {
  return new DOMException("Mock vLLM is shutting down", "AbortError");
}

/** Links a request to a controller that aborts on client disconnect or `close()`. */
function trackFlight(
  state: MockState,
  request: Request,
  record: Recording,
): AbortController {
  const controller = new AbortController();
  state.inFlight.add(controller);
  void record.finished.then(() => state.inFlight.delete(controller));
  // With Deno's no-legacy-abort behaviour this fires only when the client goes away.
  request.signal.addEventListener(
    "abort",
    () => controller.abort(clientGone()),
    { once: true },
  );
  if (state.closing) controller.abort(shuttingDown());
  return controller;
}

function routeOther(
  ops: OpsContext,
  request: Request,
  pathname: string,
  parsed: ParsedBody,
): Response {
  const methods = OPS_ROUTES[pathname] ??
    (pathname in GENERATION_ROUTES ? ["POST"] : undefined);
  if (methods === undefined) return jsonResponse({ detail: "Not Found" }, 404);
  if (!methods.includes(request.method)) {
    return jsonResponse({ detail: "Method Not Allowed" }, 405);
  }
  return handleOps(pathname, request, parsed, ops);
}

interface Finished {
  readonly request: Request;
  readonly record: Recording;
  readonly response: Response;
  readonly info: Deno.ServeHandlerInfo;
}

function finishResponse(state: MockState, finished: Finished): Response {
  const { request, record, response, info } = finished;
  // Streams settle their record when the body ends; everything else is done now.
  if (response.headers.get("content-type") !== SSE_CONTENT_TYPE) {
    record.settle("completed");
  }
  if (state.knobs.enableRequestIdHeaders) {
    // vLLM echoes the incoming id, or a fresh uuid hex that is not the body id.
    const echoed = requestIdHeader(request.headers) ??
      crypto.randomUUID().replaceAll("-", "");
    response.headers.set("x-request-id", echoed);
  }
  record.status = response.status;
  state.logger.access(
    formatClient(info),
    request.method,
    record.path + record.search,
    response.status,
  );
  return response;
}

function renderError(logger: MockLogger, error: unknown): Response {
  if (error instanceof VllmError) return errorResponse(error);
  return reportServerError(logger, error);
}

/** Deno's serve error hook; it also sees body streams the mock broke on purpose, which are not errors. */
export function reportServerError(
  logger: MockLogger,
  error: unknown,
): Response {
  if (!(error instanceof StreamBreak)) {
    const detail = error instanceof Error
      ? error.stack ?? error.message
      : String(error);
    logger.write(
      "ERROR",
      "api_server.py:1104",
      `Unhandled error in mock vLLM: ${detail}`,
    );
  }
  return errorResponse(internalServerError());
}

function formatClient(info: Deno.ServeHandlerInfo): string {
  const addr = info.remoteAddr as Deno.Addr;
  return "hostname" in addr ? formatHostPort(addr.hostname, addr.port) : "unix";
}
