/**
 * What the client sees when one of two concurrent legs fails (sglang,
 * mooncake and offloading share the mechanism; sglang drives it here).
 */

import assert from "node:assert/strict";
import { chatBody } from "../support/harness.ts";
import {
  chatChunk,
  createConnectorHarness,
  jsonResponse,
  scriptedStream,
  startRecordingUpstream,
  within,
} from "./_support.ts";
import { startHangingUpstream } from "../support/stub_upstream.ts";

const PREFILL_503 = {
  error: {
    message: "overloaded",
    type: "ServiceUnavailableError",
    param: null,
    code: 503,
  },
};

Deno.test(
  "concurrent legs answer the prefill's failure, not an empty 200, when the decode had sent only headers",
  async () => {
    const stream = scriptedStream();
    const decodeArrived = Promise.withResolvers<void>();
    await using decoder = startRecordingUpstream(() => {
      decodeArrived.resolve();
      return stream.response;
    });
    await using prefiller = startRecordingUpstream(async () => {
      await decodeArrived.promise;
      return jsonResponse(PREFILL_503, 503);
    });
    await using h = await createConnectorHarness("sglang", {
      config: { modelServerPort: decoder.port },
    });
    const response = await within(
      h.pd("/v1/chat/completions", chatBody({ stream: true }), {
        "x-prefiller-host-port": prefiller.hostPort,
      }),
      "the answer",
    );
    assert.equal(response.status, 503);
    assert.match(
      (await response.json()).error.message,
      /answered 503: overloaded/,
    );
    await within(stream.cancelled, "the decode stream to be cancelled");
  },
);

Deno.test(
  "concurrent legs answer the prefill's failure when the decode's answer is empty",
  async () => {
    const decodeArrived = Promise.withResolvers<void>();
    await using decoder = startRecordingUpstream(() => {
      decodeArrived.resolve();
      return new Response(null, { status: 200 });
    });
    await using prefiller = startRecordingUpstream(async () => {
      await decodeArrived.promise;
      return jsonResponse(PREFILL_503, 503);
    });
    await using h = await createConnectorHarness("sglang", {
      config: { modelServerPort: decoder.port },
    });
    const response = await within(
      h.pd("/v1/chat/completions", chatBody(), {
        "x-prefiller-host-port": prefiller.hostPort,
      }),
      "the answer",
    );
    assert.equal(response.status, 503);
    await response.body?.cancel();
  },
);

Deno.test(
  "concurrent legs break the client's stream and close the prefill when the decode breaks mid-stream",
  async () => {
    const stream = scriptedStream();
    stream.push(chatChunk({ role: "assistant", content: "" }));
    await using decoder = startRecordingUpstream(() => stream.response);
    await using prefiller = startHangingUpstream();
    await using h = await createConnectorHarness("sglang", {
      config: { modelServerPort: decoder.port },
    });
    const response = await within(
      h.pd("/v1/chat/completions", chatBody({ stream: true }), {
        "x-prefiller-host-port": prefiller.hostPort,
      }),
      "the answer",
    );
    assert.equal(response.status, 200);
    const reader = response.body!.getReader();
    await within(reader.read(), "the first chunk");
    stream.fail();
    await assert.rejects(within(reader.read(), "the broken read"));
    await within(prefiller.allClosed(), "the prefill leg to close");
    assert.ok(
      h.logs.some((line) => line.msg === "decode answer broke mid-stream"),
    );
  },
);

Deno.test(
  "concurrent legs answer 502 when the decode breaks before its first byte",
  async () => {
    const stream = scriptedStream();
    await using decoder = startRecordingUpstream(() => {
      queueMicrotask(() => stream.fail());
      return stream.response;
    });
    await using prefiller = startHangingUpstream();
    await using h = await createConnectorHarness("sglang", {
      config: { modelServerPort: decoder.port },
    });
    const response = await within(
      h.pd("/v1/chat/completions", chatBody({ stream: true }), {
        "x-prefiller-host-port": prefiller.hostPort,
      }),
      "the answer",
    );
    assert.equal(response.status, 502);
    assert.match(
      (await response.json()).error.message,
      /^Decode server "127\.0\.0\.1:\d+" broke its answer before the first byte/,
    );
    await within(prefiller.allClosed(), "the prefill leg to close");
  },
);

Deno.test(
  "concurrent legs close both legs when the client stops reading mid-stream",
  async () => {
    const stream = scriptedStream();
    stream.push(chatChunk({ role: "assistant", content: "" }));
    await using decoder = startRecordingUpstream(() => stream.response);
    await using prefiller = startHangingUpstream();
    await using h = await createConnectorHarness("sglang", {
      config: { modelServerPort: decoder.port },
    });
    const response = await within(
      h.pd("/v1/chat/completions", chatBody({ stream: true }), {
        "x-prefiller-host-port": prefiller.hostPort,
      }),
      "the answer",
    );
    const reader = response.body!.getReader();
    await within(reader.read(), "the first chunk");
    await reader.cancel();
    await within(stream.cancelled, "the decode stream to be cancelled");
    await within(prefiller.allClosed(), "the prefill leg to close");
  },
);

Deno.test(
  "concurrent legs log a prefill that fails after the decode finished, and nothing else happens",
  async () => {
    const decodeDone = Promise.withResolvers<void>();
    await using decoder = startRecordingUpstream(() =>
      jsonResponse({ id: "chatcmpl-1", object: "chat.completion", choices: [] })
    );
    await using prefiller = startRecordingUpstream(async () => {
      await decodeDone.promise;
      return new Response("late failure", { status: 500 });
    });
    await using h = await createConnectorHarness("sglang", {
      config: { modelServerPort: decoder.port },
    });
    const response = await within(
      h.pd("/v1/chat/completions", chatBody(), {
        "x-prefiller-host-port": prefiller.hostPort,
      }),
      "the answer",
    );
    assert.equal(response.status, 200);
    assert.equal((await response.json()).object, "chat.completion");
    decodeDone.resolve();
    await h.nextLog(
      (line) => /decode goes on/.test(String(line.msg)),
      5000,
    );
  },
);
