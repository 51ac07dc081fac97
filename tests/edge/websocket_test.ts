/**
 * A WebSocket upgrade gets the sidecar's own 501 `websocket_not_supported`
 * (the runtime cannot relay one yet; see README, "WebSocket upgrades"), not
 * vLLM's 404 for a plain GET; other `Upgrade` values pass through as before.
 */

import assert from "node:assert/strict";
import { createHarness } from "../support/harness.ts";
import { closeQuietly, connectTo } from "../support/sockets.ts";
import {
  bodyText,
  exchange,
  headerValues,
  startRecordingUpstream,
  statusOf,
} from "./_http.ts";

const HANDSHAKE = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
  "Sec-WebSocket-Version: 13\r\n";

for (
  const [upgrade, connection] of [
    ["websocket", "Upgrade"],
    ["WebSocket", "keep-alive, upgrade"],
    ["foo, websocket/13", "UPGRADE"],
  ]
) {
  Deno.test(`a GET with "Upgrade: ${upgrade}" and "Connection: ${connection}" is a 501 websocket_not_supported and reaches no upstream`, async () => {
    await using decoder = startRecordingUpstream();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port },
    });
    const conn = await connectTo(Number(new URL(h.listen()).port));
    try {
      const result = await exchange(
        conn,
        `GET /v1/realtime HTTP/1.1\r\nHost: a\r\nConnection: ${connection}\r\n` +
          `Upgrade: ${upgrade}\r\n${HANDSHAKE}\r\n`,
      );
      const answer = result.responses[0];
      assert.ok(answer, `no answer: ${result.text}`);
      assert.equal(statusOf(answer), 501);
      assert.deepEqual(headerValues(answer, "x-pd-error-code"), [
        "websocket_not_supported",
      ]);
      const error = JSON.parse(bodyText(answer)).error;
      assert.equal(error.type, "NotImplementedError");
      assert.equal(error.code, 501);
      assert.match(error.message, /WebSocket upgrades are not relayed/);
    } finally {
      closeQuietly(conn);
    }
    assert.equal(decoder.received(), "");
    const line = await h.accessLine();
    assert.equal(line.status, 501);
    assert.equal(line.error_code, "websocket_not_supported");
    assert.equal(h.logs.some((entry) => entry.level === "error"), false);
  });
}

Deno.test("a WebSocket client through the sidecar fails its handshake on the 501, and the decoder is never asked", async () => {
  await using decoder = startRecordingUpstream();
  await using h = await createHarness({
    config: { modelServerPort: decoder.port },
  });
  const url = new URL(h.listen());
  url.protocol = "ws:";
  url.pathname = "/v1/realtime";
  const socket = new WebSocket(url);
  const failure = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no handshake end")), 5000);
    socket.onopen = () => {
      clearTimeout(timer);
      reject(new Error("the handshake succeeded"));
    };
    socket.onerror = (event) => {
      clearTimeout(timer);
      resolve(event instanceof ErrorEvent ? event.message : String(event));
    };
  });
  assert.match(failure, /501/);
  assert.equal(decoder.received(), "");
});

for (
  const [what, headers] of [
    ["another Upgrade value (h2c)", "Connection: Upgrade\r\nUpgrade: h2c\r\n"],
    [
      "Upgrade: websocket but no Connection: upgrade",
      "Connection: keep-alive\r\nUpgrade: websocket\r\n",
    ],
  ]
) {
  Deno.test(`a GET with ${what} goes to the decoder as a plain GET`, async () => {
    await using decoder = startRecordingUpstream();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port },
    });
    const conn = await connectTo(Number(new URL(h.listen()).port));
    try {
      const result = await exchange(
        conn,
        `GET /v1/models HTTP/1.1\r\nHost: a\r\n${headers}\r\n`,
      );
      const answer = result.responses[0];
      assert.ok(answer, `no answer: ${result.text}`);
      assert.notEqual(statusOf(answer), 501);
    } finally {
      closeQuietly(conn);
    }
    assert.match(decoder.received(), /^GET \/v1\/models HTTP\/1\.1\r\n/);
    assert.doesNotMatch(decoder.received(), /^upgrade:/im);
  });
}
