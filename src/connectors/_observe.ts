/**
 * @module
 * What the shared leg code records around each upstream request: the
 * request's timing moments, its spans, and failures by cause: each failed
 * attempt once as an upstream error (a retried prefill's too), each leg that
 * failed for good once as a failure. The durations themselves are observed
 * once per request by the request-context middleware, from the timing filled
 * in here.
 */

import { isEventStream } from "../protocol/sse.ts";
import { ProxyError } from "../errors.ts";
import type {
  FailureCause,
  Leg,
  Metrics,
  TransportCause,
  UpstreamErrorKind,
} from "../metrics.ts";
import { SPAN_DECODE, SPAN_PREFILL } from "../tracing.ts";
import { UpstreamError, type WholeResponse } from "../upstream/client.ts";
import { isFirstByteTimeout } from "../upstream/decode_watch.ts";
import type { PdContext } from "./types.ts";

/**
 * The cause of an upstream failure without a response, from the error
 * itself or the `ProxyError` wrapping it; undefined for the client's abort.
 */
export function transportCause(
  error: unknown,
): TransportCause | undefined {
  if (error instanceof ProxyError && error.code === "prefill_timeout") {
    return "timeout";
  }
  const failure = error instanceof UpstreamError
    ? error
    : error instanceof ProxyError && error.cause instanceof UpstreamError
    ? error.cause
    : undefined;
  if (failure === undefined) return "other";
  if (failure.kind === "aborted" || failure.kind === "client_body") {
    return undefined;
  }
  return failure.kind === "connect_timeout" ? "timeout" : failure.kind;
}

/**
 * The cause a failed prefill leg (a `ProxyError` of `PREFILL_FAILURE_CODES`)
 * is counted under. A `prefill_error` keeps only the client's status, so a
 * prefiller's rare 3xx (answered 502) falls back under `status_5xx` here.
 */
export function prefillFailureCause(error: ProxyError): FailureCause {
  if (error.code === "prefill_error") return "status_5xx";
  if (error.code === "prefill_bad_answer") return "bad_answer";
  return transportCause(error) ?? "other";
}

/**
 * The cause an unsuccessful status is counted under. A 3xx is its own: the
 * upstream client does not follow redirects, so it is the upstream's failure
 * but no 5xx.
 */
export function statusCause(status: number): FailureCause {
  if (status < 400) return "status_3xx";
  return status < 500 ? "status_4xx" : "status_5xx";
}

/**
 * The upstream-error kind of an attempt answered `status`: none for a 2xx
 * or a 4xx (the request's fault), else the status cause.
 */
export function statusErrorKind(
  status: number,
): UpstreamErrorKind | undefined {
  if (status >= 200 && status < 300) return undefined;
  const cause = statusCause(status);
  return cause === "status_4xx" ? undefined : cause;
}

/**
 * Counts one failed attempt of `leg` as an upstream error; nothing when the
 * client has gone or `kind` is undefined: the attempt was not the
 * upstream's failure (a 2xx or 4xx answer, `statusErrorKind`) or ended by
 * the client's abort (`transportCause`).
 */
export function recordUpstreamError(
  ctx: PdContext,
  leg: Leg,
  kind: UpstreamErrorKind | undefined,
): void {
  if (kind === undefined || ctx.signal.aborted) return;
  ctx.observation.metrics.upstreamError(leg, kind);
}

/**
 * Counts a leg that failed for good on an attempt no retry loop counted (a
 * decode leg, never retried; a prefill answer found unusable once read): one
 * upstream error and one failure, both by `cause`.
 */
export function recordLegFailure(
  metrics: Metrics,
  leg: Leg,
  cause: UpstreamErrorKind,
): void {
  metrics.upstreamError(leg, cause);
  metrics.failure(leg, cause);
}

/** Records a prefill answer that came back unusable (not 2xx, or not JSON). */
export function recordPrefillFailure(
  ctx: PdContext,
  cause: FailureCause,
): void {
  ctx.observation.timing.prefillOk = false;
  ctx.observation.metrics.failure("prefill", cause);
}

/**
 * Runs the prefill leg (its retries included) inside the `prefill` span,
 * noting when it was sent and answered.
 */
export function observePrefill<T extends WholeResponse>(
  ctx: PdContext,
  send: () => Promise<T>,
): Promise<T> {
  const { timing, tracing, metrics } = ctx.observation;
  const attributes = {
    "llm_d.pd_proxy.request_id": ctx.requestId,
    "llm_d.pd_proxy.prefill_target": ctx.prefiller.hostPort,
  };
  return tracing.inSpan(SPAN_PREFILL, { attributes }, async (span) => {
    const sent = performance.now();
    timing.prefillSent ??= sent;
    try {
      const reply = await send();
      timing.prefillOk = reply.status >= 200 && reply.status < 300;
      span.set({ "llm_d.pd_proxy.prefill.status_code": reply.status });
      return reply;
    } catch (error) {
      // Each attempt's upstream error is counted by the retry loop. A leg
      // cut short (the client left, or a concurrent decode's failure
      // aborted it) got no answer: neither a success nor a failure.
      const cause = ctx.signal.aborted ? undefined : transportCause(error);
      if (cause !== undefined) {
        timing.prefillOk = false;
        metrics.failure("prefill", cause);
      }
      throw error;
    } finally {
      timing.prefillAnswered = performance.now();
      span.set({
        "llm_d.pd_proxy.prefill.duration_ms": timing.prefillAnswered - sent,
      });
    }
  });
}

/**
 * Sends the decode leg inside the `decode` span, which ends once the answer
 * has been sent; notes when it was sent and when its head arrived. Its
 * failures are counted by {@linkcode countDecodeLeg}, which every P/D decode
 * leg goes through.
 */
export function observeDecode(
  ctx: PdContext,
  send: () => Promise<Response>,
): Promise<Response> {
  const { timing, tracing, completed, access } = ctx.observation;
  const attributes = {
    "llm_d.pd_proxy.request_id": ctx.requestId,
    "llm_d.pd_proxy.decode.target": ctx.decoder,
  };
  return tracing.inSpan(
    SPAN_DECODE,
    { attributes, until: completed, failure: () => access.errorCode },
    async (span) => {
      timing.decodeSent = performance.now();
      const response = await send();
      timing.decodeAnswered = performance.now();
      span.set({
        "llm_d.pd_proxy.decode.streaming": isEventStream(response),
        "llm_d.pd_proxy.decode.first_byte_ms": timing.decodeAnswered -
          timing.decodeSent,
      });
      return response;
    },
  );
}

/**
 * Sends one P/D decode leg through `send` and counts how it failed: no
 * response (unless the client left), a 5xx, or a timeout of its decode watch,
 * which `send` reports through the `onTimeout` it is handed. Every P/D decode
 * path (after a prefill, the decode-only fallback, a KV-source pull, an
 * encoded request) goes through here, so the decode counters mean the same on
 * each.
 */
export async function countDecodeLeg(
  metrics: Metrics,
  signal: AbortSignal,
  send: (onTimeout: () => void) => Promise<Response>,
): Promise<Response> {
  let response: Response;
  try {
    response = await send(() => recordLegFailure(metrics, "decode", "timeout"));
  } catch (error) {
    // A first-byte timeout was counted by `onTimeout` as it fired.
    const cause = signal.aborted || isFirstByteTimeout(error)
      ? undefined
      : transportCause(error);
    if (cause !== undefined) recordLegFailure(metrics, "decode", cause);
    throw error;
  }
  if (response.status >= 500) {
    recordLegFailure(metrics, "decode", "status_5xx");
  }
  return response;
}
