import assert from "node:assert/strict";
import { chatBody } from "../support/harness.ts";
import {
  bodyOf,
  chatChunk,
  createConnectorHarness,
  jsonResponse,
  type ReceivedRequest,
  scriptedStream,
  startRecordingUpstream,
  within,
} from "./_support.ts";

/** A non-streaming chat answer whose only choice ended with `finishReason`. */
function chatAnswer(finishReason: string, content = "Hello"): unknown {
  return {
    id: "chatcmpl-1",
    object: "chat.completion",
    choices: [{
      index: 0,
      message: { role: "assistant", content },
      "finish_reason": finishReason,
    }],
  };
}

async function readAll(response: Response): Promise<string> {
  return await within(response.text(), "the whole answer");
}

Deno.test(
  "shared-storage prefills with token limits of 1 and cache_hit_threshold 0, then decodes with cache_hit_threshold 0",
  async () => {
    await using h = await createConnectorHarness("shared-storage");
    const body =
      '{"model":"Qwen/Qwen3-0.6B","messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"stream":true,"stream_options":{"include_usage":true}}';
    const response = await h.pd("/v1/chat/completions", body);
    assert.equal(response.status, 200);
    await response.text();
    assert.deepEqual(bodyOf(h.prefill.requests[0]), {
      model: "Qwen/Qwen3-0.6B",
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 1,
      stream: false,
      max_completion_tokens: 1,
      min_tokens: 1,
      cache_hit_threshold: 0,
    });
    assert.equal(
      h.decode.requests[0]?.bodyText,
      `${body.slice(0, -1)},"cache_hit_threshold":0}`,
    );
  },
);

for (const stream of [false, true]) {
  Deno.test(
    `shared-storage with cache_hit_threshold${
      stream ? ", streaming," : ""
    } prefills a prompt the decoder lacks, then answers it from the decoder's cache alone`,
    async () => {
      await using h = await createConnectorHarness("shared-storage");
      const body = JSON.stringify({
        model: "Qwen/Qwen3-0.6B",
        prompt: "The capital of France is",
        "max_tokens": 3,
        "cache_hit_threshold": 0.8,
        stream,
      });
      const cold = await h.pd("/v1/completions", body);
      assert.equal(cold.status, 200);
      const coldText = await readAll(cold);
      assert.doesNotMatch(coldText, /cache_threshold/);
      assert.equal(h.prefill.requests.length, 1);
      assert.equal(h.decode.requests.length, 2);
      assert.equal(h.decode.requests[0]?.bodyText, body);
      assert.equal(
        h.decode.requests[1]?.bodyText,
        body.replace('"cache_hit_threshold":0.8', '"cache_hit_threshold":0'),
      );
      assert.equal(h.decode.requests[1]?.kvTransfer?.outcome, "pulled");

      const warm = await h.pd("/v1/completions", body);
      assert.equal(warm.status, 200);
      assert.doesNotMatch(await readAll(warm), /cache_threshold/);
      assert.equal(h.prefill.requests.length, 1, "no second prefill");
      assert.equal(h.decode.requests.length, 3);
      assert.equal(h.decode.requests[2]?.bodyText, body);
    },
  );
}

Deno.test(
  "shared-storage prefills and decodes again when the decoder declines with cache_threshold",
  async () => {
    const second = JSON.stringify(chatAnswer("stop", "From cache"));
    await using decoder = startRecordingUpstream((request) =>
      decoderOf(request) === 1
        ? jsonResponse(chatAnswer("cache_threshold", ""))
        : new Response(second, {
          headers: { "content-type": "application/json", "x-answer": "2" },
        })
    );
    await using h = await createConnectorHarness("shared-storage", {
      config: { modelServerPort: decoder.port },
    });
    const body = chatBody({ cache_hit_threshold: 0.9 });
    const response = await h.pd("/v1/chat/completions", body);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-answer"), "2");
    assert.equal(await readAll(response), second);
    assert.equal(decoder.requests[0]?.bodyText, body);
    const prefill = bodyOf(h.prefill.requests[0]);
    assert.equal(prefill.cache_hit_threshold, 0);
    assert.equal(prefill.max_tokens, 1);
    assert.equal(
      decoder.requests[1]?.bodyText,
      body.replace('"cache_hit_threshold":0.9', '"cache_hit_threshold":0'),
    );
    const ids = [decoder.requests[0], decoder.requests[1]].map((r) =>
      r?.headers.get("x-request-id")
    );
    assert.equal(ids[0], ids[1]);
    assert.equal(h.prefill.requests[0]?.headers.get("x-request-id"), ids[0]);

    function decoderOf(request: ReceivedRequest): number {
      return decoder.requests.indexOf(request) + 1;
    }
  },
);

