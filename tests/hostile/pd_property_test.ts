import assert from "node:assert/strict";
import fc from "fast-check";
import { createMockVllm } from "../../scripts/mock_vllm/mod.ts";
import { createApp } from "../../src/app.ts";
import { createLogger } from "../../src/log.ts";
import { serveApp } from "../../src/server.ts";
import { createUpstreamClient } from "../../src/upstream/client.ts";
import { testConfig } from "../support/harness.ts";
import { withDeadline } from "../support/deadline.ts";
import { closedPort } from "../support/stub_upstream.ts";
import { startCountingRelay } from "./_upstreams.ts";

/** Fixed, so a failure replays; fast-check prints it with the counterexample. */
const SEED = 20_251_105;
const RUNS = 300;
const LIMIT = 16 * 1024;
/** The idle pool keeps a connection 4 s (upstream/client.ts); a leaked one stays past that. */
const DRAIN_DEADLINE_MS = 10_000;

/** Statuses the sidecar or the mock may answer; a 500 is the sidecar's bug. */
const SANE_STATUSES = new Set([200, 400, 404, 405, 413, 422, 502, 503]);

// Framing belongs to the runtime's HTTP codec, not to the handler under test.
const FRAMING = new Set([
  "content-length",
  "transfer-encoding",
  "host",
  "connection",
  "keep-alive",
  "expect",
  "upgrade",
  "te",
  "trailer",
]);

const TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~";

const headerName = fc.string({
  unit: fc.constantFrom(...TOKEN_CHARS),
  minLength: 1,
  maxLength: 24,
}).filter((name) => !FRAMING.has(name));

// Visible ASCII and Latin-1 obs-text, what a field value may carry on the wire.
const headerValue = fc.string({
  unit: fc.oneof(
    fc.integer({ min: 0x21, max: 0x7e }),
    fc.integer({ min: 0xa0, max: 0xff }),
  ).map((code) => String.fromCharCode(code)),
  maxLength: 64,
});

/** Mostly `valid`, sometimes anything at all. */
function mostly<T>(valid: fc.Arbitrary<T>): fc.Arbitrary<unknown> {
  return fc.oneof({ weight: 4, arbitrary: valid }, {
    weight: 1,
    arbitrary: fc.anything(),
  });
}

const chatBody = fc.record({
  model: mostly(fc.constant("Qwen/Qwen3-0.6B")),
  messages: mostly(fc.constant([{ role: "user", content: "Hello" }])),
  prompt: mostly(fc.string({ maxLength: 64 })),
  max_tokens: mostly(fc.integer({ min: 1, max: 4 })),
  stream: mostly(fc.boolean()),
  kv_transfer_params: fc.anything(),
}, { requiredKeys: ["model", "max_tokens"] }).map((body) =>
  JSON.stringify(body)
);

const body = fc.oneof(
  { weight: 4, arbitrary: chatBody },
  fc.json(),
  fc.string({ maxLength: 512 }),
  fc.uint8Array({ maxLength: 1024 }),
  fc.integer({ min: LIMIT + 1, max: 3 * LIMIT }).map((n) => "x".repeat(n)),
);

function prefillerValue(prefillPort: number, closed: number) {
  const good = `127.0.0.1:${prefillPort}`;
  return fc.oneof(
    fc.constantFrom(
      good,
      `localhost:${prefillPort}`,
      `http://${good}`,
      `http://${good}/`,
      `${good}/v1`,
      `user@${good}`,
      `[::1]:${closed}`,
      `127.0.0.1:${closed}`,
      "127.0.0.1:0",
      "127.0.0.1:65536",
      `https://${good}`,
      "",
      " ",
    ),
    fc.array(fc.constant(good), { minLength: 2, maxLength: 4 }).map((list) =>
      list.join(", ")
    ),
    // No ':' so no value names a host to look up: only loopback is reached.
    fc.string({ unit: fc.constantFrom(..."ab1.[]/@%?# -_\u00e9") }),
  );
}

Deno.test(
  `P/D handler answers ${RUNS} random requests, stays up and leaves no upstream connection open`,
  async () => {
    await using prefill = await createMockVllm({ name: "prefiller" });
    await using decode = await createMockVllm({ name: "decoder" });
    await using prefillRelay = startCountingRelay(prefill.port);
    await using decodeRelay = startCountingRelay(decode.port);
    const upstream = createUpstreamClient();
    const log = createLogger({ verbosity: -1, write() {} });
    const config = testConfig({
      modelServerPort: decodeRelay.port,
      maxRequestBodyBytes: LIMIT,
      verbosity: -1,
    });
    const server = serveApp(createApp({ config, log, upstream }), {
      hostname: "127.0.0.1",
      port: 0,
      log,
    });
    const base = `http://127.0.0.1:${server.addr.port}`;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/responses",
          ),
          body,
          fc.array(fc.tuple(headerName, headerValue), { maxLength: 6 }),
          fc.option(prefillerValue(prefillRelay.port, closedPort())),
          async (path, payload, headers, prefiller) => {
            const sent = new Headers();
            for (const [name, value] of headers) sent.append(name, value);
            if (prefiller !== null) {
              sent.set("x-prefiller-host-port", prefiller);
            }
            const response = await withDeadline(
              fetch(`${base}${path}`, {
                method: "POST",
                headers: sent,
                body: payload,
              }),
              10_000,
              "answer",
            );
            await withDeadline(response.arrayBuffer(), 10_000, "answer body");
            assert.ok(
              SANE_STATUSES.has(response.status),
              `status ${response.status}`,
            );
          },
        ),
        { numRuns: RUNS, seed: SEED },
      );
      const health = await fetch(`${base}/health`);
      assert.equal(health.status, 200);
      await health.body?.cancel();
      assert.ok(prefillRelay.accepted() > 0, "no case reached the prefiller");
      await withDeadline(
        Promise.all([prefillRelay.idle(), decodeRelay.idle()]),
        DRAIN_DEADLINE_MS,
        "upstream connections closing",
      );
    } finally {
      await server.shutdown();
      upstream.close();
    }
  },
);
