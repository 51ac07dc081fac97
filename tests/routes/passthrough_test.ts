import assert from "node:assert/strict";
import {
  chatBody,
  createHarness,
  isAccessLine,
  jsonHeaders,
  readSseData,
} from "../support/harness.ts";
import { startScriptedServer } from "../support/stub_upstream.ts";

Deno.test(
  "passthrough forwards method, path, query, headers and body unchanged",
  async () => {
    await using h = await createHarness();
    const response = await h.request("/tokenize?trace=1", {
      method: "POST",
      headers: jsonHeaders({
        "authorization": "Bearer t",
        "x-custom": "v",
        "connection": "x-hop",
        "x-hop": "1",
      }),
      body: '{"prompt": "Hello world"}',
    });
    assert.equal(response.status, 200);
    assert.equal((await response.json()).count > 0, true);
    const [seen] = h.decode.requests;
    assert.equal(seen?.method, "POST");
    assert.equal(seen?.path, "/tokenize");
    assert.equal(seen?.search, "?trace=1");
    assert.equal(seen?.bodyText, '{"prompt": "Hello world"}');
    assert.equal(seen?.headers.get("authorization"), "Bearer t");
    assert.equal(seen?.headers.get("x-custom"), "v");
    assert.equal(seen?.headers.has("x-hop"), false);
    assert.equal(h.prefill.requests.length, 0);
  },
);

