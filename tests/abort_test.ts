import assert from "node:assert/strict";
import { within } from "./support/deadline.ts";
import { chatBody, createHarness } from "./support/harness.ts";
import { writeText } from "./support/sockets.ts";
import { startScriptedServer } from "./support/stub_upstream.ts";

const ATTEMPTS = 20;
/** How soon an upstream must see its request dropped once the client left. */
const ABORT_DEADLINE_MS = 1000;

/** A raw upstream that reads requests and never answers, reporting each connection. */
function startHangingUpstream() {
  const received: PromiseWithResolvers<void>[] = [];
  const closed: PromiseWithResolvers<void>[] = [];
  function slot(list: PromiseWithResolvers<void>[], index: number) {
    while (list.length <= index) list.push(Promise.withResolvers<void>());
    return list[index]!;
  }
  const server = startScriptedServer(async (conn, index) => {
    const buffer = new Uint8Array(16384);
    let text = "";
    for (;;) {
      const read = await conn.read(buffer).catch(() => null);
      if (read === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, read));
      if (text.includes("\r\n\r\n")) slot(received, index).resolve();
    }
    slot(closed, index).resolve();
  });
  return {
    server,
    hostPort: `127.0.0.1:${server.port}`,
    port: server.port,
    /** Resolves when connection `index` has carried a request head. */
    received: (index: number) => slot(received, index).promise,
    /** Resolves when the sidecar has closed connection `index`. */
    closed: (index: number) => slot(closed, index).promise,
  };
}

/** A P/D chat request as raw HTTP/1.1, written in one piece. */
function rawChatRequest(options: {
  prefiller: string;
  id: string;
  body: string;
  headers?: Record<string, string>;
}): string {
  const lines = [
    "POST /v1/chat/completions HTTP/1.1",
    "host: sidecar",
    "content-type: application/json",
    `content-length: ${new TextEncoder().encode(options.body).length}`,
    `x-prefiller-host-port: ${options.prefiller}`,
    `x-request-id: ${options.id}`,
    ...Object.entries(options.headers ?? {}).map(([name, value]) =>
      `${name}: ${value}`
    ),
  ];
  return `${lines.join("\r\n")}\r\n\r\n${options.body}`;
}

/** Connects to the sidecar served at `base`. */
function connect(base: string): Promise<Deno.TcpConn> {
  const url = new URL(base);
  return Deno.connect({ hostname: url.hostname, port: Number(url.port) });
}

/** A prompt long enough that its request cannot arrive in one read with its head. */
const LONG_PROMPT = "word ".repeat(400);

// The requests below are small, so Deno.serve has the whole body with the
// head; see the last test for a body that comes after its head.

Deno.test(
  "a client leaving during the prefill gets it aborted within 1 s and no decode sent, every time",
  async () => {
    await using h = await createHarness({ config: { verbosity: 0 } });
    const base = h.listen();
    // Declared after the harness so it is closed first: the sidecar's waits end before it stops.
    const prefiller = startHangingUpstream();
    await using _prefiller = prefiller.server;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const conn = await connect(base);
      await writeText(
        conn,
        rawChatRequest({
          prefiller: prefiller.hostPort,
          id: `prefill-${attempt}`,
          body: chatBody(),
        }),
      );
      await within(
        prefiller.received(attempt),
        5000,
        `attempt ${attempt}: the prefiller never received the request`,
      );
      conn.close();
      await within(
        prefiller.closed(attempt),
        ABORT_DEADLINE_MS,
        `attempt ${attempt}: the prefill was not aborted within 1 s`,
      );
      const line = await h.nextLog((line) =>
        line.msg === "request handled" &&
        line.request_id === `prefill-${attempt}`
      );
      assert.equal(line.outcome, "client_aborted");
      assert.equal(line.status, 499);
    }
    assert.equal(h.decode.requests.length, 0);
  },
);

Deno.test(
  "a client leaving before the decoder answers gets the decode aborted within 1 s, every time",
  async () => {
    const decoder = startHangingUpstream();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port },
    });
    const base = h.listen();
    await using _decoder = decoder.server;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const conn = await connect(base);
      await writeText(
        conn,
        rawChatRequest({
          prefiller: h.prefillerHeader,
          id: `decode-${attempt}`,
          body: chatBody(),
        }),
      );
      await within(
        decoder.received(attempt),
        5000,
        `attempt ${attempt}: the decoder never received the request`,
      );
      conn.close();
      await within(
        decoder.closed(attempt),
        ABORT_DEADLINE_MS,
        `attempt ${attempt}: the decode was not aborted within 1 s`,
      );
    }
    assert.equal(h.prefill.requests.length, ATTEMPTS);
  },
);

/** Reads from `conn` until the text read so far contains `marker`. */
async function readUntil(conn: Deno.Conn, marker: string): Promise<void> {
  const buffer = new Uint8Array(16384);
  let text = "";
  while (!text.includes(marker)) {
    const read = await conn.read(buffer);
    if (read === null) throw new Error(`Closed before "${marker}"`);
    text += new TextDecoder().decode(buffer.subarray(0, read));
  }
}

Deno.test(
  "a client leaving mid-stream gets the decode aborted within 1 s, every time, whatever the request's size",
  async () => {
    await using h = await createHarness();
    const base = h.listen();
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const conn = await connect(base);
      await writeText(
        conn,
        rawChatRequest({
          prefiller: h.prefillerHeader,
          id: `stream-${attempt}`,
          body: chatBody({
            stream: true,
            messages: [{ role: "user", content: LONG_PROMPT }],
          }),
          headers: { "x-mock-inter-token-ms": "60000" },
        }),
      );
      await within(
        readUntil(conn, "data: "),
        5000,
        `attempt ${attempt}: no event reached the client`,
      );
      conn.close();
      const decode = await h.decode.nextRequest((r) =>
        r.headers.get("x-request-id") === `stream-${attempt}`
      );
      assert.equal(
        await within(
          decode.finished,
          ABORT_DEADLINE_MS,
          `attempt ${attempt}: the decode was not aborted within 1 s`,
        ),
        "aborted",
      );
    }
  },
);

Deno.test(
  "runtime limit (Deno 2.9.6): a client leaving before the answer goes unnoticed when the body came after the head",
  async () => {
    // Deno.serve's own HTTP/1.1 path (Deno >= 2.8.3) watches for the peer's
    // close while a handler works only when the whole body arrived with the
    // head; otherwise request.signal stays quiet until the answer is written.
    // When this test fails, the runtime has fixed it: drop the test and send
    // LONG_PROMPT in the tests above.
    await using h = await createHarness();
    const base = h.listen();
    const prefiller = startHangingUpstream();
    await using _prefiller = prefiller.server;
    const conn = await connect(base);
    await writeText(
      conn,
      rawChatRequest({
        prefiller: prefiller.hostPort,
        id: "long",
        body: chatBody({ messages: [{ role: "user", content: LONG_PROMPT }] }),
      }),
    );
    await within(prefiller.received(0), 5000, "the prefiller got nothing");
    conn.close();
    // Asserting an absence takes the whole deadline.
    await assert.rejects(
      within(prefiller.closed(0), ABORT_DEADLINE_MS, "still open"),
      /still open/,
    );
  },
);
