import assert from "node:assert/strict";
import fc from "fast-check";
import { fixedResponse, utf8Length } from "../src/fixed_response.ts";

const encoder = new TextEncoder();

Deno.test("utf8Length is the length TextEncoder gives, for any UTF-16 text (lone surrogates included)", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ unit: "binary" }),
        fc.string({ unit: "grapheme" }),
        fc.string({
          unit: fc.integer({ min: 0xd800, max: 0xdfff }).map((code) =>
            String.fromCharCode(code)
          ),
        }),
        fc.string(),
      ),
      (text) => {
        assert.equal(utf8Length(text), encoder.encode(text).byteLength);
      },
    ),
    { numRuns: 2000 },
  );
  for (
    const text of [
      "",
      "a",
      "é",
      "€",
      "😀",
      "\ud83d",
      "\ude00",
      "\ude00\ud83d",
      "a\ud83d😀",
    ]
  ) {
    assert.equal(
      utf8Length(text),
      encoder.encode(text).byteLength,
      JSON.stringify(text),
    );
  }
});

Deno.test("fixedResponse sends a text body whole with its byte length, replacing the length it was given", async () => {
  const text = '{"content":"Paris — 巴黎 😀"}';
  const response = fixedResponse(text, {
    status: 201,
    statusText: "Made",
    headers: [["Content-Length", "3"], ["content-type", "application/json"], [
      "x-kept",
      "1",
    ]],
  });
  assert.equal(response.status, 201);
  assert.equal(response.statusText, "Made");
  assert.equal(
    response.headers.get("content-length"),
    String(encoder.encode(text).byteLength),
  );
  assert.equal(response.headers.get("x-kept"), "1");
  assert.equal(response.headers.get("content-type"), "application/json");
  assert.equal(await response.text(), text);
});

Deno.test("fixedResponse takes bytes and any form of headers", async () => {
  const bytes = encoder.encode("held answer");
  for (
    const headers of [new Headers({ "content-length": "99", a: "b" }), {
      "content-length": "99",
      a: "b",
    }]
  ) {
    const response = fixedResponse(bytes, { status: 200, headers });
    assert.equal(
      response.headers.get("content-length"),
      String(bytes.byteLength),
    );
    assert.equal(response.headers.get("a"), "b");
    assert.equal(await response.text(), "held answer");
  }
});

Deno.test("fixedResponse adds no content type of its own to a text body", async () => {
  const bare = fixedResponse("not found", {
    status: 404,
    headers: [["x-upstream", "1"]],
  });
  assert.equal(bare.headers.get("content-type"), null);
  assert.equal(bare.headers.get("content-length"), "9");
  assert.equal(await bare.text(), "not found");
  const typed = fixedResponse("{}", {
    status: 200,
    headers: { "Content-Type": "application/json" },
  });
  assert.equal(typed.headers.get("content-type"), "application/json");
});
