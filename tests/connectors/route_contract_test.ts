/**
 * Every connector on every generation route: the token limits the route's
 * API uses are capped on prefill where that API keeps them, the decode leg
 * carries the client's own (and nothing the sidecar created), the decoder
 * gets the prefill's KV, and the client reads the route's own answer shape.
 */

import assert from "node:assert/strict";
import type { ConnectorName } from "../../src/config.ts";
import type { RecordedRequest } from "../../scripts/mock_vllm/mod.ts";
import { bodyOf, createConnectorHarness, within } from "./_support.ts";

const CONNECTORS: readonly ConnectorName[] = [
  "nixlv2",
  "nixl",
  "lmcache",
  "shared-storage",
  "sglang",
  "mooncake",
  "offloading",
];

/** SGLang's prefill gets the decode's body: its prefill server ignores limits (vllm-wire.md §3.8). */
const UNCAPPED: readonly ConnectorName[] = ["sglang"];

const MODEL = "Qwen/Qwen3-0.6B";

interface RouteCase {
  readonly name: string;
  readonly path: string;
  readonly body: Record<string, unknown>;
  /** The limits the prefill leg must carry, at the top level or in `container`. */
  readonly prefill: Record<string, unknown>;
  /** Keys the prefill leg must not carry there. */
  readonly prefillAbsent: readonly string[];
  /** Object member holding the limits (`sampling_params`); top level when absent. */
  readonly container?: string;
  /** The status the client gets; 200 when absent. */
  readonly status?: number;
  /** Checks the answer the client read. */
  readonly answer: (text: string) => void;
}

function assertSse(text: string): void {
  assert.match(text, /^data: /);
  assert.match(text, /data: \[DONE\]\n\n$/);
}

const ROUTES: readonly RouteCase[] = [
  {
    name: "chat",
    path: "/v1/chat/completions",
    body: {
      model: MODEL,
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 8,
      max_completion_tokens: 9,
      min_tokens: 2,
      stream: true,
      stream_options: { include_usage: true },
    },
    prefill: { max_tokens: 1, max_completion_tokens: 1, min_tokens: 1 },
    prefillAbsent: [],
    answer: assertSse,
  },
  {
    name: "completions",
    path: "/v1/completions",
    body: { model: MODEL, prompt: "Once", max_tokens: 8, min_tokens: 2 },
    prefill: { max_tokens: 1, max_completion_tokens: 1, min_tokens: 1 },
    prefillAbsent: [],
    answer: (text) => assert.equal(JSON.parse(text).object, "text_completion"),
  },
  {
    name: "responses",
    path: "/v1/responses",
    body: { model: MODEL, input: "Hi", max_output_tokens: 20 },
    prefill: { max_output_tokens: 1 },
    prefillAbsent: ["max_tokens", "min_tokens"],
    answer: (text) => assert.equal(JSON.parse(text).object, "response"),
  },
  {
    name: "messages",
    path: "/v1/messages",
    body: {
      model: MODEL,
      max_tokens: 50,
      messages: [{ role: "user", content: "Hi" }],
      stream: true,
    },
    prefill: { max_tokens: 1 },
    prefillAbsent: ["max_completion_tokens", "min_tokens"],
    answer(text) {
      const events = [...text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
      assert.equal(events[0], "message_start");
      assert.ok(events.includes("content_block_delta"), text);
      assert.equal(events.at(-1), "message_stop");
    },
  },
  {
    name: "messages (JSON)",
    path: "/v1/messages",
    body: {
      model: MODEL,
      max_tokens: 5,
      messages: [{ role: "user", content: "Hi" }],
    },
    prefill: { max_tokens: 1 },
    prefillAbsent: ["max_completion_tokens", "min_tokens"],
    answer(text) {
      const message = JSON.parse(text);
      assert.equal(message.type, "message");
      assert.equal(message.usage.output_tokens, 5);
    },
  },
  {
    name: "generate",
    path: "/inference/v1/generate",
    body: {
      model: MODEL,
      token_ids: [1, 2, 3],
      sampling_params: { max_tokens: 7, temperature: 0.5, min_tokens: 2 },
      stream: true,
    },
    container: "sampling_params",
    prefill: { max_tokens: 1, min_tokens: 1, temperature: 0.5 },
    prefillAbsent: [],
    answer: assertSse,
  },
  {
    // vLLM requires sampling_params: the prefill leg carries the object the
    // sidecar created, the decoder gets the client's body and says what is
    // missing, which the client reads.
    name: "generate without sampling_params",
    path: "/inference/v1/generate",
    body: { model: MODEL, token_ids: [4, 5, 6] },
    container: "sampling_params",
    prefill: { max_tokens: 1, min_tokens: 1 },
    prefillAbsent: ["temperature"],
    status: 400,
    answer: (text) =>
      assert.equal(JSON.parse(text).error.param, "body.sampling_params"),
  },
];

/** The object holding the limits of a recorded body. */
function limitsOf(
  request: RecordedRequest,
  container: string | undefined,
): Record<string, unknown> {
  const body = bodyOf(request);
  if (container === undefined) return body;
  const inner = body[container];
  assert.ok(
    typeof inner === "object" && inner !== null,
    `no ${container} object in ${request.bodyText}`,
  );
  return inner as Record<string, unknown>;
}

for (const connector of CONNECTORS) {
  for (const route of ROUTES) {
    const caps = !UNCAPPED.includes(connector);
    Deno.test(
      `${connector} on ${route.name} ${
        caps ? "caps the API's limits on prefill and " : ""
      }sends the client's own body to the decoder`,
      async () => {
        await using h = await createConnectorHarness(connector);
        const response = await within(
          h.pd(route.path, JSON.stringify(route.body)),
          "the sidecar's answer",
        );
        const text = await within(response.text(), "the answer's body");
        assert.equal(response.status, route.status ?? 200, text);
        route.answer(text);
        const prefill = await within(h.prefill.nextRequest(), "the prefill");
        const decode = await within(h.decode.nextRequest(), "the decode");
        assert.equal(prefill.path, route.path);
        assert.equal(decode.path, route.path);
        if (route.status === undefined) {
          assert.equal(decode.kvTransfer?.outcome, "pulled", decode.bodyText);
        }
        const decoded = bodyOf(decode);
        for (const [key, value] of Object.entries(route.body)) {
          assert.deepEqual(decoded[key], value, `decode ${key}`);
        }
        if (route.container !== undefined && !(route.container in route.body)) {
          assert.equal(route.container in decoded, false, decode.bodyText);
        }
        if (!caps) {
          assert.equal(prefill.bodyText, decode.bodyText);
          return;
        }
        const limits = limitsOf(prefill, route.container);
        for (const [key, value] of Object.entries(route.prefill)) {
          assert.deepEqual(limits[key], value, `prefill ${key}`);
        }
        for (const key of route.prefillAbsent) {
          assert.equal(key in limits, false, `prefill has no ${key}`);
        }
        assert.equal(bodyOf(prefill).stream, false);
      },
    );
  }
}
