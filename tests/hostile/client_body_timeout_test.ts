import assert from "node:assert/strict";
import {
  bodyText,
  headerValues,
  parseMessages,
  statusOf,
  type WireMessage,
} from "../edge/_http.ts";
import { chatBody, createHarness } from "../support/harness.ts";
import { settlesWithin, withDeadline } from "../support/deadline.ts";
import {
  closeQuietly,
  connectTo,
  readToClose,
  readUntil,
  writeText,
} from "../support/sockets.ts";
import { startRecordingUpstream } from "./_upstreams.ts";

/** `-client-body-timeout` in these tests: short, so a stalled body is answered fast. */
const TIMEOUT_MS = 300;
/** Deadline of the wait for an answer that should come within the timeout. */
const ANSWER_DEADLINE_MS = 5_000;

const GENERATE_BODY = JSON.stringify({
  model: "Qwen/Qwen3-0.6B",
  token_ids: [1, 2, 3],
  sampling_params: { max_tokens: 4 },
});

/** How the client frames its body. */
type Framing = "content-length" | "chunked";

/** The head of a POST whose body is `body` (not sent here). */
function headOf(
  path: string,
  body: string,
  options: {
    readonly framing: Framing;
    readonly headers?: readonly (readonly [string, string])[];
  },
): string {
  const lines = [
    `POST ${path} HTTP/1.1`,
    "host: sidecar",
    "content-type: application/json",
    options.framing === "chunked"
      ? "transfer-encoding: chunked"
      : `content-length: ${new TextEncoder().encode(body).length}`,
    ...(options.headers ?? []).map(([name, value]) => `${name}: ${value}`),
  ];
  return lines.join("\r\n") + "\r\n\r\n";
}

/** `piece` of the body as `framing` sends it. */
function framed(piece: string, framing: Framing): string {
  if (framing === "content-length") return piece;
  return `${
    new TextEncoder().encode(piece).length.toString(16)
  }\r\n${piece}\r\n`;
}

/** The first whole answer in `bytes`, if one arrived. */
function answerIn(bytes: Uint8Array): WireMessage | undefined {
  return parseMessages(bytes, { kind: "response" })
    .find((message) => statusOf(message) >= 200);
}

/** Reads `conn` until a whole answer arrived; throws when it closed first or `ms` passed. */
async function readAnswer(
  conn: Deno.Conn,
  ms = ANSWER_DEADLINE_MS,
): Promise<WireMessage> {
  const read = await readUntil(conn, (_, bytes) => !!answerIn(bytes), ms);
  const answer = answerIn(read.bytes);
  assert.ok(answer, `closed without a whole answer: ${read.text}`);
  return answer;
}

function portOf(base: string): number {
  return Number(new URL(base).port);
}

/** Asserts `answer` is the 408 of `-client-body-timeout`, in vLLM's error shape. */
function assertBodyTimeout(answer: WireMessage): void {
  assert.equal(statusOf(answer), 408, bodyText(answer));
  assert.deepEqual(headerValues(answer, "x-pd-error-code"), [
    "client_body_timeout",
  ]);
  // The body is unread: the connection cannot carry another request.
  assert.deepEqual(headerValues(answer, "connection"), ["close"]);
  assert.deepEqual(JSON.parse(bodyText(answer)), {
    error: {
      message:
        `Client sent no request body bytes for ${TIMEOUT_MS} ms (-client-body-timeout)`,
      type: "RequestTimeout",
      param: null,
      code: 408,
    },
  });
}

/** Where a stalled client stops: after its head, or part way through its body. */
const STALLS = [
  { name: "nothing after its head", sent: 0 },
  { name: "part of its body", sent: 20 },
] as const;

const STALLED_CASES = [
  ...STALLS.map((stall) => ({
    path: "/v1/chat/completions",
    body: chatBody(),
    framing: "content-length" as const,
    stall,
  })),
  {
    path: "/v1/chat/completions",
    body: chatBody(),
    framing: "chunked" as const,
    stall: STALLS[1],
  },
  {
    path: "/inference/v1/generate",
    body: GENERATE_BODY,
    framing: "content-length" as const,
    stall: STALLS[1],
  },
];

