/**
 * @module
 * Responses API requests that need the state vLLM keeps per engine
 * (`serving_responses.py`'s response store): on P/D the decoder produces and
 * stores every response, so such a request cannot be split across engines.
 */

import { FIELD_BACKGROUND, FIELD_PREVIOUS_RESPONSE_ID } from "./fields.ts";
import type { ApiKind } from "./api.ts";
import { rawMember } from "./json_object.ts";
import type { GenerationRequest } from "./request.ts";

/** Why a Responses API request must run on the decoder alone. */
export type DecoderStateCause = "previous_response_id" | "background";

/**
 * The reason `request` needs the decoder's response store, or undefined. A
 * `previous_response_id` names a response only the decoder stored (a
 * prefiller answers 404 for it); `background: true` makes the prefiller
 * answer a queued response with no KV handoff and run the work itself, where
 * the client's later `GET /v1/responses/{id}` (passed to the decoder) cannot
 * find it.
 */
export function decoderStateCause(
  api: ApiKind,
  request: GenerationRequest,
): DecoderStateCause | undefined {
  if (api !== "responses") return undefined;
  const previous = rawMember(request.scanned, FIELD_PREVIOUS_RESPONSE_ID);
  if (previous !== undefined && previous !== "null") {
    return "previous_response_id";
  }
  // vLLM's request model reads `background` leniently ("true", 1): anything
  // but absent, null or false goes to the decoder, where it is always safe.
  const background = rawMember(request.scanned, FIELD_BACKGROUND);
  return background === undefined || background === "null" ||
      background === "false"
    ? undefined
    : "background";
}