Deno.test(
  "passthrough forwards a non-ASCII body byte for byte",
  async () => {
    await using h = await createHarness();
    const body = '{"prompt": "naïve café, 東京 🚀"}';
    const response = await h.request("/tokenize", {
      method: "POST",
      headers: jsonHeaders(),
      body,
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    const [seen] = h.decode.requests;
    assert.equal(seen?.bodyText, body);
    assert.equal(
      Number(seen?.headers.get("content-length")),
      new TextEncoder().encode(body).length,
    );
  },
);

Deno.test(
  "passthrough relays GET answers and statuses of any route",
  async () => {
    await using h = await createHarness();
    const models = await h.request("/v1/models");
    assert.equal(models.status, 200);
    assert.equal((await models.json()).object, "list");
    const missing = await h.request("/no/such/route");
    assert.equal(missing.status, 404);
    assert.deepEqual(await missing.json(), { detail: "Not Found" });
    const getOnGenerationPath = await h.request("/v1/chat/completions");
    await getOnGenerationPath.body?.cancel();
    assert.equal(h.decode.requests.at(-1)?.method, "GET");
    assert.equal(h.decode.requests.at(-1)?.path, "/v1/chat/completions");
  },
);

Deno.test(
  "generation request without a prefiller header goes to the decoder byte for byte",
  async () => {
    await using h = await createHarness();
    const body =
      `{"model":"Qwen/Qwen3-0.6B",  "prompt":"Hi", "max_tokens":3, "n": 1.0}`;
    const response = await h.request("/v1/completions", {
      method: "POST",
      headers: jsonHeaders(),
      body,
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(h.decode.requests[0]?.bodyText, body);
    assert.equal(h.decode.requests[0]?.role, "plain");
    assert.equal(h.prefill.requests.length, 0);
  },
);

Deno.test(
  "generation request with an empty prefiller header is plain decode without the header",
  async () => {
    await using h = await createHarness();
    const response = await h.request("/v1/chat/completions", {
      method: "POST",
      headers: jsonHeaders({ "x-prefiller-host-port": " " }),
      body: chatBody({ stream: true }),
    });
    const events = await readSseData(response);
    assert.equal(events.at(-1), "[DONE]");
    assert.equal(
      h.decode.requests[0]?.headers.has("x-prefiller-host-port"),
      false,
    );
    assert.equal(h.prefill.requests.length, 0);
  },
);

Deno.test(
  "passthrough answers 503 with the decode-not-ready message when vLLM is down",
  async () => {
    await using h = await createHarness();
    await h.decode.close();
    for (
      const [path, init] of [["/v1/models", {}], ["/v1/chat/completions", {
        method: "POST",
        headers: jsonHeaders({ "x-prefiller-host-port": h.prefillerHeader }),
        body: chatBody(),
      }]] as const
    ) {
      const response = await h.request(path, init);
      assert.equal(response.status, 503, path);
      assert.equal(response.headers.get("content-type"), "application/json");
      assert.deepEqual((await response.json()).error, {
        message:
          "The decode node is not ready. Please check that the vLLM service is running and the port configuration is correct.",
        type: "ServiceUnavailable",
        param: null,
        code: 503,
      });
    }
    const codes = h.logs.filter(isAccessLine())
      .map((line) => [line.route, line.error_code, line.outcome]);
    assert.deepEqual(codes, [
      ["passthrough", "decoder_not_ready", "error"],
      ["pd", "decoder_not_ready", "error"],
    ]);
  },
);

Deno.test(
  "passthrough answers 502 decoder_unreachable when the decoder drops the connection",
  async () => {
    await using decoder = startScriptedServer(async (conn) => {
      await conn.read(new Uint8Array(16384));
      conn.close();
    });
    await using h = await createHarness({
      config: { modelServerPort: decoder.port },
    });
    const response = await h.request("/v1/models");
    assert.equal(response.status, 502);
    assert.match(
      (await response.json()).error.message,
      /^Cannot reach decode server "127\.0\.0\.1:\d+": /,
    );
    const line = await h.accessLine();
    assert.equal(line.error_code, "decoder_unreachable");
  },
);

Deno.test(
  "health is answered by the sidecar without asking vLLM",
  async () => {
    await using h = await createHarness();
    for (const method of ["GET", "HEAD"]) {
      const response = await h.request("/health", { method });
      assert.equal(response.status, 200);
      assert.equal(await response.text(), "");
    }
    assert.equal(h.decode.requests.length, 0);
    const post = await h.request("/health", { method: "POST" });
    await post.body?.cancel();
    assert.equal(h.decode.requests[0]?.method, "POST");
  },
);

Deno.test(
  "passthrough over a socket appends the client address to X-Forwarded-For",
  async () => {
    await using h = await createHarness();
    const base = h.listen();
    const response = await fetch(`${base}/v1/models`, {
      headers: { "x-forwarded-for": "203.0.113.9" },
    });
    await response.body?.cancel();
    assert.equal(
      h.decode.requests[0]?.headers.get("x-forwarded-for"),
      "203.0.113.9, 127.0.0.1",
    );
  },
);

Deno.test(
  "passthrough never forwards the routing headers, on any route",
  async () => {
    await using h = await createHarness();
    for (const path of ["/v1/models", "/tokenize"]) {
      const response = await h.request(path, {
        method: path === "/tokenize" ? "POST" : "GET",
        headers: jsonHeaders({
          "x-prefiller-url": "http://10.0.0.1:8000",
          "x-prefiller-host-port": "10.0.0.1:8000",
        }),
        ...(path === "/tokenize" ? { body: '{"prompt":"Hi"}' } : {}),
      });
      assert.equal(response.status, 200, path);
      await response.body?.cancel();
      const seen = h.decode.requests.at(-1);
      assert.equal(seen?.path, path);
      assert.equal(seen?.headers.has("x-prefiller-url"), false, path);
      assert.equal(seen?.headers.has("x-prefiller-host-port"), false, path);
    }
    assert.equal(h.prefill.requests.length, 0);
  },
);

/** Hop-by-hop headers a client or an old proxy may send without naming them in Connection. */
const UNLISTED_HOP_HEADERS: Record<string, string> = {
  "keep-alive": "timeout=5, max=100",
  "proxy-connection": "keep-alive",
};

Deno.test(
  "passthrough drops keep-alive and proxy-connection sent without a Connection header",
  async () => {
    await using h = await createHarness();
    const response = await h.request("/tokenize", {
      method: "POST",
      headers: jsonHeaders({ ...UNLISTED_HOP_HEADERS, "x-kept": "1" }),
      body: '{"prompt":"Hi"}',
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    const [seen] = h.decode.requests;
    assert.equal(seen?.headers.get("x-kept"), "1");
    for (const name of Object.keys(UNLISTED_HOP_HEADERS)) {
      assert.equal(seen?.headers.has(name), false, name);
    }
  },
);

Deno.test(
  "P/D legs drop keep-alive and proxy-connection sent without a Connection header",
  async () => {
    await using h = await createHarness();
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      ...UNLISTED_HOP_HEADERS,
      "x-kept": "1",
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    const legs = [h.prefill.requests[0], h.decode.requests[0]];
    for (const [i, seen] of legs.entries()) {
      assert.equal(seen?.headers.get("x-kept"), "1", `leg ${i}`);
      for (const name of Object.keys(UNLISTED_HOP_HEADERS)) {
        assert.equal(seen?.headers.has(name), false, `leg ${i}: ${name}`);
      }
    }
  },
);
