import assert from "node:assert/strict";
import { createMockVllm } from "../../scripts/mock_vllm/mod.ts";
import {
  CHAT,
  chatBody,
  COMPLETIONS,
  postJson,
  readChunks,
  RESPONSES,
  sseData,
  sseJson,
} from "./_mock_vllm_helpers.ts";

Deno.test("mock vllm answers chat completion with vLLM's non-streaming shape", async () => {
  await using mock = await createMockVllm();
  const response = await postJson(mock, CHAT, chatBody({ max_tokens: 32 }), {
    headers: { "x-request-id": "abc" },
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "application/json");
  const body = await response.json();
  assert.equal(body.id, "chatcmpl-abc");
  assert.equal(body.object, "chat.completion");
  assert.equal(typeof body.created, "number");
  assert.equal(body.model, "Qwen/Qwen3-0.6B");
  assert.deepEqual(body.choices, [{
    index: 0,
    message: {
      role: "assistant",
      content: "Hello! This is a mock reply from vLLM for you.",
      refusal: null,
      annotations: null,
      audio: null,
      function_call: null,
      reasoning: null,
    },
    logprobs: null,
    finish_reason: "stop",
    stop_reason: null,
    token_ids: null,
  }]);
  assert.deepEqual(body.usage, {
    prompt_tokens: 9,
    total_tokens: 21,
    completion_tokens: 12,
    prompt_tokens_details: null,
  });
  for (
    const key of [
      "service_tier",
      "system_fingerprint",
      "prompt_logprobs",
      "prompt_token_ids",
      "kv_transfer_params",
    ]
  ) {
    assert.equal(body[key], null, key);
  }
  const [recorded] = mock.requests;
  assert.equal(recorded?.role, "plain");
  assert.equal(recorded?.status, 200);
  assert.equal(recorded?.headers.get("x-request-id"), "abc");
  assert.deepEqual(recorded?.body, chatBody({ max_tokens: 32 }));
  assert.equal(await recorded?.finished, "completed");
});

Deno.test("mock vllm answers completions with text_completion and cuts at max_tokens", async () => {
  await using mock = await createMockVllm();
  const response = await postJson(mock, COMPLETIONS, {
    prompt: "The capital of France is",
    max_tokens: 2,
  });
  const body = await response.json();
  assert.match(body.id, /^cmpl-[0-9a-f]{32}$/);
  assert.equal(body.object, "text_completion");
  assert.deepEqual(body.choices, [{
    index: 0,
    text: "Hello!",
    logprobs: null,
    finish_reason: "length",
    stop_reason: null,
    token_ids: null,
    prompt_logprobs: null,
    prompt_token_ids: null,
  }]);
  assert.deepEqual(body.usage, {
    prompt_tokens: 5,
    total_tokens: 7,
    completion_tokens: 2,
    prompt_tokens_details: null,
  });
  assert.equal(body.kv_transfer_params, null);
});

Deno.test("mock vllm defaults completions max_tokens to 16 and repeats the canned reply", async () => {
  await using mock = await createMockVllm({ outputTokens: 20 });
  const body = await (await postJson(mock, COMPLETIONS, { prompt: ["a", "b"] }))
    .json();
  assert.equal(body.usage.completion_tokens, 16);
  assert.equal(body.choices[0].finish_reason, "length");
  assert.match(body.choices[0].text, /you\. Hello! This is$/);
});

Deno.test("mock vllm answers the Responses API with a response object", async () => {
  await using mock = await createMockVllm();
  const response = await postJson(mock, RESPONSES, {
    input: "Hello",
    max_output_tokens: 3,
  }, {
    headers: { "x-request-id": "r1" },
  });
  const body = await response.json();
  assert.equal(body.id, "resp_r1");
  assert.equal(body.object, "response");
  assert.equal(body.status, "completed");
  assert.deepEqual(body.output, [{
    type: "message",
    id: "msg_r1",
    role: "assistant",
    status: "completed",
    content: [{ type: "output_text", text: "Hello! This", annotations: [] }],
  }]);
  assert.deepEqual(body.usage, {
    input_tokens: 9,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: 3,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: 12,
  });
  assert.equal(body.kv_transfer_params, null);
});

Deno.test("mock vllm streams chat as one SSE event per read: role, content, finish, [DONE]", async () => {
  await using mock = await createMockVllm();
  const response = await postJson(
    mock,
    CHAT,
    chatBody({ stream: true, max_tokens: 3 }),
  );
  assert.equal(
    response.headers.get("content-type"),
    "text/event-stream; charset=utf-8",
  );
  const chunks = await readChunks(response);
  assert.ok(
    chunks.every((c) =>
      c.startsWith("data: ") && c.endsWith("\n\n") &&
      c.split("\n\n").length === 2
    ),
  );
  const data = chunks.map((c) => c.slice("data: ".length, -2));
  assert.equal(data.length, 5);
  assert.equal(data.at(-1), "[DONE]");
  const events = data.slice(0, -1).map((d) => JSON.parse(d));
  const ids = new Set(events.map((e) => e.id));
  assert.equal(ids.size, 1);
  assert.deepEqual(events[0].choices, [{
    index: 0,
    delta: { role: "assistant", content: "" },
    logprobs: null,
    finish_reason: null,
  }]);
  assert.deepEqual(events.slice(1).map((e) => e.choices[0].delta.content), [
    "Hello",
    "!",
    " This",
  ]);
  assert.deepEqual(events.slice(1).map((e) => e.choices[0].finish_reason), [
    null,
    null,
    "length",
  ]);
  assert.ok(
    events.every((e) =>
      e.object === "chat.completion.chunk" && !("usage" in e)
    ),
  );
});

Deno.test("mock vllm sends the usage chunk only when stream_options asks for it", async () => {
  await using mock = await createMockVllm();
  const withUsage = sseJson(
    await (await postJson(
      mock,
      CHAT,
      chatBody({ stream: true, stream_options: {} }),
    )).text(),
  );
  assert.deepEqual(withUsage.at(-1)?.choices, []);
  assert.deepEqual(withUsage.at(-1)?.usage, {
    prompt_tokens: 9,
    total_tokens: 21,
    completion_tokens: 12,
  });
  const optedOut = sseJson(
    await (await postJson(
      mock,
      CHAT,
      chatBody({ stream: true, stream_options: { include_usage: false } }),
    )).text(),
  );
  assert.ok(optedOut.every((e) => !("usage" in e)));
  const plain = sseJson(
    await (await postJson(mock, CHAT, chatBody({ stream: true }))).text(),
  );
  assert.equal(plain.length, 13);
  assert.deepEqual(
    (plain.at(-1)?.choices as { finish_reason: string }[]).map((c) =>
      c.finish_reason
    ),
    ["stop"],
  );
});

Deno.test("mock vllm streams completions without a role chunk", async () => {
  await using mock = await createMockVllm();
  const text = await (await postJson(mock, COMPLETIONS, {
    prompt: "Hi",
    max_tokens: 2,
    stream: true,
    stream_options: { include_usage: true },
  })).text();
  const data = sseData(text);
  assert.equal(data.at(-1), "[DONE]");
  const events = sseJson(text);
  assert.deepEqual(events.slice(0, 2).map((e) => e.choices), [
    [{
      index: 0,
      text: "Hello",
      logprobs: null,
      finish_reason: null,
      stop_reason: null,
    }],
    [{
      index: 0,
      text: "!",
      logprobs: null,
      finish_reason: "length",
      stop_reason: null,
    }],
  ]);
  assert.equal(events[2]?.object, "text_completion");
  assert.deepEqual(events[2]?.usage, {
    prompt_tokens: 1,
    total_tokens: 3,
    completion_tokens: 2,
  });
});

Deno.test("mock vllm streams Responses API typed events ending in response.completed", async () => {
  await using mock = await createMockVllm();
  const text = await (await postJson(mock, RESPONSES, {
    input: "Hi",
    stream: true,
    max_output_tokens: 2,
  })).text();
  const events = text.split("\n\n").filter(Boolean).map((e) => {
    const [eventLine, dataLine] = e.split("\n");
    return {
      type: eventLine?.slice("event: ".length),
      data: JSON.parse(dataLine?.slice("data: ".length) ?? ""),
    };
  });
  assert.deepEqual(events.map((e) => e.type), [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
  ]);
  assert.deepEqual(events.map((e) => e.data.sequence_number), [
    ...events.keys(),
  ]);
  assert.deepEqual(
    events.filter((e) => e.type?.endsWith(".delta")).map((e) => e.data.delta),
    ["Hello", "!"],
  );
  assert.equal(
    events.at(-1)?.data.response.output[0].content[0].text,
    "Hello!",
  );
  assert.ok(!text.includes("[DONE]"));
});

Deno.test("mock vllm rejects malformed JSON with vLLM's validation error shape", async () => {
  await using mock = await createMockVllm();
  const response = await postJson(mock, CHAT, '{"messages": [');
  assert.equal(response.status, 400);
  assert.equal(response.headers.get("content-type"), "application/json");
  const { error } = await response.json();
  assert.equal(error.type, "Bad Request");
  assert.equal(error.code, 400);
  assert.match(
    error.message,
    /^1 validation error:\n {2}\{'type': 'json_invalid', 'loc': 'body\.\d+'/,
  );
  assert.match(error.param, /^body\.\d+$/);
  assert.equal(mock.requests[0]?.body, undefined);
  assert.equal(mock.requests[0]?.bodyText, '{"messages": [');
});

Deno.test("mock vllm rejects stream_options unless stream is true", async () => {
  await using mock = await createMockVllm();
  const response = await postJson(
    mock,
    CHAT,
    chatBody({ stream_options: { include_usage: true } }),
  );
  assert.equal(response.status, 400);
  assert.deepEqual(await response.json(), {
    error: {
      message: "Stream options can only be defined when `stream=True`.",
      type: "Bad Request",
      param: "stream_options",
      code: 400,
    },
  });
});

Deno.test("mock vllm rejects min_tokens above the request's max_tokens, as vLLM's SamplingParams does", async () => {
  await using mock = await createMockVllm();
  const refused = await postJson(
    mock,
    CHAT,
    chatBody({ max_tokens: 1, min_tokens: 2 }),
  );
  assert.equal(refused.status, 400);
  const { error } = await refused.json();
  assert.equal(
    error.message,
    "min_tokens must be less than or equal to max_tokens=1, got 2.",
  );
  assert.equal(error.param, "min_tokens");
  const generate = await postJson(mock, "/inference/v1/generate", {
    token_ids: [1, 2, 3],
    sampling_params: { max_tokens: 1, min_tokens: 3 },
  });
  assert.equal(generate.status, 400);
  await generate.body?.cancel();
  const equal = await postJson(
    mock,
    CHAT,
    chatBody({ max_tokens: 1, min_tokens: 1 }),
  );
  assert.equal(equal.status, 200);
  await equal.body?.cancel();
  // vLLM's Anthropic model has no min_tokens: it is ignored there.
  const messages = await postJson(mock, "/v1/messages", {
    model: "Qwen/Qwen3-0.6B",
    max_tokens: 1,
    min_tokens: 5,
    messages: [{ role: "user", content: "Hi" }],
  });
  assert.equal(messages.status, 200);
  await messages.body?.cancel();
});

Deno.test("mock vllm rejects bodies without the API's required field, non-objects and non-JSON media", async () => {
  await using mock = await createMockVllm();
  const cases: [string, unknown, string][] = [
    [CHAT, { model: "Qwen/Qwen3-0.6B" }, "body.messages"],
    [COMPLETIONS, { max_tokens: 3 }, "body.prompt"],
    [RESPONSES, {}, "body.input"],
    [CHAT, [1, 2], "body"],
  ];
  for (const [path, body, param] of cases) {
    const response = await postJson(mock, path, body);
    assert.equal(response.status, 400, path);
    const { error } = await response.json();
    assert.equal(error.type, "Bad Request");
    assert.equal(error.param, param);
  }
  const text = await fetch(mock.url + CHAT, {
    method: "POST",
    headers: { "content-type": "text/plain" },
    body: JSON.stringify(chatBody()),
  });
  assert.equal(text.status, 400);
  assert.match(
    (await text.json()).error.message,
    /Only 'application\/json' is allowed/,
  );
});

Deno.test("mock vllm answers 404 NotFoundError for a model it does not serve", async () => {
  await using mock = await createMockVllm();
  const response = await postJson(
    mock,
    CHAT,
    chatBody({ model: "no-such-model" }),
  );
  assert.equal(response.status, 404);
  assert.deepEqual(await response.json(), {
    error: {
      message: "The model `no-such-model` does not exist.",
      type: "NotFoundError",
      param: "model",
      code: 404,
    },
  });
  const empty = await postJson(mock, CHAT, chatBody({ model: "" }));
  assert.equal(empty.status, 200);
  await empty.body?.cancel();
});

Deno.test("mock vllm returns the status named by X-Return-Error", async () => {
  await using mock = await createMockVllm();
  const cases: [string, number, string][] = [
    ["429", 429, "RateLimitError"],
    ["401", 401, "AuthenticationError"],
    ["503", 503, "InternalServerError"],
    ["nope", 400, "BadRequestError"],
  ];
  for (const [value, status, type] of cases) {
    const response = await postJson(mock, CHAT, chatBody(), {
      headers: { "x-return-error": value },
    });
    assert.equal(response.status, status);
    const { error } = await response.json();
    assert.equal(error.type, type);
    assert.equal(error.code, status);
    if (value !== "nope") {
      assert.equal(
        error.message,
        `Simulated error triggered by X-Return-Error header (code ${status})`,
      );
    }
  }
});

Deno.test("mock vllm injects failureStatus errors at failureRate 1 and none at 0", async () => {
  await using mock = await createMockVllm({
    failureRate: 1,
    failureStatus: 502,
  });
  const failed = await postJson(mock, CHAT, chatBody());
  assert.equal(failed.status, 502);
  assert.equal((await failed.json()).error.type, "InternalServerError");
  mock.setConfig({ failureRate: 0 });
  const ok = await postJson(mock, CHAT, chatBody());
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
});

Deno.test("mock vllm takes the id base from the first X-Request-Id, then body request_id", async () => {
  await using mock = await createMockVllm({ enableRequestIdHeaders: true });
  const headers = new Headers({ "content-type": "application/json" });
  headers.append("x-request-id", "first");
  headers.append("x-request-id", "second");
  const both = await fetch(mock.url + CHAT, {
    method: "POST",
    headers,
    body: JSON.stringify(chatBody()),
  });
  assert.equal((await both.json()).id, "chatcmpl-first");
  assert.equal(both.headers.get("x-request-id"), "first");
  const fromBody = await postJson(mock, COMPLETIONS, {
    prompt: "x",
    request_id: "body-id",
  });
  assert.equal((await fromBody.json()).id, "cmpl-body-id");
  assert.match(fromBody.headers.get("x-request-id") ?? "", /^[0-9a-f]{32}$/);
  assert.notEqual(fromBody.headers.get("x-request-id"), "body-id");
});

Deno.test("mock vllm echoes no X-Request-Id header unless enabled", async () => {
  await using mock = await createMockVllm();
  const response = await postJson(mock, CHAT, chatBody(), {
    headers: { "x-request-id": "abc" },
  });
  assert.equal(response.headers.get("x-request-id"), null);
  await response.body?.cancel();
});

Deno.test("mock vllm reports prompt_tokens_details only when enabled", async () => {
  await using mock = await createMockVllm({ promptTokensDetails: true });
  const body = await (await postJson(mock, CHAT, chatBody())).json();
  assert.deepEqual(body.usage.prompt_tokens_details, { cached_tokens: 0 });
});

Deno.test("mock vllm serves health, ping, version, models and tokenize like vLLM", async () => {
  await using mock = await createMockVllm({ model: "m1" });
  const health = await fetch(mock.url + "/health");
  assert.equal(health.status, 200);
  assert.equal(await health.text(), "");
  const head = await fetch(mock.url + "/health", { method: "HEAD" });
  assert.equal(head.status, 200);
  await head.body?.cancel();
  mock.setHealthy(false);
  for (const method of ["GET", "POST"]) {
    const ping = await fetch(mock.url + "/ping", { method });
    assert.equal(ping.status, 503);
    assert.equal(await ping.text(), "");
  }
  assert.deepEqual(await (await fetch(mock.url + "/version")).json(), {
    version: "0.21.0",
  });
  const models = await (await fetch(mock.url + "/v1/models")).json();
  assert.equal(models.object, "list");
  assert.equal(models.data[0].id, "m1");
  assert.equal(models.data[0].owned_by, "vllm");
  assert.equal(models.data[0].root, "m1");
  assert.equal(models.data[0].parent, null);
  assert.equal(models.data[0].max_model_len, 40960);
  assert.equal(models.data[0].permission[0].object, "model_permission");
  const tokens = await (await postJson(mock, "/tokenize", {
    prompt: "Hello world",
    return_token_strs: true,
  })).json();
  assert.equal(tokens.count, 2);
  assert.equal(tokens.max_model_len, 40960);
  assert.equal(tokens.tokens.length, 2);
  assert.deepEqual(tokens.token_strs, ["Hello", "world"]);
  assert.ok(mock.requests.every((r) => r.role === "other"));
});

Deno.test("mock vllm exposes vLLM metric names and counts finished and aborted requests", async () => {
  await using mock = await createMockVllm();
  await (await postJson(mock, CHAT, chatBody({ max_tokens: 2 }))).text();
  const response = await fetch(mock.url + "/metrics");
  assert.equal(
    response.headers.get("content-type"),
    "text/plain; version=0.0.4; charset=utf-8",
  );
  const text = await response.text();
  const model = 'model_name="Qwen/Qwen3-0.6B"';
  assert.ok(
    text.includes(`vllm:num_requests_running{engine="0",${model}} 0.0`),
  );
  assert.ok(
    text.includes(`vllm:num_requests_waiting{engine="0",${model}} 0.0`),
  );
  assert.ok(text.includes(`vllm:prompt_tokens_total{engine="0",${model}} 9.0`));
  assert.ok(
    text.includes(`vllm:generation_tokens_total{engine="0",${model}} 2.0`),
  );
  assert.ok(
    text.includes(
      `vllm:request_success_total{engine="0",finished_reason="length",${model}} 1.0`,
    ),
  );
  assert.ok(text.includes('mock_vllm:kv_pulls_total{outcome="pulled"} 0.0'));
  assert.ok(text.includes("mock_vllm:requests_aborted_total 0.0"));
});

Deno.test("mock vllm admin config changes knobs and rejects unknown keys", async () => {
  await using mock = await createMockVllm();
  const changed = await postJson(mock, "/admin/config", {
    interTokenMs: 3,
    kvLoadFailurePolicy: "recompute",
  });
  assert.equal(changed.status, 200);
  const knobs = await changed.json();
  assert.equal(knobs.interTokenMs, 3);
  assert.equal(knobs.kvLoadFailurePolicy, "recompute");
  const unknown = await postJson(mock, "/admin/config", {
    ttftMs: 1,
    bogus: true,
  });
  assert.equal(unknown.status, 400);
  assert.equal((await unknown.json()).error.param, "bogus");
  const bad = await postJson(mock, "/admin/config", { failureRate: 2 });
  assert.equal(bad.status, 400);
  await bad.body?.cancel();
  const current = await (await fetch(mock.url + "/admin/config")).json();
  assert.equal(current.ttftMs, 0);
  assert.equal(current.failureRate, 0);
  assert.equal(current.healthy, true);
});

Deno.test("mock vllm answers unknown routes with FastAPI's 404 and records them", async () => {
  await using mock = await createMockVllm();
  const response = await fetch(mock.url + "/nope?x=1");
  assert.equal(response.status, 404);
  assert.deepEqual(await response.json(), { detail: "Not Found" });
  const wrongMethod = await fetch(mock.url + CHAT);
  assert.equal(wrongMethod.status, 405);
  assert.deepEqual(await wrongMethod.json(), { detail: "Method Not Allowed" });
  assert.deepEqual(
    mock.requests.map((r) => [r.method, r.path, r.search, r.role, r.status]),
    [
      ["GET", "/nope", "?x=1", "other", 404],
      ["GET", CHAT, "", "other", 405],
    ],
  );
});

Deno.test("mock vllm writes vLLM-style log lines to the log option", async () => {
  const lines: string[] = [];
  await using mock = await createMockVllm({
    name: "decoder",
    log: (line) => lines.push(line),
  });
  await (await postJson(mock, CHAT, chatBody(), {
    headers: { "x-request-id": "r9" },
  })).text();
  assert.deepEqual(lines, mock.logs);
  assert.ok(
    lines.some((l) =>
      /^\(decoder\) INFO \d\d-\d\d \d\d:\d\d:\d\d \[logger\.py:43\] Received request chatcmpl-r9: prompt: '<\|im_start\|>user\\nHello/
        .test(l)
    ),
  );
  assert.ok(
    lines.some((l) =>
      /^\(decoder\) INFO: {5}127\.0\.0\.1:\d+ - "POST \/v1\/chat\/completions HTTP\/1\.1" 200 OK$/
        .test(l)
    ),
  );
});

Deno.test("mock vllm answers 404 for a previous_response_id it did not produce, 200 for one it did", async () => {
  await using mock = await createMockVllm();
  const unknown = await postJson(mock, RESPONSES, {
    input: "Hi",
    previous_response_id: "resp_elsewhere",
  });
  assert.equal(unknown.status, 404);
  assert.deepEqual((await unknown.json()).error, {
    message: "Response with id 'resp_elsewhere' not found.",
    type: "invalid_request_error",
    param: "response_id",
    code: 404,
  });
  const first = await (await postJson(mock, RESPONSES, { input: "Hi" })).json();
  const next = await postJson(mock, RESPONSES, {
    input: "More",
    previous_response_id: first.id,
  });
  assert.equal(next.status, 200);
  assert.equal((await next.json()).status, "completed");
});

Deno.test("mock vllm answers a background Responses request queued, without kv_transfer_params", async () => {
  await using mock = await createMockVllm({ kvConnector: "nixlv2" });
  const response = await postJson(mock, RESPONSES, {
    input: "Hi",
    background: true,
    kv_transfer_params: { do_remote_decode: true },
  });
  const body = await response.json();
  assert.equal(body.status, "queued");
  assert.equal(body.kv_transfer_params, null);
  assert.deepEqual(body.output, []);
});