for (const { path, body, framing, stall } of STALLED_CASES) {
  Deno.test(
    `P/D ${path}: a client that sends ${stall.name} (${framing}) gets 408 client_body_timeout, the connection closed, and neither leg is asked`,
    async () => {
      await using prefiller = startRecordingUpstream();
      await using decoder = startRecordingUpstream();
      await using h = await createHarness({
        config: {
          clientBodyTimeout: TIMEOUT_MS,
          modelServerPort: decoder.port,
        },
      });
      const conn = await connectTo(portOf(h.listen()));
      try {
        await writeText(
          conn,
          headOf(path, body, {
            framing,
            headers: [[
              "x-prefiller-host-port",
              `127.0.0.1:${prefiller.port}`,
            ]],
          }),
        );
        if (stall.sent > 0) {
          await writeText(conn, framed(body.slice(0, stall.sent), framing));
        }
        const stalledAt = performance.now();
        const answer = await readAnswer(conn);
        const waited = performance.now() - stalledAt;
        assertBodyTimeout(answer);
        // Timers never fire early; the read began after the last write.
        assert.ok(waited >= TIMEOUT_MS - 20, `answered after ${waited} ms`);
        const rest = await readToClose(conn);
        assert.equal(rest.closed, true, "the connection was left open");
      } finally {
        closeQuietly(conn);
      }
      const line = await h.accessLine();
      assert.equal(line.status, 408);
      assert.equal(line.error_code, "client_body_timeout");
      assert.equal(line.outcome, "error");
      assert.equal(prefiller.connections.length, 0, "the prefiller was asked");
      assert.equal(decoder.connections.length, 0, "the decoder was asked");
    },
  );
}

Deno.test(
  "passthrough: a small body of declared length that stalls gets 408 client_body_timeout and the decoder is never asked",
  async () => {
    await using decoder = startRecordingUpstream();
    await using h = await createHarness({
      config: { clientBodyTimeout: TIMEOUT_MS, modelServerPort: decoder.port },
    });
    const conn = await connectTo(portOf(h.listen()));
    try {
      const body = JSON.stringify({ prompt: "Hello there" });
      await writeText(
        conn,
        headOf("/tokenize", body, { framing: "content-length" }),
      );
      await writeText(conn, body.slice(0, 5));
      assertBodyTimeout(await readAnswer(conn));
      assert.equal((await readToClose(conn)).closed, true);
    } finally {
      closeQuietly(conn);
    }
    const line = await h.accessLine();
    assert.equal(line.error_code, "client_body_timeout");
    assert.equal(decoder.connections.length, 0, "the decoder was asked");
  },
);

/**
 * Writes `body` a few bytes at a time, `gapMs` apart (the pace is the
 * client's behaviour under test, not a wait for an event), until it is all
 * sent or `stop` says an answer came.
 */
async function trickle(
  conn: Deno.Conn,
  body: string,
  options: {
    readonly framing: Framing;
    readonly pieces: number;
    readonly gapMs: number;
    readonly stop: () => boolean;
  },
): Promise<void> {
  const size = Math.ceil(body.length / options.pieces);
  for (let at = 0; at < body.length && !options.stop(); at += size) {
    if (at > 0) {
      await new Promise((resolve) => setTimeout(resolve, options.gapMs));
    }
    if (options.stop()) return;
    await writeText(conn, framed(body.slice(at, at + size), options.framing));
  }
  if (options.framing === "chunked" && !options.stop()) {
    await writeText(conn, "0\r\n\r\n");
  }
}

