/**
 * @module
 * The prefill leg with its deadline and retries (delta §5, beyond it where
 * noted): `-prefill-timeout` bounds the whole leg, retries and backoffs
 * included; a connection error or a 502/503/504 is tried again up to
 * `-prefill-max-retries` times after a constant `-prefill-retry-backoff`,
 * never after a 4xx and never once the client has gone. Unlike the Go
 * sidecar, a retry moves to the next prefiller the routing header names.
 */

import { type Deadline, startDeadline } from "../deadline.ts";
import { ProxyError } from "../errors.ts";
import { FAILURE_CAUSES, type FailureCause } from "../metrics.ts";
import {
  UpstreamError,
  type UpstreamRequest,
  type WholeResponse,
} from "../upstream/client.ts";
import type { HeaderList } from "../upstream/headers.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import type { PdContext } from "./types.ts";
import {
  recordUpstreamError,
  statusErrorKind,
  transportCause,
} from "./_observe.ts";

/** The prefill settings a connector's context carries. */
export interface PrefillPolicy {
  /** `-prefill-timeout` in ms; 0 means none. */
  readonly timeoutMs: number;
  /** `-prefill-max-retries`. */
  readonly maxRetries: number;
  /** `-prefill-retry-backoff` in ms. */
  readonly backoffMs: number;
}

/** No deadline, no retries: what a context without a policy gets. */
const NO_POLICY: PrefillPolicy = { timeoutMs: 0, maxRetries: 0, backoffMs: 0 };

/** A prefill answer and the prefiller that gave it. */
export interface PrefillReply extends WholeResponse {
  readonly target: UpstreamTarget;
}

/** Options of `sendPrefillLeg`. */
export interface PrefillLegOptions {
  readonly headers?: HeaderList;
  /** Aborts the leg; the client's signal when absent. */
  readonly signal?: AbortSignal;
  /**
   * Whether a failed attempt may be sent again. Concurrent connectors say
   * no: their decode leg, already sent, names this prefiller and its
   * rendezvous (bootstrap room, transfer id), which a second prefill could
   * not join safely.
   */
  readonly retry?: boolean;
}

/**
 * Codes of a prefill leg that failed on the prefiller's side (unreachable,
 * too slow, a 5xx, an answer that is not JSON): what `-prefill-failure-policy
 * =decode` falls back on. A 4xx is the request's fault and is never among them.
 */
export const PREFILL_FAILURE_CODES: ReadonlySet<string> = new Set([
  "prefill_unreachable",
  "prefill_connect_timeout",
  "prefill_timeout",
  "prefill_error",
  "prefill_bad_answer",
  "mooncake_bootstrap_failed",
]);

/** Statuses the Go sidecar retries (delta §5): gateway errors, which a later attempt may not meet. */
function isRetryableStatus(status: number): boolean {
  return status === 502 || status === 503 || status === 504;
}

/** Counts a retry by the failed attempt's cause, and on the access line. */
function recordRetry(ctx: PdContext, previous: string, retries: number): void {
  const cause: FailureCause = /^\d+$/.test(previous)
    ? "status_5xx"
    : previous === "connect_timeout"
    ? "timeout"
    : FAILURE_CAUSES.find((known) => known === previous) ?? "other";
  ctx.observation.metrics.retry(cause);
  ctx.observation.access.retries = retries;
}

/** Waits `ms`, or less when `signal` fires. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The error of a prefill leg that got no answer, by the cause of the last attempt. */
function unreachable(target: UpstreamTarget, error: unknown): ProxyError {
  const failure = error instanceof UpstreamError ? error : undefined;
  if (failure?.kind === "connect_timeout") {
    return new ProxyError(
      504,
      `Cannot connect to prefill server "${target.hostPort}": ${failure.detail}`,
      { code: "prefill_connect_timeout", cause: error },
    );
  }
  return new ProxyError(
    502,
    `Cannot reach prefill server "${target.hostPort}": ${
      failure?.detail ?? String(error)
    }`,
    { code: "prefill_unreachable", cause: error },
  );
}

function timedOut(ctx: PdContext, target: UpstreamTarget): ProxyError {
  const ms = ctx.prefillPolicy?.timeoutMs ?? 0;
  return new ProxyError(
    504,
    `Prefill on "${target.hostPort}" did not finish within ${ms} ms (-prefill-timeout)`,
    { code: "prefill_timeout" },
  );
}

/** The prefiller of attempt `attempt`: the chosen one first, then the header's others in turn. */
function targetOf(ctx: PdContext, attempt: number): UpstreamTarget {
  const targets = ctx.prefillers ?? [];
  return targets.length === 0
    ? ctx.prefiller
    : targets[attempt % targets.length] ?? ctx.prefiller;
}

/**
 * Sends the prefill leg and reads its answer, as the module doc says.
 * Returns the last answer (a 2xx, or an error status to judge); throws a
 * `ProxyError` when no answer came or the deadline passed.
 */
export async function sendPrefillLeg(
  ctx: PdContext,
  body: string,
  options: PrefillLegOptions = {},
): Promise<PrefillReply> {
  const policy = ctx.prefillPolicy ?? NO_POLICY;
  const client = options.signal ?? ctx.signal;
  const deadline = startDeadline(client, policy.timeoutMs);
  try {
    return await attemptPrefill(ctx, body, options, {
      policy,
      client,
      deadline,
    });
  } finally {
    deadline.clear();
  }
}

/** The attempts of one prefill leg, all within one deadline. */
async function attemptPrefill(
  ctx: PdContext,
  body: string,
  options: PrefillLegOptions,
  { policy, client, deadline }: {
    policy: PrefillPolicy;
    client: AbortSignal;
    deadline: Deadline;
  },
): Promise<PrefillReply> {
  const signal = deadline.signal;
  const attempts = options.retry === false ? 1 : 1 + policy.maxRetries;
  let target = ctx.prefiller;
  let lastError: unknown;
  for (let attempt = 0;; attempt++) {
    target = targetOf(ctx, attempt);
    const request: UpstreamRequest = {
      method: "POST",
      headers: options.headers ?? ctx.headers,
      body,
      signal,
    };
    const url = target === ctx.prefiller
      ? ctx.prefillUrl
      : ctx.upstream.url(target.hostPort, ctx.pathAndQuery);
    ctx.log.debug("sending prefill request", { to: target.hostPort, attempt });
    let previous: string;
    try {
      const reply = await ctx.upstream.sendAndRead(url, request);
      recordUpstreamError(ctx, "prefill", statusErrorKind(reply.status));
      if (!isRetryableStatus(reply.status) || attempt + 1 >= attempts) {
        return { ...reply, target };
      }
      previous = String(reply.status);
    } catch (error) {
      if (deadline.expired && !client.aborted) {
        recordUpstreamError(ctx, "prefill", "timeout");
        throw timedOut(ctx, target);
      }
      recordUpstreamError(ctx, "prefill", transportCause(error));
      lastError = error;
      if (client.aborted || attempt + 1 >= attempts) break;
      previous = error instanceof UpstreamError ? error.kind : "error";
    }
    const next = targetOf(ctx, attempt + 1);
    recordRetry(ctx, previous, attempt + 1);
    ctx.log.info("retrying prefill request", {
      attempt: attempt + 1,
      target: next.hostPort,
      previous_code: previous,
    });
    await pause(policy.backoffMs, signal);
    if (deadline.expired && !client.aborted) throw timedOut(ctx, target);
    if (client.aborted) break;
  }
  throw unreachable(target, lastError ?? new Error("client disconnected"));
}
