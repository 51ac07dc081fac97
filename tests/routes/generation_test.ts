import assert from "node:assert/strict";
import { chatBody, createHarness, jsonHeaders } from "../support/harness.ts";

for (const body of ["null", "[1,2]", "42", '{"model":', ""]) {
  Deno.test(
    `generation answers 400 to the body ${
      JSON.stringify(body)
    } and contacts no upstream`,
    async () => {
      await using h = await createHarness();
      const response = await h.pd("/v1/chat/completions", body);
      assert.equal(response.status, 400);
      assert.equal(response.headers.get("content-type"), "application/json");
      const error = (await response.json()).error;
      assert.equal(error.type, "BadRequestError");
      assert.match(
        error.message,
        /^Request body (is not valid JSON|must be a JSON object)/,
      );
      assert.equal(h.prefill.requests.length + h.decode.requests.length, 0);
    },
  );
}

for (
  const target of [
    "http://user:pw@host:80",
    "host:80/path",
    "https://host:443",
    "host",
  ]
) {
  Deno.test(
    `generation answers 400 to the prefill target ${JSON.stringify(target)}`,
    async () => {
      await using h = await createHarness();
      const response = await h.request("/v1/completions", {
        method: "POST",
        headers: jsonHeaders({ "x-prefiller-host-port": target }),
        body: '{"prompt":"x"}',
      });
      assert.equal(response.status, 400);
      assert.match(
        (await response.json()).error.message,
        /header "x-prefiller-host-port"/,
      );
      assert.equal(h.prefill.requests.length + h.decode.requests.length, 0);
    },
  );
}

Deno.test(
  "generation picks the prefiller at random with -enable-prefiller-sampling",
  async () => {
    await using h = await createHarness({
      config: { enablePrefillerSampling: true },
      random: () => 0.9,
    });
    const response = await h.request("/v1/chat/completions", {
      method: "POST",
      headers: jsonHeaders({
        "x-prefiller-host-port": `127.0.0.1:1, ${h.prefillerHeader}`,
      }),
      body: chatBody(),
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(h.prefill.requests.length, 1);
  },
);

Deno.test(
  "generation uses the legacy x-prefiller-url header",
  async () => {
    await using h = await createHarness();
    const response = await h.request("/v1/chat/completions", {
      method: "POST",
      headers: jsonHeaders({
        "x-prefiller-url": `http://${h.prefillerHeader}`,
      }),
      body: chatBody(),
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(h.prefill.requests.length, 1);
    assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
  },
);

Deno.test(
  "generation logs routing at verbosity 4 with the request id on every line",
  async () => {
    await using h = await createHarness({ config: { verbosity: 4 } });
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-request-id": "rid-7",
    });
    await response.body?.cancel();
    const messages = h.logs.map((line) => line.msg);
    for (
      const msg of [
        "using P/D protocol",
        "running NIXL protocol V2",
        "sending prefill request",
        "sending request to decoder",
      ]
    ) {
      assert.ok(messages.includes(msg), `missing log line ${msg}`);
    }
    assert.ok(h.logs.every((line) => line.request_id === "rid-7"));
    assert.equal(h.logs.some((line) => line.level === "trace"), false);
  },
);

Deno.test("generation logs bodies only at verbosity 5", async () => {
  await using h = await createHarness({ config: { verbosity: 5 } });
  const response = await h.pd(
    "/v1/chat/completions",
    chatBody({ user: "body-marker" }),
  );
  await response.body?.cancel();
  const traces = h.logs.filter((line) => line.level === "trace");
  assert.deepEqual(traces.map((line) => line.msg), [
    "client request",
    "prefill request",
    "prefiller kv_transfer_params",
    "decode request",
  ]);
  assert.match(String(traces[0]?.body), /body-marker/);
});

Deno.test(
  "generation sends both legs, and logs, the first of several x-request-id values only",
  async () => {
    await using h = await createHarness({ config: { verbosity: 4 } });
    const headers = jsonHeaders({
      "x-prefiller-host-port": h.prefillerHeader,
    });
    // Two header lines arrive from Deno.serve as one comma-joined value.
    headers.append("x-request-id", "first-id");
    headers.append("x-request-id", "second-id");
    const response = await h.request("/v1/chat/completions", {
      method: "POST",
      headers,
      body: chatBody(),
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(
      h.prefill.requests[0]?.headers.get("x-request-id"),
      "first-id",
    );
    assert.equal(h.decode.requests[0]?.headers.get("x-request-id"), "first-id");
    const requestLines = h.logs.filter((line) => "request_id" in line);
    assert.ok(requestLines.length > 0);
    assert.ok(requestLines.every((line) => line.request_id === "first-id"));
  },
);
