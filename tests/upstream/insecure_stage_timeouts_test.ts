/**
 * A stage that skips certificate verification goes through undici, whose
 * client gives up on an answer after 300 s without headers or body bytes by
 * default. fetch, used on every other stage, has no such limit; the sidecar's
 * own flags bound these waits. A slow first token (a long vLLM queue) or a
 * long non-streaming generation must not be cut on that stage alone.
 *
 * undici's timers run on its own clock, which its `tick` (exported for tests)
 * advances, so five minutes pass without waiting for them.
 */

import assert from "node:assert/strict";
import https from "node:https";
import { generateSelfSignedCertificate } from "../../src/tls.ts";
import { chatBody, createHarness, jsonHeaders } from "../support/harness.ts";
import { within } from "../support/deadline.ts";

/** undici's internal clock: `tick(ms)` moves it on by `ms` and runs the timers due. */
interface UndiciTimers {
  tick(delay?: number): void;
}

async function undiciTimers(): Promise<UndiciTimers> {
  const timers: unknown = await import("undici/lib/util/timers.js");
  const tick = typeof timers === "object" && timers !== null &&
      "tick" in timers && typeof timers.tick === "function"
    ? timers.tick
    : undefined;
  if (tick === undefined) throw new Error("undici's timers have no tick");
  return { tick: (delay) => tick(delay) };
}

/** Past undici's 300 s default header and body timeouts. */
const PAST_UNDICI_DEFAULTS_MS = 301_000;

/** Moves undici's clock past its defaults: a first tick activates timers set since the last one. */
async function letFiveMinutesPass(): Promise<void> {
  const timers = await undiciTimers();
  timers.tick(0);
  timers.tick(PAST_UNDICI_DEFAULTS_MS);
}

/**
 * An HTTP/1.1 TLS decoder, as uvicorn is (undici's HTTP/2 client times out
 * on the runtime's clock instead), whose answer's head (`late: "head"`) or
 * first body bytes (`late: "body"`) wait for `release`.
 */
async function startSlowDecoder(late: "head" | "body", answer: string) {
  const { cert, key } = await generateSelfSignedCertificate();
  const seen = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const server = https.createServer({ cert, key }, (request, response) => {
    request.resume();
    request.on("end", async () => {
      seen.resolve();
      if (late === "head") await release.promise;
      response.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
      });
      response.flushHeaders();
      await release.promise;
      response.end(answer);
    });
  });
  await new Promise<void>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve())
  );
  const address = server.address();
  if (typeof address !== "object" || address === null) {
    throw new Error("the decoder has no port");
  }
  return {
    port: address.port,
    seen: seen.promise,
    release: () => release.resolve(),
    [Symbol.asyncDispose]: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const ANSWER = 'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n' +
  "data: [DONE]\n\n";

for (const late of ["head", "body"] as const) {
  Deno.test(
    `an unverified TLS decoder may take over 5 minutes before its ${
      late === "head" ? "answer's head" : "first token"
    }`,
    async () => {
      await using decoder = await startSlowDecoder(late, ANSWER);
      await using h = await createHarness({
        config: {
          modelServerPort: decoder.port,
          tlsStages: ["decoder"],
          insecureSkipVerifyStages: ["decoder"],
        },
      });
      const pending = h.request("/v1/chat/completions", {
        method: "POST",
        headers: jsonHeaders(),
        body: chatBody({ stream: true }),
      });
      await within(decoder.seen, 5000, "the decoder got no request");
      const response = late === "head" ? undefined : await within(
        pending,
        5000,
        "the decoder's head was not relayed",
      );
      await letFiveMinutesPass();
      decoder.release();
      const answer = response ??
        await within(pending, 5000, "no answer once the decoder answered");
      assert.equal(answer.status, 200);
      assert.equal(
        await within(answer.text(), 5000, "the stream did not end"),
        ANSWER,
      );
    },
  );
}
