import assert from "node:assert/strict";
import { chatBody, createHarness } from "../support/harness.ts";

Deno.test(
  "a prefill 400 reaches the client with its status and the prefiller's own message, and no decode is sent",
  async () => {
    await using h = await createHarness();
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-return-error": "400",
    });
    assert.equal(response.status, 400);
    const body = await response.json();
    assert.equal(
      body.error.message,
      "Simulated error triggered by X-Return-Error header (code 400)",
    );
    assert.equal(h.prefill.requests.length, 1);
    assert.equal(h.decode.requests.length, 0);
  },
);

Deno.test(
  "a prefill 504, the top of the gateway range, is answered 504 naming the prefiller, and no decode is sent",
  async () => {
    await using h = await createHarness();
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-return-error": "504",
    });
    assert.equal(response.status, 504);
    const body = await response.json();
    assert.equal(body.error.code, 504);
    assert.match(
      body.error.message,
      new RegExp(`^Prefill server "${h.prefillerHeader}" answered 504: `),
    );
    assert.equal(h.decode.requests.length, 0);
  },
);
