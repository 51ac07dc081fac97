import assert from "node:assert/strict";
import { createLogger } from "../../src/log.ts";
import { writeAccessLine } from "../../src/middleware/access_log.ts";
import { createApp } from "../../src/app.ts";
import { createUpstreamClient } from "../../src/upstream/client.ts";
import {
  chatBody,
  createHarness,
  type Harness,
  isAccessLine,
  jsonHeaders,
  testConfig,
} from "../support/harness.ts";
import { closedPort } from "../support/stub_upstream.ts";

const encoder = new TextEncoder();

/** The access lines of request `id` once the first has been written. */
async function accessLinesOf(
  h: Harness,
  id: string,
): Promise<Record<string, unknown>[]> {
  await h.accessLine(id);
  return h.logs.filter(isAccessLine(id));
}

/** POSTs a streaming chat request over the sidecar's socket, as P/D. */
function postStream(
  h: Harness,
  base: string,
  options: {
    id: string;
    headers?: Record<string, string>;
    body?: string;
    signal?: AbortSignal;
  },
): Promise<Response> {
  return fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: jsonHeaders({
      "x-prefiller-host-port": h.prefillerHeader,
      "x-request-id": options.id,
      ...options.headers,
    }),
    body: options.body ?? chatBody({ stream: true }),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

Deno.test(
  "access line of a whole stream comes once, at its end, with the stream's full duration",
  async () => {
    await using h = await createHarness({ config: { verbosity: 0 } });
    const base = h.listen();
    const tokens = 5;
    const interTokenMs = 40;
    const response = await postStream(h, base, {
      id: "whole",
      headers: { "x-mock-inter-token-ms": String(interTokenMs) },
      body: chatBody({ stream: true, max_tokens: tokens }),
    });
    assert.equal(response.status, 200);
    assert.match(await response.text(), /data: \[DONE\]\n\n$/);
    const lines = await accessLinesOf(h, "whole");
    assert.equal(lines.length, 1);
    const [line] = lines;
    assert.equal(line?.level, "info");
    assert.equal(line?.method, "POST");
    assert.equal(line?.path, "/v1/chat/completions");
    assert.equal(line?.route, "pd");
    assert.equal(line?.status, 200);
    assert.equal(line?.outcome, "ok");
    assert.equal(line?.connector, "nixlv2");
    assert.equal(line?.prefill_target, h.prefillerHeader);
    assert.equal("error_code" in line!, false);
    // A streamed body has no Content-Length; the line does not guess one.
    assert.equal("bytes" in line!, false);
    // The decoder alone takes (tokens - 1) gaps; time to headers would be a few ms.
    assert.ok(
      Number(line?.duration_ms) >= (tokens - 1) * interTokenMs,
      `duration ${line?.duration_ms} ms`,
    );
  },
);

Deno.test(
  "access line of a client leaving mid-stream says client_aborted and covers the time it stayed",
  async () => {
    await using h = await createHarness({ config: { verbosity: 0 } });
    const base = h.listen();
    const controller = new AbortController();
    const response = await postStream(h, base, {
      id: "left",
      headers: { "x-mock-inter-token-ms": "60000" },
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    await reader.read();
    const stayedMs = 150;
    // The stream's length is the test's choice here: the client reads for a while, then leaves.
    await new Promise((resolve) => setTimeout(resolve, stayedMs));
    controller.abort();
    await reader.cancel().catch(() => {});
    const lines = await accessLinesOf(h, "left");
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.status, 200);
    assert.equal(lines[0]?.outcome, "client_aborted");
    assert.ok(Number(lines[0]?.duration_ms) >= stayedMs);
    const decode = await h.decode.nextRequest();
    assert.equal(await decode.finished, "aborted");
  },
);

Deno.test(
  "access line of a decoder dying mid-stream comes once at the break, and the client's stream fails",
  async () => {
    await using h = await createHarness({ config: { verbosity: 0 } });
    const base = h.listen();
    const interTokenMs = 40;
    const response = await postStream(h, base, {
      id: "broken",
      // The role chunk, then one token; the second token never comes.
      headers: {
        "x-mock-break-after": "3",
        "x-mock-inter-token-ms": String(interTokenMs),
      },
    });
    assert.equal(response.status, 200);
    await assert.rejects(response.text());
    assert.equal(await h.decode.requests[0]?.finished, "failed");
    const lines = await accessLinesOf(h, "broken");
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.status, 200);
    assert.ok(Number(lines[0]?.duration_ms) >= interTokenMs);
    // Deno pipes fetch's body to the client without JS and reports the break
    // as a sent response; noticing it needs a per-chunk observer (README).
    assert.equal(lines[0]?.outcome, "ok");
  },
);

Deno.test(
  "access line of the sidecar's own error names its code and body length",
  async () => {
    await using h = await createHarness({ config: { verbosity: 0 } });
    const base = h.listen();
    const unreachable = `127.0.0.1:${closedPort()}`;
    const response = await fetch(`${base}/v1/completions`, {
      method: "POST",
      headers: jsonHeaders({
        "x-prefiller-host-port": unreachable,
        "x-request-id": "failed",
      }),
      body: '{"prompt":"Hi"}',
    });
    const body = await response.arrayBuffer();
    assert.equal(response.status, 502);
    const [line] = await accessLinesOf(h, "failed");
    assert.equal(line?.status, 502);
    assert.equal(line?.outcome, "error");
    assert.equal(line?.error_code, "prefill_unreachable");
    assert.equal(line?.bytes, body.byteLength);
    assert.equal(line?.prefill_target, unreachable);
    assert.equal(h.decode.requests.length, 0);
  },
);

Deno.test(
  "access line of a passthrough and of /health name their route and length",
  async () => {
    await using h = await createHarness({ config: { verbosity: 0 } });
    const base = h.listen();
    const models = await fetch(`${base}/v1/models`, {
      headers: { "x-request-id": "models" },
    });
    const length = (await models.arrayBuffer()).byteLength;
    const [modelsLine] = await accessLinesOf(h, "models");
    assert.equal(modelsLine?.route, "passthrough");
    assert.equal(modelsLine?.outcome, "ok");
    assert.equal(modelsLine?.bytes, length);
    assert.equal("connector" in modelsLine!, false);
    const health = await fetch(`${base}/health`, {
      headers: { "x-request-id": "health" },
    });
    await health.body?.cancel();
    const [healthLine] = await accessLinesOf(h, "health");
    assert.equal(healthLine?.route, "health");
    assert.equal(healthLine?.bytes, 0);
  },
);

Deno.test(
  "access line is written when the handler returns when the app runs without a connection",
  async () => {
    await using h = await createHarness({ config: { verbosity: 0 } });
    const response = await h.request("/v1/models", {
      headers: { "x-request-id": "in-process" },
    });
    // Written before the body is read: app.request() has no `completed`.
    const [line] = await accessLinesOf(h, "in-process");
    await response.body?.cancel();
    assert.equal(line?.status, 200);
    assert.equal(line?.outcome, "ok");
  },
);

Deno.test("access line is not written below info verbosity", async () => {
  const lines: string[] = [];
  const app = createApp({
    config: testConfig({ verbosity: -1 }),
    log: createLogger({ verbosity: -1, write: (line) => lines.push(line) }),
    upstream: createUpstreamClient(),
  });
  const response = await app.request("/health");
  assert.equal(response.status, 200);
  assert.deepEqual(lines, []);
});

Deno.test(
  "access line of a multi-valued x-request-id carries the first value",
  async () => {
    await using h = await createHarness({ config: { verbosity: 0 } });
    const base = new URL(h.listen());
    const conn = await Deno.connect({
      hostname: base.hostname,
      port: Number(base.port),
    });
    try {
      await conn.write(encoder.encode(
        "GET /health HTTP/1.1\r\nhost: a\r\nx-request-id: first\r\nx-request-id: second\r\nconnection: close\r\n\r\n",
      ));
      const [line] = await accessLinesOf(h, "first");
      assert.equal(line?.route, "health");
    } finally {
      conn.close();
    }
  },
);

Deno.test(
  "access line of a P/D request carries the prefill time and the decoder's time to first byte",
  async () => {
    await using h = await createHarness({
      config: { verbosity: 0 },
      prefill: { ttftMs: 100 },
    });
    const base = h.listen();
    const response = await postStream(h, base, { id: "timed" });
    await response.text();
    const [line] = await accessLinesOf(h, "timed");
    assert.ok(Number(line?.prefill_ms) >= 100, `prefill ${line?.prefill_ms}`);
    assert.ok(Number(line?.decode_ttfb_ms) >= 0);
    assert.ok(Number(line?.duration_ms) >= Number(line?.prefill_ms));
  },
);

Deno.test("access line reports the retries and fallback the failure policy recorded", () => {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    verbosity: 0,
    write: (line) => lines.push(JSON.parse(line)),
  });
  writeAccessLine(log, {
    method: "POST",
    path: "/v1/completions",
    status: 200,
    started: performance.now(),
    bytes: 10,
    clientGone: false,
    access: {
      route: "pd",
      connector: "nixlv2",
      retries: 2,
      fallback: "decode",
    },
  });
  assert.equal(lines[0]?.retries, 2);
  assert.equal(lines[0]?.fallback, "decode");
});

