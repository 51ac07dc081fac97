/**
 * The Responses API's per-instance state, as vLLM's `serving_responses.py`
 * keeps it: the ids of the responses this engine produced (`store`, default
 * true), so a `previous_response_id` another engine produced is a 404, and
 * `background: true` answered at once with a queued response.
 *
 * @module
 */

import { VllmError } from "./errors.ts";
import { buildResponse, type StreamMeta } from "./shapes.ts";

/** Ids of the responses one mock engine produced. */
export interface ResponsesStore {
  readonly ids: Set<string>;
}

/** An empty store, one per mock instance. */
export function createResponsesStore(): ResponsesStore {
  return { ids: new Set() };
}

/** Whether vLLM stores the response (`store` defaults to true). */
export function isStored(body: Record<string, unknown>): boolean {
  return body.store !== false;
}

/** Whether the request asks to run in the background. */
export function isBackground(body: Record<string, unknown>): boolean {
  return body.background === true;
}

/** Throws vLLM's 404 when `previous_response_id` names a response this engine never produced. */
export function checkPreviousResponse(
  store: ResponsesStore,
  body: Record<string, unknown>,
): void {
  const previous = body.previous_response_id;
  if (typeof previous !== "string" || store.ids.has(previous)) return;
  throw new VllmError(404, `Response with id '${previous}' not found.`, {
    type: "invalid_request_error",
    param: "response_id",
  });
}

/** vLLM refuses `background` without `store`. */
export function checkBackground(body: Record<string, unknown>): void {
  if (isBackground(body) && !isStored(body)) {
    throw new VllmError(
      400,
      "background can only be used when `store` is true",
      {
        type: "invalid_request_error",
      },
    );
  }
}

/** The queued response a background request is answered with: no output, no usage, no KV handoff. */
export function buildQueuedResponse(
  meta: StreamMeta,
): Record<string, unknown> {
  return { ...buildResponse(meta, undefined), status: "queued" };
}
