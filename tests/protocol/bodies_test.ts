import assert from "node:assert/strict";
import {
  buildDecodeBody,
  buildPrefillBody,
} from "../../src/protocol/bodies.ts";
import { parseGenerationRequest } from "../../src/protocol/request.ts";
import { ProxyError } from "../../src/errors.ts";

const CHAT =
  '{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":32}';

Deno.test("buildPrefillBody caps chat token limits, forces stream false and drops stream_options", () => {
  const body = JSON.parse(buildPrefillBody(parseGenerationRequest(CHAT), {
    api: "chat",
    nonStreaming: true,
    extra: { kv_transfer_params: '{"do_remote_decode":true}' },
  }));
  assert.deepEqual(body, {
    model: "m",
    messages: [{ role: "user", content: "hi" }],
    stream: false,
    max_tokens: 1,
    max_completion_tokens: 1,
    min_tokens: 1,
    kv_transfer_params: { do_remote_decode: true },
  });
});

Deno.test("buildPrefillBody caps only max_output_tokens for the Responses API", () => {
  const body = JSON.parse(buildPrefillBody(
    parseGenerationRequest('{"input":"hi","max_output_tokens":50}'),
    { api: "responses", nonStreaming: true },
  ));
  assert.deepEqual(body, { input: "hi", max_output_tokens: 1, stream: false });
});

Deno.test("buildDecodeBody is the client body plus the extra member", () => {
  const request = parseGenerationRequest(CHAT);
  assert.equal(
    buildDecodeBody(request, { set: { kv_transfer_params: "null" } }),
    `${CHAT.slice(0, -1)},"kv_transfer_params":null}`,
  );
});

Deno.test("buildDecodeBody replaces a client kv_transfer_params in place", () => {
  const request = parseGenerationRequest(
    '{"kv_transfer_params":{"x":1},"prompt":"p"}',
  );
  assert.equal(
    buildDecodeBody(request, { set: { kv_transfer_params: '{"y":2}' } }),
    '{"kv_transfer_params":{"y":2},"prompt":"p"}',
  );
});

for (
  const [text, expected] of [
    ["null", /got null/],
    ["[1,2]", /got an array/],
    ["42", /got a number/],
    ['"s"', /got a string/],
    ['{"a":', /not valid JSON/],
    ["", /not valid JSON/],
  ] as const
) {
  Deno.test(`parseGenerationRequest rejects ${JSON.stringify(text)} with a 400`, () => {
    assert.throws(() => parseGenerationRequest(text), (error: unknown) => {
      assert.ok(error instanceof ProxyError);
      assert.equal(error.status, 400);
      assert.match(error.message, expected);
      return true;
    });
  });
}