Deno.test(
  "a 16 KiB x-request-id is carried as sent on both legs and in the access line",
  async () => {
    await using h = await createHarness({ config: { verbosity: 0 } });
    const id = "r".repeat(16 * 1024);
    const base = h.listen();
    const response = await postStream(h, base, { id });
    assert.equal(response.status, 200);
    await response.text();
    const [line] = await accessLinesOf(h, id);
    assert.equal(line?.outcome, "ok");
    assert.equal(h.prefill.requests[0]?.headers.get("x-request-id"), id);
    assert.equal(h.decode.requests[0]?.headers.get("x-request-id"), id);
  },
);

Deno.test(
  "access line of a non-streaming P/D answer names its length, and of a HEAD none",
  async () => {
    await using h = await createHarness({
      config: { verbosity: 0 },
      prefill: { promptTokensDetails: true },
      decode: { promptTokensDetails: true },
    });
    const base = h.listen();
    // The cached-tokens rewrite rebuilds this body: its length is the sidecar's own.
    const answer = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: jsonHeaders({
        "x-prefiller-host-port": h.prefillerHeader,
        "x-request-id": "json",
      }),
      body: chatBody(),
    });
    const body = await answer.arrayBuffer();
    assert.equal(answer.status, 200);
    const [line] = await accessLinesOf(h, "json");
    assert.equal(line?.route, "pd");
    assert.equal(line?.bytes, body.byteLength);
    const head = await fetch(`${base}/v1/models`, {
      method: "HEAD",
      headers: { "x-request-id": "head" },
    });
    await head.body?.cancel();
    const [headLine] = await accessLinesOf(h, "head");
    assert.equal(headLine?.status, head.status);
    assert.equal(headLine?.bytes, 0);
  },
);
