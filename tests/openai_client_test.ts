import assert from "node:assert/strict";
import OpenAI from "openai";
import { createHarness } from "./support/harness.ts";

function clientFor(baseURL: string, prefiller: string): OpenAI {
  return new OpenAI({
    baseURL: `${baseURL}/v1`,
    apiKey: "unused",
    maxRetries: 0,
    defaultHeaders: { "x-prefiller-host-port": prefiller },
  });
}

Deno.test("openai client completes a chat through the sidecar", async () => {
  await using h = await createHarness();
  const openai = clientFor(h.listen(), h.prefillerHeader);
  const completion = await openai.chat.completions.create({
    model: "Qwen/Qwen3-0.6B",
    messages: [{ role: "user", content: "Hello" }],
    max_tokens: 6,
  });
  assert.equal(completion.object, "chat.completion");
  assert.ok((completion.choices[0]?.message.content ?? "").length > 0);
  assert.equal(completion.usage?.completion_tokens, 6);
  assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
});

Deno.test("openai client streams a chat and a completion through the sidecar", async () => {
  await using h = await createHarness();
  const openai = clientFor(h.listen(), h.prefillerHeader);
  const chat = await openai.chat.completions.create({
    model: "Qwen/Qwen3-0.6B",
    messages: [{ role: "user", content: "Hello" }],
    max_tokens: 5,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let usage: number | undefined;
  for await (const chunk of chat) {
    text += chunk.choices[0]?.delta.content ?? "";
    usage = chunk.usage?.completion_tokens ?? usage;
  }
  assert.ok(text.length > 0);
  assert.equal(usage, 5);
  const completion = await openai.completions.create({
    model: "Qwen/Qwen3-0.6B",
    prompt: "Once upon a time",
    max_tokens: 4,
    stream: true,
  });
  let pieces = 0;
  for await (const chunk of completion) pieces += chunk.choices.length;
  assert.equal(pieces, 4);
  assert.equal(
    h.decode.requests.filter((r) => r.kvTransfer?.outcome === "pulled").length,
    2,
  );
});

Deno.test("openai client surfaces the sidecar's error body as an APIError", async () => {
  await using h = await createHarness();
  const openai = clientFor(h.listen(), "127.0.0.1:1");
  await assert.rejects(
    openai.chat.completions.create({
      model: "Qwen/Qwen3-0.6B",
      messages: [{ role: "user", content: "x" }],
    }),
    (error: unknown) => {
      assert.ok(error instanceof OpenAI.APIError);
      assert.equal(error.status, 502);
      assert.match(
        error.message,
        /Cannot reach prefill server "127\.0\.0\.1:1"/,
      );
      return true;
    },
  );
});
