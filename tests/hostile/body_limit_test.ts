import assert from "node:assert/strict";
import { bodyText, statusOf, type WireMessage } from "../edge/_http.ts";
import { createHarness } from "../support/harness.ts";
import { withDeadline } from "../support/deadline.ts";
import { sendBody } from "./_client.ts";
import { startRecordingUpstream } from "./_upstreams.ts";

const LIMIT = 1024 * 1024;
const OVERSIZED = 50 * 1024 * 1024;
const WRITE = 64 * 1024;

const TOO_LARGE = {
  message:
    `Request body is larger than the limit of ${LIMIT} bytes (-max-request-body-bytes)`,
  type: "RequestEntityTooLarge",
  param: null,
  code: 413,
};

function assertTooLarge(response: WireMessage | undefined): void {
  assert.ok(response, "no whole answer arrived");
  assert.equal(statusOf(response), 413);
  assert.deepEqual(JSON.parse(bodyText(response)).error, TOO_LARGE);
}

function portOf(base: string): number {
  return Number(new URL(base).port);
}

for (const chunked of [false, true]) {
  const framing = chunked ? "a chunked body" : "a declared Content-Length";
  Deno.test(
    `P/D: ${framing} over the limit is answered 413 and neither leg sees a request`,
    async () => {
      await using h = await createHarness({
        config: { maxRequestBodyBytes: LIMIT },
      });
      const sent = await sendBody({
        port: portOf(h.listen()),
        path: "/v1/chat/completions",
        headers: [["x-prefiller-host-port", h.prefillerHeader]],
        bodyBytes: OVERSIZED,
        chunked,
      });
      assertTooLarge(sent.response);
      assert.ok(sent.written < OVERSIZED, "the whole body was taken in");
      assert.equal(h.prefill.requests.length, 0);
      assert.equal(h.decode.requests.length, 0);
      const line = await h.accessLine();
      assert.equal(line.error_code, "request_body_too_large");
    },
  );
}

Deno.test(
  "passthrough: a declared Content-Length over the limit is answered 413 before the decoder is asked",
  async () => {
    await using decoder = startRecordingUpstream();
    await using h = await createHarness({
      config: { maxRequestBodyBytes: LIMIT, modelServerPort: decoder.port },
    });
    for (const path of ["/tokenize", "/v1/completions"]) {
      const sent = await sendBody({
        port: portOf(h.listen()),
        path,
        bodyBytes: OVERSIZED,
        chunked: false,
      });
      assertTooLarge(sent.response);
    }
    assert.equal(decoder.connections.length, 0);
  },
);

Deno.test(
  "passthrough: a chunked body past the limit is cut: 413 to the client, the decoder's request aborted at the limit",
  async () => {
    await using decoder = startRecordingUpstream();
    await using h = await createHarness({
      config: { maxRequestBodyBytes: LIMIT, modelServerPort: decoder.port },
    });
    const sent = await sendBody({
      port: portOf(h.listen()),
      path: "/tokenize",
      bodyBytes: OVERSIZED,
      chunked: true,
      chunkBytes: WRITE,
    });
    assertTooLarge(sent.response);
    const seen = await withDeadline(
      decoder.firstConnection,
      5000,
      "decoder connection",
    );
    await withDeadline(
      seen.closed,
      5000,
      "the sidecar closing the decoder's connection",
    );
    assert.match(seen.head ?? "", /^POST \/tokenize HTTP\/1.1/);
    assert.match(seen.head ?? "", /transfer-encoding: chunked/i);
    // The limit's worth plus the write that passed it, with chunk framing.
    assert.ok(
      seen.bodyBytes <= LIMIT + 2 * WRITE,
      `decoder got ${seen.bodyBytes} body bytes`,
    );
  },
);

Deno.test(
  "passthrough: a chunked body within the limit streams through whole",
  async () => {
    await using h = await createHarness({
      config: { maxRequestBodyBytes: LIMIT },
    });
    const bodyBytes = LIMIT - 1000;
    const sent = await sendBody({
      port: portOf(h.listen()),
      path: "/tokenize",
      bodyBytes,
      chunked: true,
      fill: 0x20,
    });
    assert.ok(sent.response, "no answer");
    assert.notEqual(statusOf(sent.response), 413);
    const [seen] = h.decode.requests;
    assert.equal(seen?.bodyText.length, bodyBytes);
  },
);

Deno.test(
  "passthrough: a chunked body passing the limit after the decoder answered cuts the answer off and closes both sides",
  async () => {
    await using decoder = startRecordingUpstream({ answerOnHead: true });
    await using h = await createHarness({
      config: { maxRequestBodyBytes: LIMIT, modelServerPort: decoder.port },
    });
    const sent = await sendBody({
      port: portOf(h.listen()),
      path: "/tokenize",
      bodyBytes: OVERSIZED,
      chunked: true,
      pauseAt: 4 * WRITE,
      ms: 10_000,
    });
    // The 200 went out before the limit was passed; its body never ends.
    assert.equal(sent.response, undefined);
    assert.match(sent.text, /^HTTP\/1.1 200 OK/);
    assert.equal(sent.text.includes("\r\n0\r\n\r\n"), false);
    assert.equal(sent.closed, true, "the client's connection was left open");
    const seen = await withDeadline(
      decoder.firstConnection,
      5000,
      "decoder connection",
    );
    await withDeadline(
      seen.closed,
      5000,
      "the sidecar closing the decoder's connection",
    );
    assert.ok(seen.bodyBytes <= LIMIT + 2 * WRITE);
    await h.nextLog((line) =>
      line.level === "warn" &&
      String(line.msg).startsWith("request body passed the limit")
    );
  },
);
