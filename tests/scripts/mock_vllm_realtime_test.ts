import assert from "node:assert/strict";
import { createMockVllm } from "../../scripts/mock_vllm/mod.ts";
import { createWaiters, within } from "../support/deadline.ts";

/** A client socket that queues what it receives, each wait bounded. */
async function connect(url: string, protocols: string[] = []) {
  const socket = new WebSocket(url, protocols);
  socket.binaryType = "arraybuffer";
  const messages: (string | ArrayBuffer)[] = [];
  const arrived = createWaiters();
  const closed = Promise.withResolvers<CloseEvent>();
  socket.onmessage = (event) => {
    messages.push(event.data);
    arrived.notify();
  };
  socket.onclose = (event) => closed.resolve(event);
  await within(
    new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error("the handshake failed"));
    }),
    5_000,
    "the WebSocket to open",
  );
  let read = 0;
  return {
    socket,
    closed: closed.promise,
    async next(): Promise<string | ArrayBuffer> {
      // The check is called on every arrival: it must not consume.
      await arrived.until(() => read < messages.length, "a message");
      return messages[read++]!;
    },
    async nextEvent(): Promise<Record<string, unknown>> {
      const data = await this.next();
      assert.equal(typeof data, "string");
      return JSON.parse(data as string);
    },
  };
}

Deno.test("mock realtime opens with session.created and transcribes what was appended on commit", async () => {
  await using mock = await createMockVllm();
  const ws = await connect(`${mock.url.replace("http", "ws")}/v1/realtime`);
  assert.equal((await ws.nextEvent()).type, "session.created");
  ws.socket.send(
    JSON.stringify({ type: "session.update", model: "Qwen/Qwen3-0.6B" }),
  );
  ws.socket.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
  for (const chunk of [new Uint8Array(4096), new Uint8Array(1000)]) {
    ws.socket.send(JSON.stringify({
      type: "input_audio_buffer.append",
      audio: btoa(String.fromCharCode(...chunk)),
    }));
  }
  ws.socket.send(
    JSON.stringify({ type: "input_audio_buffer.commit", final: true }),
  );
  assert.deepEqual(await ws.nextEvent(), {
    type: "transcription.delta",
    delta: "5096 bytes",
  });
  const done = await ws.nextEvent();
  assert.equal(done.type, "transcription.done");
  assert.equal(done.text, "received 5096 bytes of audio");
  ws.socket.send(JSON.stringify({ type: "no.such.event" }));
  assert.equal((await ws.nextEvent()).code, "unknown_event");
  ws.socket.close(4001, "done");
  await within(ws.closed, 5_000, "the session to close");
  const [seen] = mock.requests;
  await within(seen!.finished, 5_000, "the mock to record the close");
  assert.equal(seen?.status, 101);
  assert.equal(seen?.webSocket?.closeCode, 4001);
  assert.equal(seen?.webSocket?.closeReason, "done");
  assert.equal(seen?.webSocket?.received.length, 6);
});

Deno.test("mock realtime accepts the first subprotocol offered, records the handshake, echoes binary and closes on mock.close", async () => {
  await using mock = await createMockVllm();
  const ws = await connect(
    `${mock.url.replace("http", "ws")}/v1/realtime?x=1`,
    [
      "realtime",
      "other",
    ],
  );
  assert.equal(ws.socket.protocol, "realtime");
  await ws.nextEvent();
  ws.socket.send(new Uint8Array([1, 2, 3]));
  assert.deepEqual(
    new Uint8Array(await ws.next() as ArrayBuffer),
    new Uint8Array([1, 2, 3]),
  );
  ws.socket.send(
    JSON.stringify({ type: "mock.close", code: 4002, reason: "bye" }),
  );
  const closed = await within(ws.closed, 5_000, "the mock to close");
  assert.equal(closed.code, 4002);
  assert.equal(closed.reason, "bye");
  const [seen] = mock.requests;
  assert.equal(seen?.search, "?x=1");
  assert.equal(seen?.headers.get("upgrade")?.toLowerCase(), "websocket");
  assert.equal(seen?.headers.get("sec-websocket-protocol"), "realtime, other");
  assert.deepEqual(seen?.webSocket?.received[0], { kind: "binary", bytes: 3 });
});

Deno.test("mock realtime answers a GET without an upgrade with vLLM's 404", async () => {
  await using mock = await createMockVllm();
  const response = await fetch(`${mock.url}/v1/realtime`);
  assert.equal(response.status, 404);
  assert.deepEqual(await response.json(), { detail: "Not Found" });
});
