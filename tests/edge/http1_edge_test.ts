/**
 * What the sidecar, on the runtime's HTTP/1.1 server (Deno 2.9.6), does with
 * request framing at the edge of the protocol, and what of it reaches the
 * decoder. These pin today's behaviour: a runtime upgrade that changes any of
 * it fails here and is looked at on purpose.
 */

import assert from "node:assert/strict";
import { createHarness } from "../support/harness.ts";
import {
  closeQuietly,
  connectTo,
  readUntil,
  writeText,
} from "../support/sockets.ts";
import {
  bodyText,
  type Exchange,
  exchange,
  type ExchangeOptions,
  headerValues,
  type RecordingUpstream,
  startRecordingUpstream,
  statusOf,
} from "./_http.ts";

/** A sidecar in front of a recording decoder that answers each request with its request line. */
async function startEdge() {
  const decoder = startRecordingUpstream((request) => ({
    body: JSON.stringify({ seen: request.startLine }),
  }));
  const h = await createHarness({ config: { modelServerPort: decoder.port } });
  const port = Number(new URL(h.listen()).port);
  return {
    decoder,
    port,
    async [Symbol.asyncDispose]() {
      await h[Symbol.asyncDispose]();
      await decoder[Symbol.asyncDispose]();
    },
  };
}

/** Sends `request` on a fresh connection; returns what came back. */
async function sendRaw(
  port: number,
  request: string,
  options: ExchangeOptions = {},
) {
  const conn = await connectTo(port);
  try {
    return await exchange(conn, request, options);
  } finally {
    closeQuietly(conn);
  }
}

/** Sends `request` on a fresh connection; returns all that came back before the sidecar closed it. */
function sendUntilClosed(port: number, request: string) {
  return sendRaw(port, request, { untilClosed: true });
}

const POST = "POST /v1/completions HTTP/1.1\r\nHost: a\r\n";

/** Asserts a bare 400 that closes the connection and that nothing reached the decoder. */
function assertRefused(
  result: Exchange,
  decoder: RecordingUpstream,
): void {
  assert.deepEqual(result.responses.map(statusOf), [400]);
  assert.deepEqual(headerValues(result.responses[0]!, "connection"), ["close"]);
  assert.equal(result.closed, true);
  assert.equal(decoder.received(), "", "nothing reached the decoder");
}

/** The sidecar still answers a new client, and the decoder sees that client's request only. */
async function assertStillServes(
  edge: { port: number; decoder: RecordingUpstream },
): Promise<void> {
  const before = edge.decoder.requests.length;
  const after = await sendRaw(
    edge.port,
    "GET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n",
  );
  assert.equal(statusOf(after.responses[0]!), 200);
  assert.equal(
    bodyText(after.responses[0]!),
    JSON.stringify({ seen: "GET /v1/models HTTP/1.1" }),
  );
  assert.equal(edge.decoder.requests.length, before + 1);
}

Deno.test("edge refuses Content-Length with Transfer-Encoding with 400 and closes", async () => {
  await using edge = await startEdge();
  assertRefused(
    await sendUntilClosed(
      edge.port,
      `${POST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`,
    ),
    edge.decoder,
  );
});

Deno.test("edge refuses two different Content-Lengths, and a list of them, with 400", async () => {
  await using edge = await startEdge();
  for (
    const lengths of [
      "Content-Length: 2\r\nContent-Length: 3\r\n",
      "Content-Length: 2, 2\r\n",
    ]
  ) {
    assertRefused(
      await sendUntilClosed(edge.port, `${POST}${lengths}\r\n{} `),
      edge.decoder,
    );
  }
});

Deno.test("edge takes two equal Content-Lengths as one and forwards one", async () => {
  await using edge = await startEdge();
  const result = await sendRaw(
    edge.port,
    `${POST}Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}`,
  );
  assert.equal(statusOf(result.responses[0]!), 200);
  const received = await edge.decoder.request(0);
  assert.deepEqual(headerValues(received, "content-length"), ["2"]);
  assert.equal(bodyText(received), "{}");
});

