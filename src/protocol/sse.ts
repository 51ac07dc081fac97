/**
 * @module
 * Reading the start of an OpenAI answer to tell whether the decoder declined
 * it with `finish_reason: "cache_threshold"` (vLLM RFC #24256) or is
 * answering. Pure functions over text; the caller keeps the bytes.
 */

import {
  FIELD_CHOICES,
  FIELD_FINISH_REASON,
  FINISH_REASON_CACHE_THRESHOLD,
} from "./fields.ts";
import { isJsonObject, type JsonObject } from "./request.ts";

/**
 * What an answer or stream event says: the decoder declined for lack of
 * cached prompt, it is answering, or (a stream's role chunk, a comment)
 * nothing yet.
 */
export type AnswerVerdict = "threshold" | "answer" | "preamble";

/** SSE events end with a blank line, in any of the spec's line endings. */
const EVENT_END = /\r\n\r\n|\n\n|\r\r/g;

/** The complete events of `text` from offset `from`, and where the incomplete rest starts. */
export function splitSseEvents(
  text: string,
  from: number,
): { readonly events: string[]; readonly rest: number } {
  const events: string[] = [];
  EVENT_END.lastIndex = from;
  let start = from;
  for (let match = EVENT_END.exec(text); match; match = EVENT_END.exec(text)) {
    events.push(text.slice(start, match.index));
    start = match.index + match[0].length;
  }
  return { events, rest: start };
}

/** The data of an SSE event: its `data:` lines joined by newlines, or undefined when it has none. */
export function sseEventData(event: string): string | undefined {
  let data: string | undefined;
  for (const line of event.split(/\r\n|\n|\r/)) {
    if (!line.startsWith("data:")) continue;
    const value = line.slice(line.startsWith("data: ") ? 6 : 5);
    data = data === undefined ? value : `${data}\n${value}`;
  }
  return data;
}

function choicesOf(answer: JsonObject): readonly unknown[] | undefined {
  const choices = answer[FIELD_CHOICES];
  return Array.isArray(choices) ? choices : undefined;
}

function isEmptyText(value: unknown): boolean {
  return value === undefined || value === null || value === "";
}

/** Whether a streamed choice carries nothing generated: a role chunk or an empty delta. */
function isPreambleChoice(choice: unknown): boolean {
  if (!isJsonObject(choice)) return false;
  if (!isEmptyText(choice[FIELD_FINISH_REASON])) return false;
  if (!isEmptyText(choice.text)) return false;
  const delta = choice.delta;
  if (delta === undefined || delta === null) return true;
  if (!isJsonObject(delta)) return false;
  return Object.entries(delta).every(([key, value]) =>
    key === "role" || isEmptyText(value)
  );
}

/** Whether any choice ended with `cache_threshold`. */
function isThreshold(choices: readonly unknown[]): boolean {
  return choices.some((choice) =>
    isJsonObject(choice) &&
    choice[FIELD_FINISH_REASON] === FINISH_REASON_CACHE_THRESHOLD
  );
}

/** The verdict of a whole (non-streaming) answer's text. */
export function judgeAnswer(answer: JsonObject): AnswerVerdict {
  const choices = choicesOf(answer);
  return choices && isThreshold(choices) ? "threshold" : "answer";
}

/**
 * The verdict of one stream event. Anything that is not a chunk with
 * choices (`[DONE]`, an error frame, a Responses API event) is an answer
 * to relay; a chunk whose choices hold nothing generated yet is preamble.
 */
export function judgeSseEvent(event: string): AnswerVerdict {
  const data = sseEventData(event);
  if (data === undefined) return "preamble";
  let chunk: unknown;
  try {
    chunk = JSON.parse(data);
  } catch {
    return "answer";
  }
  if (!isJsonObject(chunk)) return "answer";
  const choices = choicesOf(chunk);
  if (choices === undefined || choices.length === 0) return "answer";
  if (isThreshold(choices)) return "threshold";
  return choices.every(isPreambleChoice) ? "preamble" : "answer";
}

/** Whether `response` is an event stream (its content type, parameters aside). */
export function isEventStream(response: Response): boolean {
  return (response.headers.get("content-type") ?? "").includes(
    "text/event-stream",
  );
}
