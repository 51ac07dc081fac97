/**
 * `continue_final_message` (vLLM chat): the model continues the last
 * assistant message instead of starting a new turn. The mock's "model"
 * always says the canned reply, so continuing means picking up the canned
 * reply where the final message's text stops. A final message that is not
 * a prefix of the canned reply (e.g. only the last fragment of a chunked
 * decode) restarts it, so the joined output shows the mistake.
 *
 * @module
 */

import { VllmError } from "./errors.ts";
import { cannedTokens } from "./tokens.ts";

/** Where a continued reply starts, in canned tokens; 0 for an ordinary request. */
export function continuationOffset(
  body: Readonly<Record<string, unknown>>,
  natural: number,
): number {
  if (body.continue_final_message !== true) return 0;
  // vLLM's ChatCompletionRequest validator; add_generation_prompt defaults to true.
  if (body.add_generation_prompt !== false) {
    throw new VllmError(
      400,
      "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
    );
  }
  const messages = Array.isArray(body.messages) ? body.messages : [];
  const last: unknown = messages.at(-1);
  if (typeof last !== "object" || last === null) return 0;
  const { role, content } = last as Record<string, unknown>;
  if (role !== "assistant" || typeof content !== "string") return 0;
  let text = "";
  for (const [index, token] of cannedTokens(natural).entries()) {
    if (text === content) return index;
    text += token;
  }
  return text === content ? natural : 0;
}
