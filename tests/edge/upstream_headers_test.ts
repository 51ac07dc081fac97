import assert from "node:assert/strict";
import { createHarness } from "../support/harness.ts";
import { closeQuietly, connectTo } from "../support/sockets.ts";
import {
  bodyText,
  exchange,
  headerValues,
  startRecordingUpstream,
  statusOf,
  type WireMessage,
} from "./_http.ts";

/** Headers in a canonical order, for comparing whole sets. */
function sortedHeaders(message: WireMessage): string[] {
  return message.headers.map(([name, value]) => `${name}: ${value}`).sort();
}

/** A raw request from a client that sends exactly `headers`. */
function rawRequest(
  target: string,
  headers: readonly string[],
  body: string,
): string {
  return [
    `POST ${target} HTTP/1.1`,
    ...headers,
    `Content-Length: ${new TextEncoder().encode(body).length}`,
    "",
    body,
  ].join("\r\n");
}

/** Sends `request` to the sidecar on a fresh connection and returns the one answer. */
async function send(port: number, request: string): Promise<WireMessage> {
  const conn = await connectTo(port);
  try {
    const { responses } = await exchange(conn, request);
    assert.equal(responses.length, 1, "one answer");
    return responses[0]!;
  } finally {
    closeQuietly(conn);
  }
}

const COMPLETION = JSON.stringify({ model: "m", prompt: "Hi" });
const CLIENT_CHOSEN = [
  "Accept: text/event-stream",
  "Accept-Language: de",
  "User-Agent: my-client/1.0",
  "Accept-Encoding: gzip",
];
/** What the sidecar sends for each header fetch adds when the client sent none. */
const FETCH_DEFAULTS = [
  "accept: */*",
  "accept-language: *",
  "user-agent: ",
  "accept-encoding: identity",
];

Deno.test("passthrough sends the decoder the client's headers, X-Forwarded-For, and neutral values for what fetch always adds", async () => {
  await using decoder = startRecordingUpstream();
  await using h = await createHarness({
    config: { modelServerPort: decoder.port },
  });
  const port = Number(new URL(h.listen()).port);
  const answer = await send(
    port,
    rawRequest("/v1/completions", [
      "Host: sidecar.example",
      "Content-Type: application/json",
    ], COMPLETION),
  );
  assert.equal(statusOf(answer), 200);
  const received = await decoder.request(0);
  assert.equal(received.startLine, "POST /v1/completions HTTP/1.1");
  assert.deepEqual(
    sortedHeaders(received),
    [
      `content-length: ${COMPLETION.length}`,
      "content-type: application/json",
      // fetch derives Host from the URL and cannot keep the client's.
      `host: ${decoder.hostPort}`,
      "x-forwarded-for: 127.0.0.1",
      ...FETCH_DEFAULTS,
    ].sort(),
  );
  assert.equal(bodyText(received), COMPLETION);
});

Deno.test("passthrough sends the client's own accept, accept-language, user-agent and accept-encoding as sent", async () => {
  await using decoder = startRecordingUpstream();
  await using h = await createHarness({
    config: { modelServerPort: decoder.port },
  });
  const port = Number(new URL(h.listen()).port);
  await send(
    port,
    rawRequest("/v1/completions", [
      "Host: sidecar.example",
      "Content-Type: application/json",
      ...CLIENT_CHOSEN,
    ], COMPLETION),
  );
  assert.deepEqual(
    sortedHeaders(await decoder.request(0)),
    [
      `content-length: ${COMPLETION.length}`,
      "content-type: application/json",
      `host: ${decoder.hostPort}`,
      "x-forwarded-for: 127.0.0.1",
      "accept: text/event-stream",
      "accept-language: de",
      "user-agent: my-client/1.0",
      "accept-encoding: gzip",
    ].sort(),
  );
});

Deno.test("passthrough answers a client that asked for gzip with the decoder's body decoded once and no Content-Encoding", async () => {
  const json = JSON.stringify({
    id: "cmpl-1",
    choices: [{ text: "x".repeat(500) }],
  });
  const gzipped = new Uint8Array(
    await new Response(
      new Blob([json]).stream().pipeThrough(new CompressionStream("gzip")),
    ).arrayBuffer(),
  );
  await using decoder = startRecordingUpstream(() => ({
    headers: [["content-type", "application/json"], [
      "content-encoding",
      "gzip",
    ]],
    body: gzipped,
  }));
  await using h = await createHarness({
    config: { modelServerPort: decoder.port },
  });
  const port = Number(new URL(h.listen()).port);
  const answer = await send(
    port,
    rawRequest("/v1/completions", [
      "Host: a",
      "Content-Type: application/json",
      "Accept-Encoding: gzip",
    ], COMPLETION),
  );
  assert.deepEqual(
    headerValues(await decoder.request(0), "accept-encoding"),
    ["gzip"],
  );
  // fetch decoded the gzip body; the client gets it plain and is not told to decode it again.
  assert.equal(statusOf(answer), 200);
  assert.deepEqual(headerValues(answer, "content-encoding"), []);
  assert.equal(bodyText(answer), json);
});

Deno.test("a P/D request sends both legs the client's headers, X-Forwarded-For, one request id and neutral values for what fetch always adds", async () => {
  await using prefiller = startRecordingUpstream(() => ({
    body: JSON.stringify({
      id: "p",
      kv_transfer_params: { remote_engine_id: "e", remote_block_ids: [1] },
    }),
  }));
  await using decoder = startRecordingUpstream(() => ({
    body: JSON.stringify({ id: "d", object: "chat.completion", choices: [] }),
  }));
  await using h = await createHarness({
    config: { modelServerPort: decoder.port },
  });
  const port = Number(new URL(h.listen()).port);
  const chat = JSON.stringify({
    model: "m",
    messages: [{ role: "user", content: "Hi" }],
  });
  for (const [index, chosen] of [[], CLIENT_CHOSEN].entries()) {
    const answer = await send(
      port,
      rawRequest("/v1/chat/completions", [
        "Host: sidecar.example",
        "Content-Type: application/json",
        `X-Prefiller-Host-Port: ${prefiller.hostPort}`,
        ...chosen,
      ], chat),
    );
    assert.equal(statusOf(answer), 200);
    const legs = [
      await prefiller.request(index),
      await decoder.request(index),
    ];
    const [requestId] = headerValues(legs[0]!, "x-request-id");
    assert.match(requestId ?? "", /^[0-9a-f-]{36}$/);
    for (
      const [leg, upstream] of [[legs[0]!, prefiller], [
        legs[1]!,
        decoder,
      ]] as const
    ) {
      assert.deepEqual(
        sortedHeaders(leg),
        [
          `content-length: ${leg.body.length}`,
          "content-type: application/json",
          `host: ${upstream.hostPort}`,
          "x-forwarded-for: 127.0.0.1",
          `x-request-id: ${requestId}`,
          // The legs' bodies are the sidecar's own: it asks for them unencoded, whatever the client accepts.
          "accept-encoding: identity",
          ...(chosen.length === 0
            ? ["accept: */*", "accept-language: *", "user-agent: "]
            : [
              "accept: text/event-stream",
              "accept-language: de",
              "user-agent: my-client/1.0",
            ]),
        ].sort(),
        `leg to ${upstream.hostPort}, client headers ${JSON.stringify(chosen)}`,
      );
    }
  }
});
