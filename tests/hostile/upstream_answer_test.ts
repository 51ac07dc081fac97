import assert from "node:assert/strict";
import { MAX_ANSWER_BYTES } from "../../src/upstream/client.ts";
import { within } from "../support/deadline.ts";
import { chatBody, createHarness } from "../support/harness.ts";
import { readRequest } from "../support/sockets.ts";
import {
  startScriptedServer,
  startStubUpstream,
} from "../support/stub_upstream.ts";

/** A body that never ends: 1 MiB chunks for as long as it is read; `cancelled` settles when the server stops reading it. */
function endlessBody(): {
  body: ReadableStream<Uint8Array>;
  sent(): number;
  cancelled: Promise<void>;
} {
  const chunk = new Uint8Array(1024 * 1024).fill(0x20);
  let sent = 0;
  const cancelled = Promise.withResolvers<void>();
  return {
    body: new ReadableStream<Uint8Array>({
      pull(controller) {
        sent += chunk.byteLength;
        controller.enqueue(chunk);
      },
      cancel() {
        cancelled.resolve();
      },
    }, { highWaterMark: 0 }),
    sent: () => sent,
    cancelled: cancelled.promise,
  };
}

/** Sends a P/D request to `prefiller` and checks the 502 for an answer over the bound, with no decode sent. */
async function expectAnswerTooLarge(prefiller: string): Promise<void> {
  await using h = await createHarness({ config: { verbosity: 0 } });
  const response = await within(
    h.pd("/v1/chat/completions", chatBody(), {
      "x-prefiller-host-port": prefiller,
    }),
    10_000,
    "the sidecar's answer",
  );
  assert.equal(response.status, 502);
  assert.match((await response.json()).error.message, /answer larger than/);
  assert.equal(h.decode.requests.length, 0);
}

Deno.test("a prefiller whose answer never ends gets a 502 once it passes the answer bound, and is read no further", async () => {
  let endless: ReturnType<typeof endlessBody> | undefined;
  await using prefiller = startStubUpstream(() => {
    endless = endlessBody();
    return new Response(endless.body, {
      headers: { "content-type": "application/json" },
    });
  });
  await expectAnswerTooLarge(prefiller.hostPort);
  // The sidecar closed the connection near the bound: the stub's server stops
  // reading the body, having written the bound plus what the sockets' and
  // the runtimes' buffers held (6-11 MiB measured), not as much as memory
  // allows. Checked once the server gave the body up, so the count is final.
  await within(
    endless?.cancelled ?? Promise.reject(new Error("no prefill")),
    10_000,
    "the prefiller's body to be given up",
  );
  const sent = endless?.sent() ?? 0;
  assert.ok(sent < MAX_ANSWER_BYTES + 32 * 1024 * 1024, `${sent} bytes`);
});

Deno.test("a prefiller declaring an answer over the bound gets a 502 without being read", async () => {
  await using prefiller = startStubUpstream(() =>
    new Response(endlessBody().body, {
      headers: {
        "content-type": "application/json",
        "content-length": String(MAX_ANSWER_BYTES + 1),
      },
    })
  );
  await expectAnswerTooLarge(prefiller.hostPort);
});

/** What a scripted prefiller writes after reading the request: raw HTTP/1.1, then it closes. */
const RAW_ANSWERS:
  readonly (readonly [string, (redirectPort: number) => string])[] = [
    [
      "a redirect to another host",
      (port) =>
        `HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:${port}/latest/meta-data/\r\ncontent-length: 0\r\n\r\n`,
    ],
    [
      "a protocol switch",
      () =>
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    ],
    [
      "a 2 MB header",
      () =>
        `HTTP/1.1 200 OK\r\nx-big: ${
          "a".repeat(2_000_000)
        }\r\ncontent-length: 2\r\n\r\n{}`,
    ],
    ["a status that is not a number", () => "HTTP/1.1 abc\r\n\r\n"],
    [
      "a status past 599",
      () => "HTTP/1.1 999 Odd\r\ncontent-length: 2\r\n\r\n{}",
    ],
    ["another protocol", () => "SSH-2.0-OpenSSH_9.6\r\n"],
  ];

for (const [what, answer] of RAW_ANSWERS) {
  Deno.test(`a prefiller answering ${what} gets the client a 502 in its API's error shape, and nothing else is asked`, async () => {
    await using elsewhere = startScriptedServer(async (conn) => {
      await readRequest(conn);
    });
    await using prefiller = startScriptedServer(async (conn) => {
      await readRequest(conn);
      await conn.write(new TextEncoder().encode(answer(elsewhere.port)));
      conn.close();
    });
    await using h = await createHarness({ config: { verbosity: 0 } });
    for (const path of ["/v1/chat/completions", "/v1/messages"]) {
      const response = await within(
        h.pd(path, chatBody(), {
          "x-prefiller-host-port": `127.0.0.1:${prefiller.port}`,
        }),
        10_000,
        "the sidecar's answer",
      );
      assert.equal(response.status, 502, path);
      const body = await response.json();
      if (path === "/v1/messages") {
        assert.equal(body.type, "error");
        assert.equal(body.error.type, "api_error");
        assert.match(body.error.message, /^(Cannot reach p|P)refill server /);
      } else {
        assert.equal(body.error.code, 502);
        assert.match(body.error.message, /^(Cannot reach p|P)refill server /);
      }
    }
    assert.equal(h.decode.requests.length, 0);
    assert.equal(elsewhere.connections(), 0, "the redirect was followed");
  });
}
