/**
 * @module
 * The steps every connector shares: sending the prefill leg and judging its
 * answer, and sending the decode leg whose answer streams to the client.
 * Connectors hold only what makes their protocol different.
 */

import { type ErrorStatus, ProxyError } from "../errors.ts";
import { isJsonObject, scanJsonObject } from "../protocol/request.ts";
import type { ScannedObject } from "../protocol/json_object.ts";
import type { WholeResponse } from "../upstream/client.ts";
import type { HeaderList } from "../upstream/headers.ts";
import { upstreamStatusError } from "../upstream/status_error.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import { type PrefillReply, sendPrefillLeg } from "./_prefill.ts";
import type { PdContext } from "./types.ts";
import {
  observeDecode,
  observePrefill,
  recordLegFailure,
  recordPrefillFailure,
  statusCause,
} from "./_observe.ts";

/** Options of one leg: its own headers or abort signal instead of the request's. */
export interface LegOptions {
  /** The leg's headers; `ctx.headers` when absent. */
  readonly headers?: HeaderList;
  /** Aborts the leg; the client's signal when absent. */
  readonly signal?: AbortSignal;
  /** Whether a failed prefill may be retried (`-prefill-max-retries`); yes when absent. */
  readonly retry?: boolean;
}

/**
 * Sends the prefill leg and reads its answer, with the deadline and retries
 * of `ctx.prefillPolicy`; throws a `ProxyError` when no answer arrives.
 */
export function sendPrefill(
  ctx: PdContext,
  body: string,
  options: LegOptions = {},
): Promise<PrefillReply> {
  ctx.log.trace("prefill request", { body });
  return observePrefill(ctx, () => sendPrefillLeg(ctx, body, options));
}

/**
 * Throws when the client has gone: a leg not yet sent must not start for
 * nobody (a decode would hold GPU memory for a reader that left).
 */
export function ensureClientPresent(signal: AbortSignal): void {
  if (signal.aborted) {
    throw new ProxyError(
      499,
      "Client disconnected before the request ended",
      { code: "client_disconnected" },
    );
  }
}

/** A prefiller's 5xx the client may see as is; others become 502. */
function isGatewayStatus(status: number): status is ErrorStatus {
  return status >= 500 && status <= 504;
}

function errorDetail(text: string): string {
  try {
    const body: unknown = JSON.parse(text);
    if (isJsonObject(body)) {
      const nested = body.error;
      if (isJsonObject(nested) && typeof nested.message === "string") {
        return nested.message;
      }
      if (typeof body.message === "string") return body.message;
    }
  } catch {
    // Not JSON: the text itself is the best description.
  }
  const trimmed = text.trim();
  return trimmed.length > 200
    ? `${trimmed.slice(0, 200)}…`
    : trimmed || "(empty body)";
}

/**
 * Throws unless the prefill succeeded. A 4xx is the client's fault and is
 * relayed as the prefiller sent it (status, body, content type); any other
 * status becomes the sidecar's own error naming the prefiller (a gateway
 * status as it came, others as 502).
 */
export function ensurePrefillSucceeded(
  ctx: PdContext,
  reply: WholeResponse & { readonly target?: UpstreamTarget },
): void {
  if (reply.status >= 200 && reply.status < 300) return;
  recordPrefillFailure(ctx, statusCause(reply.status));
  const prefiller = reply.target ?? ctx.prefiller;
  ctx.log.error("prefill request failed", {
    status: reply.status,
    body: reply.text.slice(0, 1000),
  });
  throw upstreamStatusError(reply, {
    upstream: `Prefill server "${prefiller.hostPort}"`,
    detail: errorDetail(reply.text),
    rejectedCode: "prefill_rejected",
    failedCode: "prefill_error",
    failedStatus: isGatewayStatus(reply.status) ? reply.status : 502,
  });
}

/** Checks the prefill succeeded and returned a JSON object; throws a 502 otherwise. */
export function parsePrefillReply(
  ctx: PdContext,
  reply: WholeResponse & { readonly target?: UpstreamTarget },
): ScannedObject {
  ensurePrefillSucceeded(ctx, reply);
  const answer = scanJsonObject(reply.text);
  if (answer === undefined) {
    ctx.observation.timing.prefillOk = false;
    recordLegFailure(ctx.observation.metrics, "prefill", "bad_answer");
    throw new ProxyError(
      502,
      `Prefill server "${
        (reply.target ?? ctx.prefiller).hostPort
      }" answered ${reply.status} without a JSON object body: ${
        errorDetail(reply.text)
      }`,
      { code: "prefill_bad_answer" },
    );
  }
  return answer;
}

/** Sends the decode leg to the local decoder; its answer streams to the client. */
export function sendDecode(
  ctx: PdContext,
  body: string,
  options: LegOptions = {},
): Promise<Response> {
  ctx.log.debug("sending request to decoder", { to: ctx.decoder });
  ctx.log.trace("decode request", { body });
  const headers = options.headers ?? ctx.headers;
  return observeDecode(ctx, () =>
    ctx.decode(
      options.signal ? { headers, body, signal: options.signal } : {
        headers,
        body,
      },
    ));
}

/** Sends the prefill leg and throws unless it succeeded; its answer is not needed. */
export async function runPrefill(
  ctx: PdContext,
  body: string,
  options: LegOptions = {},
): Promise<void> {
  ensurePrefillSucceeded(ctx, await sendPrefill(ctx, body, options));
}

/** `headers` with `name` set to `value`, replacing any value the client sent. */
export function withHeader(
  headers: HeaderList,
  name: string,
  value: string,
): HeaderList {
  const out: HeaderList = headers.filter(([present]) => present !== name);
  out.push([name, value]);
  return out;
}