Deno.test(
  "shared-storage relays nothing of a declined stream and all of the decode after the prefill",
  async () => {
    const declined = scriptedStream();
    const accepted = scriptedStream();
    await using decoder = startRecordingUpstream(() =>
      decoder.requests.length === 1 ? declined.response : accepted.response
    );
    await using h = await createConnectorHarness("shared-storage", {
      config: { modelServerPort: decoder.port },
    });
    // The decline arrives split mid-event, as a network may cut it.
    const threshold = chatChunk({}, "cache_threshold");
    declined.push(chatChunk({ role: "assistant" }));
    declined.push(threshold.slice(0, 25));
    declined.push(threshold.slice(25));
    const secondStream = [
      chatChunk({ role: "assistant", content: "" }),
      chatChunk({ content: "Hi" }),
      chatChunk({ content: "!" }, "stop"),
      "data: [DONE]\n\n",
    ];
    for (const event of secondStream) accepted.push(event);
    accepted.close();
    const response = await within(
      h.pd(
        "/v1/chat/completions",
        chatBody({ stream: true, cache_hit_threshold: 1 }),
      ),
      "the answer",
    );
    assert.equal(response.status, 200);
    assert.equal(await readAll(response), secondStream.join(""));
    await within(declined.cancelled, "the declined stream to be cancelled");
    assert.equal(h.prefill.requests.length, 1);
  },
);

Deno.test(
  "shared-storage relays an accepted stream byte for byte, from its first byte, as it is produced",
  async () => {
    const stream = scriptedStream();
    await using decoder = startRecordingUpstream(() => stream.response);
    await using h = await createConnectorHarness("shared-storage", {
      config: { modelServerPort: decoder.port },
    });
    const role = chatChunk({ role: "assistant", content: "" });
    const first = chatChunk({ content: "Hel" });
    // Two role chunks (n=2) say nothing yet; the first content decides.
    stream.push(role);
    stream.push(role.slice(0, 10));
    stream.push(role.slice(10) + first.slice(0, 7));
    stream.push(first.slice(7));
    const response = await within(
      h.pd(
        "/v1/chat/completions",
        chatBody({ stream: true, cache_hit_threshold: 0.5 }),
      ),
      "the answer",
    );
    assert.equal(response.status, 200);
    const reader = response.body!.getReader();
    const utf8 = new TextDecoder();
    let seen = "";
    const expected = role + role + first;
    while (seen.length < expected.length) {
      const { value, done } = await within(reader.read(), "a chunk");
      assert.equal(done, false);
      seen += utf8.decode(value);
    }
    assert.equal(seen, expected);
    // Later chunks flow when the decoder produces them.
    const last = chatChunk({ content: "lo" }, "stop");
    stream.push(last);
    const next = await within(reader.read(), "the chunk pushed last");
    assert.equal(utf8.decode(next.value), last);
    stream.push("data: [DONE]\n\n");
    stream.close();
    let rest = "";
    for (;;) {
      const { value, done } = await within(reader.read(), "the tail");
      if (done) break;
      rest += utf8.decode(value);
    }
    assert.equal(rest, "data: [DONE]\n\n");
    assert.equal(h.prefill.requests.length, 0);
  },
);

Deno.test(
  "shared-storage relays a decode-first error status as is, without a prefill",
  async () => {
    await using h = await createConnectorHarness("shared-storage", {
      decode: { failureRate: 1, failureStatus: 429 },
    });
    const response = await h.pd(
      "/v1/chat/completions",
      chatBody({ cache_hit_threshold: 0.5 }),
    );
    assert.equal(response.status, 429);
    assert.equal((await response.json()).error.type, "RateLimitError");
    assert.equal(h.prefill.requests.length, 0);
  },
);

Deno.test(
  "shared-storage answers 502 when the decode-first answer is not JSON",
  async () => {
    await using decoder = startRecordingUpstream(() => new Response("OK"));
    await using h = await createConnectorHarness("shared-storage", {
      config: { modelServerPort: decoder.port },
    });
    const response = await h.pd(
      "/v1/chat/completions",
      chatBody({ cache_hit_threshold: 0.5 }),
    );
    assert.equal(response.status, 502);
    assert.match(
      (await response.json()).error.message,
      /answered 200 without a JSON object body/,
    );
    assert.equal(h.prefill.requests.length, 0);
  },
);
