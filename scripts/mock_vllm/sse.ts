/**
 * Server-sent events: encoding and a body stream that enqueues every event
 * as its own chunk, so a proxy test can watch events arrive one by one.
 *
 * @module
 */

import { yieldToEventLoop } from "./delay.ts";

/** The terminator vLLM sends after the last chat/completions event (also after an error frame). */
export const DONE_EVENT = "data: [DONE]\n\n";

/** `Content-Type` of vLLM's streams. */
export const SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8";

/** A `data:`-only event, as chat/completions streams use. */
export function dataEvent(data: unknown): string {
  return `data: ${JSON.stringify(data)}\n\n`;
}

/** A typed event, as the Responses API streams use. */
export function namedEvent(type: string, data: unknown): string {
  return `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** Marks a body error the mock raised on purpose, so the server's error hook stays quiet. */
export class StreamBreak extends Error {
  /** Builds the marker error. */
  constructor(message: string) {
    super(message);
    this.name = "StreamBreak";
  }
}

/** How one event stream ends and who hears about it. */
export interface EventStreamOptions {
  /** Error the body (breaking the connection) once this many events were handed over. */
  readonly breakAfter?: number | undefined;
  /** The client went away (the server cancelled the body). */
  readonly onCancel: () => void;
  /** The stream ended: fully handed over, broken on purpose, or its producer threw. */
  readonly onEnd: (state: "completed" | "failed" | "aborted") => void;
  /** Aborted by the mock (e.g. `close()`); a producer failure then counts as "aborted". */
  readonly signal: AbortSignal;
}

/**
 * Wraps an event producer in a byte stream. `highWaterMark: 0` makes the
 * producer run only when the server asks for the next chunk, so simulated
 * delays are real gaps on the wire, and an event-loop turn between events
 * lets each one reach the client in its own read.
 */
export function createEventStream(
  events: AsyncGenerator<string, void, void>,
  options: EventStreamOptions,
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let sent = 0;
  let ended = false;
  const end = (state: "completed" | "failed" | "aborted") => {
    ended = true;
    options.onEnd(state);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      // Breaking on the pull after the Nth event means the Nth chunk was already taken by the server.
      if (options.breakAfter !== undefined && sent >= options.breakAfter) {
        controller.error(
          new StreamBreak(`Stream broken on purpose after ${sent} events`),
        );
        end("failed");
        void events.return(undefined).catch(() => {});
        return;
      }
      let next: IteratorResult<string, void>;
      try {
        if (sent > 0) await yieldToEventLoop(options.signal);
        next = await events.next();
      } catch (error) {
        if (ended) return;
        controller.error(
          options.signal.aborted
            ? new StreamBreak("Stream aborted by the mock")
            : error,
        );
        end(options.signal.aborted ? "aborted" : "failed");
        return;
      }
      if (ended) return;
      if (next.done) {
        controller.close();
        end("completed");
        return;
      }
      controller.enqueue(encoder.encode(next.value));
      sent++;
    },
    cancel() {
      if (ended) return;
      ended = true;
      options.onCancel();
      void events.return(undefined).catch(() => {});
    },
  }, { highWaterMark: 0 });
}
