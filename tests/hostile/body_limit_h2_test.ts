/**
 * The body limit over HTTP/2, where a body needs neither a Content-Length
 * nor chunked framing: the sidecar serves h2c to clients that open with the
 * HTTP/2 preface and h2 by ALPN over TLS. Deno's fetch cannot send h2c, so
 * the client is `node:http2`.
 */

import assert from "node:assert/strict";
import http2 from "node:http2";
import { generateSelfSignedCertificate } from "../../src/tls.ts";
import { createHarness } from "../support/harness.ts";
import { withDeadline } from "../support/deadline.ts";
import { startRecordingUpstream } from "./_upstreams.ts";

const LIMIT = 1024 * 1024;
const OVERSIZED = 50 * 1024 * 1024;
const WRITE = 64 * 1024;

/** What the HTTP/2 client saw of one request. */
interface H2Exchange {
  /** The answer's status, or undefined when the stream was reset first. */
  readonly status: number | undefined;
  readonly errorCode: string | undefined;
  readonly body: string;
  /** Body bytes handed to the stream before the answer or the reset came. */
  readonly written: number;
  /** The stream's RST_STREAM code (0 when none). */
  readonly rstCode: number | undefined;
}

/**
 * POSTs `bodyBytes` over one HTTP/2 stream without Content-Length unless
 * `headers` gives one, writing until the sidecar answers or resets the
 * stream; resolves with what came back, or rejects after 15 s.
 */
async function postOverH2(
  options: {
    readonly base: string;
    readonly ca?: string;
    readonly path: string;
    readonly headers?: Readonly<Record<string, string>>;
    readonly bodyBytes: number;
  },
): Promise<H2Exchange> {
  const session = http2.connect(
    options.base,
    options.ca ? { ca: options.ca } : {},
  );
  session.on("error", () => {
    // Reported through the stream.
  });
  const stream = session.request({
    ":method": "POST",
    ":path": options.path,
    "content-type": "application/json",
    ...options.headers,
  });
  stream.setMaxListeners(0);
  let status: number | undefined;
  let errorCode: string | undefined;
  let body = "";
  let written = 0;
  const ended = new Promise<void>((resolve) => {
    stream.on("response", (headers) => {
      status = Number(headers[":status"]);
      const code = headers["x-pd-error-code"];
      errorCode = typeof code === "string" ? code : undefined;
    });
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => body += chunk);
    stream.on("end", resolve);
    stream.on("close", resolve);
    stream.on("error", () => resolve());
  });
  const chunk = new Uint8Array(WRITE).fill(0x61);
  const writing = (async () => {
    while (
      written < options.bodyBytes && status === undefined && !stream.destroyed
    ) {
      written += chunk.length;
      if (!stream.write(chunk)) {
        // The sidecar stopped reading: wait for room, an answer or the end.
        await Promise.race([
          new Promise((resolve) => stream.once("drain", resolve)),
          ended,
        ]);
      }
    }
    if (status === undefined && !stream.destroyed) stream.end();
  })();
  try {
    await withDeadline(ended, 15_000, "the HTTP/2 answer");
    return { status, errorCode, body, written, rstCode: stream.rstCode };
  } finally {
    stream.destroy();
    session.destroy();
    await writing.catch(() => {});
  }
}

function assertTooLarge(exchange: H2Exchange): void {
  assert.equal(exchange.status, 413);
  assert.equal(exchange.errorCode, "request_body_too_large");
  assert.deepEqual(JSON.parse(exchange.body).error, {
    message:
      `Request body is larger than the limit of ${LIMIT} bytes (-max-request-body-bytes)`,
    type: "RequestEntityTooLarge",
    param: null,
    code: 413,
  });
  assert.ok(
    exchange.written < OVERSIZED,
    `the whole body was taken in (${exchange.written} bytes)`,
  );
}

for (const tls of [false, true]) {
  const transport = tls ? "h2 over TLS" : "h2c";
  for (const pd of [true, false]) {
    const route = pd ? "P/D" : "passthrough";
    Deno.test(
      `${route} over ${transport}: a body without Content-Length past the limit is a 413 and no upstream is asked`,
      async () => {
        await using decoder = startRecordingUpstream();
        await using prefiller = startRecordingUpstream();
        await using h = await createHarness({
          config: { maxRequestBodyBytes: LIMIT, modelServerPort: decoder.port },
        });
        const pair = tls ? await generateSelfSignedCertificate() : undefined;
        const exchange = await postOverH2({
          base: h.listen(pair),
          ...(pair ? { ca: pair.cert } : {}),
          path: pd ? "/v1/chat/completions" : "/tokenize",
          headers: pd
            ? { "x-prefiller-host-port": `127.0.0.1:${prefiller.port}` }
            : {},
          bodyBytes: OVERSIZED,
        });
        assertTooLarge(exchange);
        assert.equal(prefiller.connections.length, 0);
        assert.equal(decoder.connections.length, 0);
        const line = await h.accessLine();
        assert.equal(line.error_code, "request_body_too_large");
      },
    );
  }
}

Deno.test(
  "h2c: a body longer than its Content-Length is reset by the runtime (PROTOCOL_ERROR) and no upstream is asked",
  async () => {
    await using decoder = startRecordingUpstream();
    await using prefiller = startRecordingUpstream();
    await using h = await createHarness({
      config: { maxRequestBodyBytes: LIMIT, modelServerPort: decoder.port },
    });
    const base = h.listen();
    for (const pd of [true, false]) {
      const exchange = await postOverH2({
        base,
        path: pd ? "/v1/chat/completions" : "/tokenize",
        headers: {
          "content-length": "10",
          ...(pd
            ? { "x-prefiller-host-port": `127.0.0.1:${prefiller.port}` }
            : {}),
        },
        bodyBytes: 4 * LIMIT,
      });
      assert.equal(exchange.status, undefined, exchange.body);
      assert.equal(exchange.rstCode, http2.constants.NGHTTP2_PROTOCOL_ERROR);
    }
    assert.equal(prefiller.connections.length, 0);
    assert.equal(decoder.connections.length, 0);
  },
);
