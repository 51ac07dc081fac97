/**
 * @module
 * OpenTelemetry spans of the sidecar (`-tracing`): a `forward_request` span
 * per P/D request with `prefill` and `decode` children, named and attributed
 * as the Go sidecar's (delta §9.2). Export is Deno's built-in OpenTelemetry
 * (`OTEL_DENO=true` and the standard `OTEL_*` variables), which also makes the
 * server span of each request and a client span, with its `traceparent`
 * injected, for every `fetch`: so each leg carries a child of the leg's span.
 */

import {
  type Attributes,
  context,
  propagation,
  type Span,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { errorMessage } from "./errors.ts";

/** Tracer scope, the Go sidecar's. */
export const TRACER_SCOPE = "llm-d-router/pkg/sidecar/proxy";
/** Span around one P/D request. */
export const SPAN_REQUEST = "forward_request";
/** Span around the prefill leg. */
export const SPAN_PREFILL = "prefill";
/** Span around the decode leg, until its answer has been sent. */
export const SPAN_DECODE = "decode";
/**
 * The W3C trace context header (W3C Trace Context §3.2) the runtime writes
 * itself when it traces, so the client's must not go upstream too. The
 * client's `tracestate` is not among them: Deno 2.9.6 neither keeps it in the
 * server span nor injects one, and a participant that adds no entry passes
 * it on unchanged (§3.3); leaving it out cut vendors' state off both legs.
 */
export const TRACE_CONTEXT_HEADERS: readonly string[] = ["traceparent"];

/** What code inside a span may do with it. */
export interface SpanHandle {
  /** Adds attributes. */
  set(attributes: Attributes): void;
}

/** Options of {@linkcode Tracing.inSpan}. */
export interface SpanOptions {
  readonly attributes?: Attributes;
  /** End the span when this settles (e.g. the stream was sent) rather than when the callback does. */
  readonly until?: Promise<unknown>;
  /**
   * Read when `until` settles: the error code of a failure that came after
   * the callback returned (a stream broken off as idle), which marks the
   * span failed as a thrown error does.
   */
  readonly failure?: () => string | undefined;
}

/** The sidecar's spans, or nothing when tracing is off. */
export interface Tracing {
  /** Whether the sidecar makes spans (`-tracing`). */
  readonly enabled: boolean;
  /**
   * Whether the runtime injects trace context into every outgoing request
   * (`OTEL_DENO=true`): then a client's own `traceparent` must not be
   * forwarded too, or the leg would carry two.
   */
  readonly injects: boolean;
  /** Runs `fn` with a new span active, its child of the current one; ends it after `fn` (or `until`). */
  inSpan<T>(
    name: string,
    options: SpanOptions,
    fn: (span: SpanHandle) => Promise<T>,
  ): Promise<T>;
}

const NO_SPAN: SpanHandle = { set() {} };

/** Tracing that makes no spans and lets trace headers through. */
export const NO_TRACING: Tracing = {
  enabled: false,
  injects: false,
  inSpan: (_name, _options, fn) => fn(NO_SPAN),
};

/**
 * Whether a propagator is installed, i.e. Deno's OpenTelemetry is on: only
 * then does injecting a valid span context write a `traceparent`.
 */
export function isTraceContextInjected(): boolean {
  const probe = trace.wrapSpanContext({
    traceId: "0af7651916cd43dd8448eb211c80319c",
    spanId: "b7ad6b7169203331",
    traceFlags: 1,
  });
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), probe), carrier);
  return carrier.traceparent !== undefined;
}

function endWith(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
  span.end();
}

/** Ends a span whose answer has been sent, failed when `failure` names a code. */
function endAfterAnswer(span: Span, failure: SpanOptions["failure"]): void {
  const code = failure?.();
  if (code !== undefined) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: code });
  }
  span.end();
}

/** Creates the sidecar's tracing: spans when `enabled`, through the global (Deno's) tracer provider. */
export function createTracing(enabled: boolean): Tracing {
  const injects = isTraceContextInjected();
  if (!enabled) return { ...NO_TRACING, injects };
  const tracer = trace.getTracer(TRACER_SCOPE);
  return {
    enabled,
    injects,
    inSpan(name, options, fn) {
      const spanOptions = options.attributes
        ? { attributes: options.attributes }
        : {};
      return tracer.startActiveSpan(name, spanOptions, async (span) => {
        const handle: SpanHandle = {
          set: (attributes) => span.setAttributes(attributes),
        };
        let result;
        try {
          result = await fn(handle);
        } catch (error) {
          endWith(span, error);
          throw error;
        }
        if (options.until === undefined) span.end();
        else {
          const end = () => endAfterAnswer(span, options.failure);
          options.until.then(end, end);
        }
        return result;
      });
    },
  };
}
