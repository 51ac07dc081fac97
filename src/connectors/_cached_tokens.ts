/**
 * @module
 * Puts the prefiller's cached-token count into the decode answer the client
 * reads (base spec §5), touching as little as the answer allows: a JSON
 * answer is read whole (vLLM sends it at the end anyway) and rewritten; a
 * stream is rewritten only when it carries usage, since any JavaScript on
 * the stream's path costs CPU on every chunk (scripts/bench/experiments/
 * observer_cost.ts), and otherwise goes through natively, untouched.
 */

import { fixedResponse } from "../fixed_response.ts";
import { contentCodingOf } from "../upstream/headers.ts";
import { isEventStream } from "../protocol/sse.ts";
import { errorMessage, ProxyError } from "../errors.ts";
import type { CachedTokensPlace } from "../protocol/api.ts";
import {
  type CachedTokensRewrite,
  mayCarryUsage,
  rewriteCachedTokens,
  rewriteSseCachedTokens,
} from "../protocol/cached_tokens.ts";

/** What the rewrite needs to know about the request. */
export interface CachedTokensOptions {
  /** The prefiller's count, which the client must read. */
  readonly cached: number;
  /** Where the API reports it. */
  readonly place: CachedTokensPlace;
  /** Whether a stream carries usage (the client's `stream_options`, or always for some APIs). */
  readonly streamCarriesUsage: boolean;
  /** Address of the decoder, for the error when its answer breaks. */
  readonly decoder: string;
}

const encoder = new TextEncoder();

/** `response`'s headers without the length its new body no longer has. */
function headersWithoutLength(response: Response): Headers {
  const headers = new Headers(response.headers);
  headers.delete("content-length");
  return headers;
}

/**
 * Whether the body still has a content coding on it: the relay drops the
 * label of a body fetch decoded, so one left means a decoder that compressed
 * although the leg asked for `identity`. Its bytes are not text to rewrite;
 * decoded as UTF-8 they would be corrupted.
 */
function isStillEncoded(response: Response): boolean {
  const coding = contentCodingOf(response.headers);
  return coding !== undefined && coding !== "" && coding !== "identity";
}

/** The decode answer with the prefiller's cached tokens, or as it came when it carries no usage. */
export async function withPrefillCachedTokens(
  decode: Response,
  options: CachedTokensOptions,
): Promise<Response> {
  if (decode.status < 200 || decode.status >= 300 || decode.body === null) {
    return decode;
  }
  if (isStillEncoded(decode)) return decode;
  const status = { status: decode.status, statusText: decode.statusText };
  const rewrite = { cached: options.cached, place: options.place };
  if (isEventStream(decode)) {
    if (!options.streamCarriesUsage) return decode;
    return new Response(rewriteEvents(decode.body, rewrite), {
      ...status,
      headers: headersWithoutLength(decode),
    });
  }
  let text: string;
  try {
    text = await decode.text();
  } catch (error) {
    throw new ProxyError(
      502,
      `Decode server "${options.decoder}" broke its answer: ${
        errorMessage(error)
      }`,
      { code: "decoder_broke", cause: error },
    );
  }
  // fixedResponse replaces the Content-Length with the new body's.
  return fixedResponse(rewriteCachedTokens(text, rewrite) ?? text, {
    ...status,
    headers: decode.headers,
  });
}

/** Index just after the last complete SSE event in `text`, 0 when none. */
function completeEventsEnd(text: string): number {
  const lf = text.lastIndexOf("\n\n");
  const crlf = text.lastIndexOf("\r\n\r\n");
  return Math.max(lf < 0 ? 0 : lf + 2, crlf < 0 ? 0 : crlf + 4);
}

/**
 * The stream with its usage events rewritten, whatever the chunk boundaries:
 * an event split over reads is held until it is whole. Chunks without a
 * usage object pass as the very bytes read.
 */
export function rewriteEvents(
  body: ReadableStream<Uint8Array>,
  rewrite: CachedTokensRewrite,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let held = "";
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        const result = await reader.read();
        if (result.done) {
          held += decoder.decode();
          if (held !== "") {
            controller.enqueue(
              encoder.encode(rewriteSseCachedTokens(held, rewrite)),
            );
          }
          controller.close();
          return;
        }
        const wasHolding = held !== "";
        const text = held + decoder.decode(result.value, { stream: true });
        const end = completeEventsEnd(text);
        held = text.slice(end);
        if (end === 0) continue;
        const events = text.slice(0, end);
        if (mayCarryUsage(events)) {
          controller.enqueue(
            encoder.encode(rewriteSseCachedTokens(events, rewrite)),
          );
        } else if (!wasHolding && held === "") {
          controller.enqueue(result.value);
        } else {
          controller.enqueue(encoder.encode(events));
        }
        return;
      }
    },
    async cancel(reason) {
      await reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}
