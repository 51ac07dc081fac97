/**
 * The prefiller is named by the client's header, so its answer is as hostile
 * as the client: any status, any body, `kv_transfer_params` and `usage` of
 * any JSON type, odd headers. Whatever it answers, the sidecar answers
 * with a status it means (never a 500, its own bug) and its own errors in
 * the shape of the API asked.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import type { ConnectorName } from "../../src/config.ts";
import { within } from "../support/deadline.ts";
import { createHarness } from "../support/harness.ts";
import { startStubUpstream } from "../support/stub_upstream.ts";

/** Fixed, so a failure replays; fast-check prints it with the counterexample. */
const SEED = 20_261_206;
const RUNS = 120;

/** Statuses a Response cannot carry a body with, or at all from a handler. */
const NO_BODY_STATUSES = new Set([204, 205, 304]);

/** What the stub prefiller answers next. */
interface PrefillAnswer {
  readonly status: number;
  readonly body: string;
  readonly headers: readonly (readonly [string, string])[];
}

const anyJson = fc.oneof(fc.anything(), fc.jsonValue());

const answerBody = fc.oneof(
  fc.record({
    kv_transfer_params: anyJson,
    usage: fc.oneof(
      anyJson,
      fc.record({
        prompt_tokens_details: fc.oneof(
          anyJson,
          fc.record({ cached_tokens: fc.oneof(fc.double(), anyJson) }),
        ),
      }),
    ),
    remote_block_ids: anyJson,
    remote_engine_id: anyJson,
    remote_host: anyJson,
    remote_port: anyJson,
  }, { requiredKeys: [] }).map((object) => JSON.stringify(object)),
  fc.json(),
  fc.string(),
  fc.constant(
    '{"kv_transfer_params":{"remote_host":"a"},"kv_transfer_params":5}',
  ),
);

const answer: fc.Arbitrary<PrefillAnswer> = fc.record({
  status: fc.oneof(
    { weight: 3, arbitrary: fc.constant(200) },
    fc.integer({ min: 200, max: 599 }).filter((status) =>
      !NO_BODY_STATUSES.has(status)
    ),
  ),
  body: answerBody,
  headers: fc.array(
    fc.tuple(
      fc.constantFrom("content-type", "content-encoding", "set-cookie", "x-a"),
      fc.constantFrom("application/json", "gzip", "text/html", "a=b", ""),
    ),
    { maxLength: 3 },
  ),
});

const clientBody = fc.record({
  model: fc.constant("Qwen/Qwen3-0.6B"),
  messages: fc.constant([{ role: "user", content: "Hi" }]),
  prompt: fc.constant("Hi"),
  input: fc.constant("Hi"),
  max_tokens: fc.constant(4),
  stream: fc.oneof(fc.boolean(), anyJson),
  stream_options: fc.oneof(
    anyJson,
    fc.record({ include_usage: anyJson, continuous_usage_stats: anyJson }),
  ),
}, { requiredKeys: ["model", "max_tokens"] }).map((body) =>
  JSON.stringify(body)
);

const PATHS = [
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/responses",
  "/v1/messages",
] as const;

/** Whether `text` is the sidecar's own error body in the shape `path`'s clients read. */
function isOwnErrorShape(text: string, path: string): boolean {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return false;
  }
  if (typeof body !== "object" || body === null) return false;
  const error = (body as { error?: unknown }).error;
  if (typeof error !== "object" || error === null) return false;
  const fields = error as Record<string, unknown>;
  if (path === "/v1/messages") {
    return (body as { type?: unknown }).type === "error" &&
      typeof fields.type === "string" && typeof fields.message === "string";
  }
  return typeof fields.message === "string" &&
    typeof fields.type === "string" && "param" in fields &&
    typeof fields.code === "number";
}

for (const connector of ["nixlv2", "nixl", "shared-storage"] as const) {
  Deno.test(`${connector}: whatever the prefiller answers, the client gets a meant status and the sidecar's errors in its API's shape`, async () => {
    let next: PrefillAnswer = { status: 200, body: "{}", headers: [] };
    await using prefiller = startStubUpstream(() =>
      new Response(next.body, {
        status: next.status,
        headers: next.headers.map(([name, value]) => [name, value]),
      })
    );
    await using h = await createHarness({
      config: { verbosity: -1, connector: connector as ConnectorName },
    });
    await fc.assert(
      fc.asyncProperty(
        answer,
        clientBody,
        fc.constantFrom(...PATHS),
        async (prefill, body, path) => {
          next = prefill;
          const response = await within(
            h.pd(path, body, { "x-prefiller-host-port": prefiller.hostPort }),
            10_000,
            "the sidecar's answer",
          );
          const text = await within(response.text(), 10_000, "its body");
          assert.notEqual(response.status, 500, text);
          const code = response.headers.get("x-pd-error-code");
          // A prefiller's 4xx is relayed as it came (`prefill_rejected`).
          if (code !== null && code !== "prefill_rejected") {
            assert.ok(isOwnErrorShape(text, path), `${code}: ${text}`);
          }
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
  });
}