Deno.test("edge drops the connection without an answer on bad chunk framing, and forwards no whole request", async () => {
  await using edge = await startEdge();
  for (
    const body of [
      "zz\r\n{}\r\n0\r\n\r\n", // chunk size is not hex
      "2\r\n{}XX0\r\n\r\n", // chunk data not followed by CRLF
    ]
  ) {
    const result = await sendUntilClosed(
      edge.port,
      `${POST}Transfer-Encoding: chunked\r\n\r\n${body}`,
    );
    assert.deepEqual(result.responses, [], JSON.stringify(body));
    assert.equal(result.closed, true);
    assert.equal(edge.decoder.requests.length, 0);
  }
  await assertStillServes(edge);
});

Deno.test("edge drops the smuggling payload (bare LF after the last chunk) without an answer; the smuggled request never reaches the decoder", async () => {
  await using edge = await startEdge();
  const smuggled = "GET /smuggled-admin HTTP/1.1\r\nHost: a\r\n\r\n";
  for (const target of ["/v1/completions", "/health"]) {
    const result = await sendUntilClosed(
      edge.port,
      `POST ${target} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\n${smuggled}`,
    );
    assert.deepEqual(result.responses, [], target);
    assert.equal(result.closed, true);
  }
  assert.doesNotMatch(edge.decoder.received(), /smuggled/);
  assert.equal(edge.decoder.requests.length, 0);
  await assertStillServes(edge);
});

Deno.test("edge accepts Transfer-Encoding gzip, chunked as chunked and forwards the bytes without the gzip coding", async () => {
  await using edge = await startEdge();
  const result = await sendRaw(
    edge.port,
    `${POST}Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`,
  );
  assert.equal(statusOf(result.responses[0]!), 200);
  const received = await edge.decoder.request(0);
  assert.deepEqual(headerValues(received, "transfer-encoding"), ["chunked"]);
  assert.equal(received.chunked, true);
  assert.equal(bodyText(received), "{}");
});

Deno.test("edge refuses obs-fold, NUL and CR in a header value, and a space before the colon, with 400", async () => {
  await using edge = await startEdge();
  for (
    const line of ["X-A: a\r\n b", "X-A: a\0b", "X-A: a\rb", "X-A : b"]
  ) {
    assertRefused(
      await sendUntilClosed(
        edge.port,
        `GET /v1/models HTTP/1.1\r\nHost: a\r\n${line}\r\n\r\n`,
      ),
      edge.decoder,
    );
  }
});

Deno.test("edge refuses a head over 64 KiB or with more than 128 fields with 400, and forwards one just under", async () => {
  await using edge = await startEdge();
  const get = "GET /v1/models HTTP/1.1\r\nHost: a\r\n";
  assertRefused(
    await sendUntilClosed(
      edge.port,
      `${get}X-A: ${"a".repeat(65 * 1024)}\r\n\r\n`,
    ),
    edge.decoder,
  );
  const fields = Array.from({ length: 128 }, (_, i) => `X-${i}: v\r\n`);
  assertRefused(
    await sendUntilClosed(edge.port, `${get}${fields.join("")}\r\n`),
    edge.decoder,
  );
  const big = "a".repeat(60 * 1024);
  const result = await sendRaw(edge.port, `${get}X-A: ${big}\r\n\r\n`);
  assert.equal(statusOf(result.responses[0]!), 200);
  assert.deepEqual(headerValues(await edge.decoder.request(0), "x-a"), [big]);
});

