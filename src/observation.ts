/**
 * @module
 * What a request carries for its metrics, spans and timings, made by the
 * request-context middleware and handed down to the connectors' legs; and
 * the span and `Server-Timing` header around a P/D request.
 */

import type { Attributes } from "@opentelemetry/api";
import type { AccessRecord } from "./context.ts";
import type { Metrics } from "./metrics.ts";
import {
  buildServerTiming,
  elapsedMs,
  HEADER_SERVER_TIMING,
  type RequestTiming,
} from "./timing.ts";
import { SPAN_REQUEST, type Tracing } from "./tracing.ts";

/** A request's observation: where its moments go and what records them. */
export interface RequestObservation {
  readonly timing: RequestTiming;
  /** The access line's record: the retry loop sets `retries` and `fallback` here. */
  readonly access: AccessRecord;
  readonly metrics: Metrics;
  readonly tracing: Tracing;
  /** Settles once the answer has been sent or the client has gone. */
  readonly completed: Promise<void>;
}

/** What the `forward_request` span says about the request from the start. */
export interface PdSpanFacts {
  readonly connector: string;
  readonly api: string;
  readonly path: string;
  /** `host:port` of the prefiller; absent when decoding from a KV-source peer. */
  readonly prefillTarget?: string;
  /** `host:port` of the KV-source peer the decoder pulls from. */
  readonly kvCacheSource?: string;
}

// The Go sidecar's `llm_d.openai.api` values; it reports /v1/messages as chat (delta §9.2).
const OPENAI_API_NAMES: Readonly<Record<string, string>> = {
  chat: "chat_completions",
  messages: "chat_completions",
};

function spanAttributes(facts: PdSpanFacts): Attributes {
  const attributes: Attributes = {
    "llm_d.pd_proxy.connector": facts.connector,
    "llm_d.pd_proxy.request_path": facts.path,
    "llm_d.openai.api": OPENAI_API_NAMES[facts.api] ?? facts.api,
    "llm_d.pd_proxy.disaggregation_used": facts.prefillTarget !== undefined,
  };
  if (facts.prefillTarget !== undefined) {
    attributes["llm_d.pd_proxy.prefill_target"] = facts.prefillTarget;
  }
  if (facts.kvCacheSource !== undefined) {
    attributes["llm_d.pd_proxy.kv_cache_source"] = facts.kvCacheSource;
  }
  return attributes;
}

/** The timing attributes the Go sidecar records on completion (delta §9.2), in ms. */
function timingAttributes(timing: RequestTiming): Attributes {
  const attributes: Attributes = {};
  const entries: [string, number | undefined][] = [
    [
      "llm_d.pd_proxy.prefill_duration_ms",
      elapsedMs(timing.prefillSent, timing.prefillAnswered),
    ],
    [
      "llm_d.pd_proxy.true_ttft_ms",
      elapsedMs(timing.started, timing.decodeAnswered),
    ],
  ];
  for (const [key, value] of entries) {
    if (value !== undefined) attributes[key] = value;
  }
  return attributes;
}

/**
 * Runs a P/D request inside its `forward_request` span, which ends once the
 * answer has been sent, and puts what is known of its timing in a
 * `Server-Timing` header of the answer.
 */
export function runObservedPd(
  observation: RequestObservation,
  facts: PdSpanFacts,
  run: () => Promise<Response>,
): Promise<Response> {
  const { tracing, timing, completed, access } = observation;
  const options = {
    attributes: spanAttributes(facts),
    until: completed,
    failure: () => access.errorCode,
  };
  return tracing.inSpan(SPAN_REQUEST, options, async (span) => {
    const response = await run();
    span.set(timingAttributes(timing));
    // The runner sent the request to the decoder alone (the Responses API's
    // stored state) and dropped the prefiller it never asked from the record.
    if (
      facts.prefillTarget !== undefined && access.prefillTarget === undefined
    ) {
      span.set({ "llm_d.pd_proxy.disaggregation_used": false });
    }
    const value = buildServerTiming(timing);
    if (value === undefined) return response;
    try {
      response.headers.append(HEADER_SERVER_TIMING, value);
      return response;
    } catch {
      // A response whose headers are immutable (fetch's own): copy them.
      const headers = new Headers(response.headers);
      headers.append(HEADER_SERVER_TIMING, value);
      return new Response(response.body, {
        status: response.status,
        statusText: response.statusText,
        headers,
      });
    }
  });
}
