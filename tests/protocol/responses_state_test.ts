import assert from "node:assert/strict";
import { parseGenerationRequest } from "../../src/protocol/request.ts";
import { decoderStateCause } from "../../src/protocol/responses_state.ts";

function causeOf(fields: Record<string, unknown>, api = "responses" as const) {
  const body = JSON.stringify({ model: "m", input: "Hi", ...fields });
  return decoderStateCause(api, parseGenerationRequest(body));
}

Deno.test("a Responses request needs the decoder's state for a previous_response_id that is not null", () => {
  assert.equal(
    causeOf({ previous_response_id: "resp_1" }),
    "previous_response_id",
  );
  assert.equal(causeOf({ previous_response_id: "" }), "previous_response_id");
  assert.equal(causeOf({ previous_response_id: null }), undefined);
  assert.equal(causeOf({}), undefined);
});

Deno.test("a Responses request runs in the background for any background value but absent, null or false, as vLLM reads it leniently", () => {
  for (const value of [true, "true", 1]) {
    assert.equal(causeOf({ background: value }), "background", `${value}`);
  }
  for (const value of [false, null]) {
    assert.equal(causeOf({ background: value }), undefined, `${value}`);
  }
});

Deno.test("only the Responses API keeps state on the decoder", () => {
  assert.equal(
    decoderStateCause(
      "chat",
      parseGenerationRequest('{"previous_response_id":"r","background":true}'),
    ),
    undefined,
  );
});
