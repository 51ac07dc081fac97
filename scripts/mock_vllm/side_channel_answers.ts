/**
 * The answers the KV side channels of every protocol give: KV handed over,
 * a refusal, a wait that ended empty; and the JSON a peer sends them.
 *
 * @module
 */

import type { SideChannelAnswer } from "./kv_connector.ts";
import { isRecord, parseJsonBody } from "./parse_request.ts";

/** A side-channel refusal: `reason` is both the answer's body and what the peer's record shows. */
export function refusal(
  status: number,
  reason: string,
  key: unknown,
): SideChannelAnswer {
  return { status, body: { reason }, key, reason };
}

/** A side-channel answer handing over `numTokens` of KV. */
export function tokensAnswer(
  numTokens: number,
  key: unknown,
): SideChannelAnswer {
  return { status: 200, body: { num_tokens: numTokens }, key };
}

/**
 * The refusal for a side-channel wait that ended without its value: a
 * deadline is a 404 saying `timedOut` (nothing came), a failure is itself.
 */
export function refusalOfWait(
  outcome: { readonly status: number; readonly reason: string },
  key: unknown,
  timedOut: string,
): SideChannelAnswer {
  return outcome.status === 504
    ? refusal(404, timedOut, key)
    : refusal(outcome.status, outcome.reason, key);
}

/** The JSON object a peer sent to a side channel; anything else reads as `{}`. */
export function readPeerRequest(
  text: string,
): Readonly<Record<string, unknown>> {
  const parsed = parseJsonBody(text);
  return parsed.ok && isRecord(parsed.value) ? parsed.value : {};
}
