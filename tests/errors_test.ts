import assert from "node:assert/strict";
import {
  buildErrorBody,
  ProxyError,
  reportError,
  toErrorResponse,
} from "../src/errors.ts";
import { createLogger } from "../src/log.ts";

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    verbosity: 4,
    write: (line) => lines.push(JSON.parse(line)),
  });
  return { log, lines };
}

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

Deno.test("ProxyError carries a stable code: its own, or one for its status", () => {
  assert.equal(new ProxyError(502, "x").code, "bad_gateway");
  assert.equal(new ProxyError(503, "x").code, "unavailable");
  assert.equal(
    new ProxyError(503, "x", { code: "decoder_not_ready" }).code,
    "decoder_not_ready",
  );
});

Deno.test("toErrorResponse states the body's length", async () => {
  const response = toErrorResponse(new ProxyError(404, "Not here: \u00e9"));
  const body = await response.arrayBuffer();
  assert.equal(
    Number(response.headers.get("content-length")),
    body.byteLength,
  );
});

Deno.test("reportError turns a thrown non-ProxyError into a 500 and logs it as an error", () => {
  const { log, lines } = capture();
  const answered = reportError(new TypeError("boom"), log, {
    aborted: false,
    path: "/x",
  });
  assert.equal(answered.status, 500);
  assert.equal(answered.code, "internal_error");
  assert.match(answered.message, /boom/);
  assert.deepEqual(lines.map((line) => line.level), ["error"]);
});

Deno.test("reportError answers 499 client_disconnected once the client has gone, logging at debug", () => {
  const { log, lines } = capture();
  const answered = reportError(new ProxyError(502, "prefill gone"), log, {
    aborted: true,
    path: "/v1/completions",
  });
  assert.equal(answered.status, 499);
  assert.equal(answered.code, "client_disconnected");
  assert.deepEqual(lines.map((line) => [line.level, line.msg]), [[
    "debug",
    "client disconnected",
  ]]);
});

Deno.test("reportError still logs a bug as an error when the client has gone", () => {
  const { log, lines } = capture();
  const answered = reportError(new RangeError("bug"), log, {
    aborted: true,
    path: "/x",
  });
  assert.equal(answered.status, 499);
  assert.deepEqual(lines.map((line) => line.level), ["error"]);
});

Deno.test("reportError logs a relayed upstream 4xx with the status the client gets, not the 400 behind it", () => {
  const { log, lines } = capture();
  const relayed = new Response("no such model", { status: 404 });
  const error = new ProxyError(400, "Prefill server answered 404", {
    code: "prefill_rejected",
    response: relayed,
  });
  reportError(error, log, { aborted: false, path: "/v1/completions" });
  assert.deepEqual(lines.map((line) => [line.level, line.status]), [[
    "info",
    404,
  ]]);
});

Deno.test("reportError logs a 5xx as an error and a 4xx as info, and returns it", () => {
  const { log, lines } = capture();
  const gateway = new ProxyError(502, "bad");
  const client = new ProxyError(400, "wrong");
  assert.equal(
    reportError(gateway, log, { aborted: false, path: "/" }),
    gateway,
  );
  assert.equal(reportError(client, log, { aborted: false, path: "/" }), client);
  assert.deepEqual(lines.map((line) => line.level), ["error", "info"]);
});
