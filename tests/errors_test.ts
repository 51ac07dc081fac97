import assert from "node:assert/strict";
import { buildErrorBody, ProxyError, toErrorResponse } from "../src/errors.ts";

Deno.test("toErrorResponse renders vLLM's nested error shape as JSON", async () => {
  const response = toErrorResponse(
    new ProxyError(502, 'Cannot reach prefill server "p:1"'),
  );
  assert.equal(response.status, 502);
  assert.equal(response.headers.get("content-type"), "application/json");
  assert.deepEqual(await response.json(), {
    error: {
      message: 'Cannot reach prefill server "p:1"',
      type: "BadGateway",
      param: null,
      code: 502,
    },
  });
});

Deno.test("ProxyError keeps an explicit type and param", () => {
  const body = buildErrorBody(
    new ProxyError(400, "bad", { type: "Bad Request", param: "stream" }),
  );
  assert.deepEqual(body.error, {
    message: "bad",
    type: "Bad Request",
    param: "stream",
    code: 400,
  });
});

Deno.test("toErrorResponse prefers a prepared response", () => {
  const prepared = new Response("relayed", { status: 422 });
  assert.equal(
    toErrorResponse(new ProxyError(400, "x", { response: prepared })),
    prepared,
  );
});