Deno.test("edge refuses two Host headers with 400 and serves a request without Host", async () => {
  await using edge = await startEdge();
  assertRefused(
    await sendUntilClosed(
      edge.port,
      "GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ),
    edge.decoder,
  );
  const result = await sendRaw(edge.port, "GET /v1/models HTTP/1.1\r\n\r\n");
  assert.equal(statusOf(result.responses[0]!), 200);
});

Deno.test("edge answers pipelined requests in order on one connection", async () => {
  await using edge = await startEdge();
  const result = await sendRaw(
    edge.port,
    `${POST}Content-Length: 2\r\n\r\n{}GET /health HTTP/1.1\r\nHost: a\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n`,
    { responses: 3 },
  );
  assert.deepEqual(result.responses.map(statusOf), [200, 200, 200]);
  assert.equal(
    bodyText(result.responses[0]!),
    JSON.stringify({ seen: "POST /v1/completions HTTP/1.1" }),
  );
  assert.equal(bodyText(result.responses[1]!), "");
  assert.equal(
    bodyText(result.responses[2]!),
    JSON.stringify({ seen: "GET /v1/models HTTP/1.1" }),
  );
});

Deno.test("edge sends 100 Continue before the body arrives and forwards Expect to the decoder", async () => {
  await using edge = await startEdge();
  const conn = await connectTo(edge.port);
  try {
    await writeText(
      conn,
      `${POST}Content-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n`,
    );
    const interim = await readUntil(conn, (text) => text.includes("\r\n\r\n"));
    assert.equal(interim.text, "HTTP/1.1 100 Continue\r\n\r\n");
    const result = await exchange(conn, "{}");
    assert.equal(statusOf(result.responses[0]!), 200);
  } finally {
    closeQuietly(conn);
  }
  const received = await edge.decoder.request(0);
  assert.deepEqual(headerValues(received, "expect"), ["100-continue"]);
  assert.equal(bodyText(received), "{}");
});

Deno.test("edge answers HTTP/1.0 in HTTP/1.0 and closes, and asks the decoder in HTTP/1.1", async () => {
  await using edge = await startEdge();
  const health = await sendUntilClosed(
    edge.port,
    "GET /health HTTP/1.0\r\n\r\n",
  );
  assert.equal(health.responses[0]?.startLine, "HTTP/1.0 200 OK");
  assert.equal(health.closed, true);
  const models = await sendUntilClosed(
    edge.port,
    "GET /v1/models HTTP/1.0\r\n\r\n",
  );
  assert.equal(models.responses[0]?.startLine, "HTTP/1.0 200 OK");
  assert.equal(models.closed, true);
  assert.equal(
    (await edge.decoder.request(0)).startLine,
    "GET /v1/models HTTP/1.1",
  );
});

Deno.test("edge answers a request head with bare LF line ends and forwards it with CRLF", async () => {
  await using edge = await startEdge();
  const health = await sendRaw(edge.port, "GET /health HTTP/1.1\nHost: a\n\n");
  assert.equal(statusOf(health.responses[0]!), 200);
  const models = await sendRaw(
    edge.port,
    "GET /v1/models HTTP/1.1\nHost: a\nX-A: a\nX-B: b\r\n\r\n",
  );
  assert.equal(statusOf(models.responses[0]!), 200);
  const received = await edge.decoder.request(0);
  assert.deepEqual(headerValues(received, "x-a"), ["a"]);
  assert.deepEqual(headerValues(received, "x-b"), ["b"]);
  assert.match(edge.decoder.received(), /\r\nx-a: a\r\nx-b: b\r\n/);
});

Deno.test("edge refuses an HTTP/0.9 request line with 400 and speaks HTTP/2 to a prior-knowledge preface on plain TCP", async () => {
  await using edge = await startEdge();
  assertRefused(
    await sendUntilClosed(edge.port, "GET /health\r\n\r\n"),
    edge.decoder,
  );
  const conn = await connectTo(edge.port);
  try {
    await writeText(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    const { bytes } = await readUntil(
      conn,
      (_text, bytes) => bytes.length >= 9,
    );
    // An HTTP/2 frame header: 24-bit length, then type 0x4 (SETTINGS).
    assert.equal(bytes[3], 0x4);
  } finally {
    closeQuietly(conn);
  }
});
