import assert from "node:assert/strict";
import {
  judgeAnswer,
  judgeSseEvent,
  splitSseEvents,
  sseEventData,
} from "../../src/protocol/sse.ts";

function chunk(choices: unknown[]): string {
  return `data: ${
    JSON.stringify({ object: "chat.completion.chunk", choices })
  }`;
}

Deno.test("splitSseEvents returns complete events and where the rest starts", () => {
  const text = "data: a\n\ndata: b\r\n\r\ndata: c";
  assert.deepEqual(splitSseEvents(text, 0), {
    events: ["data: a", "data: b"],
    rest: text.indexOf("data: c"),
  });
  assert.deepEqual(splitSseEvents(text, text.indexOf("data: c")), {
    events: [],
    rest: text.indexOf("data: c"),
  });
});

Deno.test("sseEventData joins data lines and skips comments", () => {
  assert.equal(sseEventData(": ping"), undefined);
  assert.equal(sseEventData("event: x\ndata: 1\ndata:2"), "1\n2");
});

for (
  const [label, event, verdict] of [
    [
      "a role chunk",
      chunk([{ delta: { role: "assistant", content: "" } }]),
      "preamble",
    ],
    ["a comment", ": keep-alive", "preamble"],
    ["content", chunk([{ delta: { content: "Hi" } }]), "answer"],
    [
      "a completion's text",
      chunk([{ text: "Hi", finish_reason: null }]),
      "answer",
    ],
    [
      "an empty completion chunk",
      chunk([{ text: "", finish_reason: null }]),
      "preamble",
    ],
    [
      "a tool call",
      chunk([{ delta: { tool_calls: [{ index: 0 }] } }]),
      "answer",
    ],
    ["a finish", chunk([{ delta: {}, finish_reason: "stop" }]), "answer"],
    [
      "a decline",
      chunk([{ delta: {}, finish_reason: "cache_threshold" }]),
      "threshold",
    ],
    [
      "a decline on the second choice",
      chunk([{ delta: { role: "assistant" } }, {
        finish_reason: "cache_threshold",
      }]),
      "threshold",
    ],
    ["[DONE]", "data: [DONE]", "answer"],
    ["an error frame", 'data: {"error":{"message":"x"}}', "answer"],
    ["a usage chunk", chunk([]), "answer"],
    ["text that is not JSON", "data: {oops", "answer"],
  ] as const
) {
  Deno.test(`judgeSseEvent calls ${label} ${verdict}`, () => {
    assert.equal(judgeSseEvent(event), verdict);
  });
}

Deno.test("judgeAnswer finds cache_threshold on any choice", () => {
  assert.equal(
    judgeAnswer({ choices: [{ finish_reason: "cache_threshold" }] }),
    "threshold",
  );
  assert.equal(judgeAnswer({ choices: [{ finish_reason: "stop" }] }), "answer");
  assert.equal(judgeAnswer({ object: "response" }), "answer");
});
