import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { createHarness } from "./support/harness.ts";
import { bodyOf } from "./connectors/_support.ts";
import { closedPort } from "./support/stub_upstream.ts";

function clientFor(baseURL: string, prefiller: string): Anthropic {
  return new Anthropic({
    baseURL,
    apiKey: "unused",
    maxRetries: 0,
    defaultHeaders: { "x-prefiller-host-port": prefiller },
  });
}

Deno.test("anthropic client creates a message through the sidecar", async () => {
  await using h = await createHarness();
  const anthropic = clientFor(h.listen(), h.prefillerHeader);
  const message = await anthropic.messages.create({
    model: "Qwen/Qwen3-0.6B",
    max_tokens: 6,
    messages: [{ role: "user", content: "Hello" }],
  });
  assert.equal(message.type, "message");
  const block = message.content[0];
  assert.ok(block?.type === "text" && block.text.length > 0);
  assert.equal(message.usage.output_tokens, 6);
  const prefill = bodyOf(h.prefill.requests[0]);
  assert.equal(prefill.max_tokens, 1);
  assert.equal(prefill.stream, false);
  assert.equal(bodyOf(h.decode.requests[0]).max_tokens, 6);
  assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
});

Deno.test("anthropic client streams a message through the sidecar", async () => {
  await using h = await createHarness();
  const anthropic = clientFor(h.listen(), h.prefillerHeader);
  const stream = await anthropic.messages.create({
    model: "Qwen/Qwen3-0.6B",
    max_tokens: 5,
    messages: [{ role: "user", content: "Hello" }],
    stream: true,
  });
  const types: string[] = [];
  let text = "";
  let outputTokens: number | undefined;
  for await (const event of stream) {
    types.push(event.type);
    if (
      event.type === "content_block_delta" && event.delta.type === "text_delta"
    ) {
      text += event.delta.text;
    }
    if (event.type === "message_delta") {
      outputTokens = event.usage.output_tokens;
    }
  }
  assert.equal(types[0], "message_start");
  assert.equal(types.at(-1), "message_stop");
  assert.equal(types.filter((t) => t === "content_block_delta").length, 5);
  assert.ok(text.length > 0);
  assert.equal(outputTokens, 5);
  assert.equal(bodyOf(h.prefill.requests[0]).stream, false);
  assert.equal(bodyOf(h.decode.requests[0]).stream, true);
  assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
});

Deno.test("anthropic client surfaces the sidecar's error, in Anthropic's shape, as an APIError", async () => {
  await using h = await createHarness();
  const target = `127.0.0.1:${closedPort()}`;
  const anthropic = clientFor(h.listen(), target);
  await assert.rejects(
    anthropic.messages.create({
      model: "Qwen/Qwen3-0.6B",
      max_tokens: 5,
      messages: [{ role: "user", content: "x" }],
    }),
    (error: unknown) => {
      assert.ok(error instanceof Anthropic.APIError);
      assert.equal(error.status, 502);
      assert.equal(error.type, "api_error");
      assert.equal(
        error.apiMessage,
        `Cannot reach prefill server "${target}": connection refused`,
      );
      assert.deepEqual(error.error, {
        type: "error",
        error: { type: "api_error", message: error.apiMessage },
      });
      return true;
    },
  );
});

Deno.test("anthropic client surfaces the prefiller's own Messages error as an APIError", async () => {
  await using h = await createHarness({
    prefill: { failureRate: 1, failureStatus: 429 },
  });
  const anthropic = clientFor(h.listen(), h.prefillerHeader);
  await assert.rejects(
    anthropic.messages.create({
      model: "Qwen/Qwen3-0.6B",
      max_tokens: 5,
      messages: [{ role: "user", content: "x" }],
    }),
    (error: unknown) => {
      assert.ok(error instanceof Anthropic.RateLimitError);
      assert.equal((error.error as { type?: unknown }).type, "error");
      assert.ok((error.apiMessage ?? "").length > 0);
      return true;
    },
  );
  assert.equal(h.decode.requests.length, 0);
});