for (const framing of ["content-length", "chunked"] as const) {
  Deno.test(
    `P/D: a ${framing} body trickled slower than -client-body-timeout between pieces gets 408 and the prefiller is never asked`,
    async () => {
      await using h = await createHarness({
        config: { clientBodyTimeout: TIMEOUT_MS },
      });
      const body = chatBody();
      const conn = await connectTo(portOf(h.listen()));
      let answered = false;
      try {
        await writeText(
          conn,
          headOf("/v1/chat/completions", body, {
            framing,
            headers: [["x-prefiller-host-port", h.prefillerHeader]],
          }),
        );
        const writing = trickle(conn, body, {
          framing,
          pieces: 8,
          gapMs: 2 * TIMEOUT_MS,
          stop: () => answered,
        }).catch(() => {
          // The sidecar closed while the body was being written.
        });
        const answer = await readAnswer(conn);
        answered = true;
        await writing;
        assertBodyTimeout(answer);
      } finally {
        answered = true;
        closeQuietly(conn);
      }
      assert.equal(h.prefill.requests.length, 0);
      assert.equal(h.decode.requests.length, 0);
    },
  );

  Deno.test(
    `P/D: a ${framing} body trickled faster than -client-body-timeout between pieces, yet longer overall, is served whole`,
    async () => {
      const timeoutMs = 500;
      await using h = await createHarness({
        config: { clientBodyTimeout: timeoutMs },
      });
      const body = chatBody();
      const conn = await connectTo(portOf(h.listen()));
      let answered = false;
      try {
        await writeText(
          conn,
          headOf("/v1/chat/completions", body, {
            framing,
            headers: [["x-prefiller-host-port", h.prefillerHeader]],
          }),
        );
        const started = performance.now();
        const writing = trickle(conn, body, {
          framing,
          pieces: 20,
          gapMs: 40,
          stop: () => answered,
        });
        const answer = await readAnswer(conn, 10_000);
        answered = true;
        await writing;
        const took = performance.now() - started;
        assert.equal(statusOf(answer), 200, bodyText(answer));
        assert.ok(took > timeoutMs, `the body took only ${took} ms`);
      } finally {
        answered = true;
        closeQuietly(conn);
      }
      const [prefilled] = h.prefill.requests;
      assert.equal(
        JSON.parse(prefilled?.bodyText ?? "{}").messages?.[0]?.content,
        "Hello there",
      );
      assert.equal(h.decode.requests.length, 1);
    },
  );
}

for (const framing of ["content-length", "chunked"] as const) {
  Deno.test(
    `-client-body-timeout=0 times nothing: a stalled ${framing} body waits, and is served once the rest comes`,
    async () => {
      await using h = await createHarness({ config: { clientBodyTimeout: 0 } });
      const body = chatBody();
      const conn = await connectTo(portOf(h.listen()));
      try {
        await writeText(
          conn,
          headOf("/v1/chat/completions", body, {
            framing,
            headers: [["x-prefiller-host-port", h.prefillerHeader]],
          }),
        );
        await writeText(conn, framed(body.slice(0, 20), framing));
        const answer = readAnswer(conn, 10_000);
        // The window is the point: several timeouts' worth with no answer.
        assert.equal(await settlesWithin(answer, 4 * TIMEOUT_MS), false);
        await writeText(conn, framed(body.slice(20), framing));
        if (framing === "chunked") await writeText(conn, "0\r\n\r\n");
        assert.equal(statusOf(await answer), 200);
      } finally {
        closeQuietly(conn);
      }
      assert.equal(h.prefill.requests.length, 1);
      assert.equal(h.decode.requests.length, 1);
    },
  );
}

Deno.test(
  "HTTP/2: a P/D body that stalls gets its stream answered 408 client_body_timeout, no leg is sent, and the connection serves on",
  async () => {
    await using h = await createHarness({
      config: { clientBodyTimeout: TIMEOUT_MS },
    });
    const base = h.listen();
    using client = Deno.createHttpClient({ http1: false, http2: true });
    let sender: ReadableStreamDefaultController<Uint8Array> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        sender = controller;
        controller.enqueue(new TextEncoder().encode(chatBody().slice(0, 20)));
      },
    });
    try {
      const response = await withDeadline(
        fetch(`${base}/v1/chat/completions`, {
          method: "POST",
          body,
          client,
          headers: {
            "content-type": "application/json",
            "x-prefiller-host-port": h.prefillerHeader,
          },
        }),
        ANSWER_DEADLINE_MS,
        "the 408",
      );
      assert.equal(response.status, 408);
      assert.equal(
        response.headers.get("x-pd-error-code"),
        "client_body_timeout",
      );
      const answer = await withDeadline(response.json(), 5_000, "its body");
      assert.equal(answer.error.code, 408);
      // Over HTTP/2 only the stream ends: the connection carries the next one.
      const health = await withDeadline(
        fetch(`${base}/health`, { client }),
        5_000,
        "/health on the same connection",
      );
      assert.equal(health.status, 200);
      await health.body?.cancel();
    } finally {
      sender?.close();
    }
    assert.equal(h.prefill.requests.length, 0, "the prefiller was asked");
    assert.equal(h.decode.requests.length, 0, "the decoder was asked");
    const line = await h.accessLine();
    assert.equal(line.error_code, "client_body_timeout");
  },
);
