/**
 * Responses API requests that need the state vLLM keeps per engine run on
 * the local decoder alone, whatever the connector: a follow-up turn naming
 * the decoder's earlier response, and a background request.
 */

import assert from "node:assert/strict";
import type { ConnectorName } from "../../src/config.ts";
import {
  bodyOf,
  createConnectorHarness,
  within,
} from "../connectors/_support.ts";

const CONNECTORS: readonly ConnectorName[] = ["nixlv2", "mooncake"];

const RESPONSES = "/v1/responses";
const MODEL = "Qwen/Qwen3-0.6B";

function turn(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    model: MODEL,
    input: "Hi",
    max_output_tokens: 5,
    ...extra,
  });
}

for (const connector of CONNECTORS) {
  Deno.test(`${connector} runs a Responses follow-up turn on the decoder alone`, async () => {
    await using h = await createConnectorHarness(connector);
    const first = await within(
      h.pd(RESPONSES, turn(), { "x-request-id": "turn-1" }),
      "the first turn's answer",
    );
    const firstBody = await within(first.json(), "the first turn's body");
    assert.equal(first.status, 200, JSON.stringify(firstBody));
    assert.equal(h.prefill.requests.length, 1, "the first turn ran P/D");
    const id: unknown = firstBody.id;
    assert.equal(typeof id, "string");

    const followUp = turn({ previous_response_id: id, input: "And then?" });
    const second = await within(
      h.pd(RESPONSES, followUp, { "x-request-id": "turn-2" }),
      "the second turn's answer",
    );
    const secondText = await within(second.text(), "the second turn's body");
    assert.equal(second.status, 200, secondText);
    assert.equal(JSON.parse(secondText).status, "completed");
    assert.equal(h.prefill.requests.length, 1, "the prefiller got nothing");
    const decode = h.decode.requests.at(-1);
    assert.equal(decode?.bodyText, followUp, "the client's own body");
    assert.equal("kv_transfer_params" in bodyOf(decode), false);

    const access = await h.accessLine("turn-2");
    assert.equal(access.route, "pd");
    assert.equal(access.fallback, "decode");
    assert.equal(access.fallback_cause, "previous_response_id");
    assert.equal(access.prefill_target, undefined);
    await h.nextLog((line) =>
      line.request_id === "turn-2" && line.level === "debug" &&
      String(line.msg).startsWith("skip disaggregated prefill") &&
      line.cause === "previous_response_id"
    );
  });

  Deno.test(`${connector} runs a background Responses request on the decoder alone`, async () => {
    await using h = await createConnectorHarness(connector);
    const body = turn({ background: true });
    const response = await within(
      h.pd(RESPONSES, body, { "x-request-id": "bg-1" }),
      "the answer",
    );
    const text = await within(response.text(), "the answer's body");
    assert.equal(response.status, 200, text);
    assert.equal(JSON.parse(text).status, "queued");
    assert.equal(h.prefill.requests.length, 0, "the prefiller got nothing");
    assert.equal(h.decode.requests.length, 1);
    assert.equal(h.decode.requests[0]?.bodyText, body);
    const access = await h.accessLine("bg-1");
    assert.equal(access.fallback, "decode");
    assert.equal(access.fallback_cause, "background");
  });

  Deno.test(`${connector} still runs P/D for a Responses request whose previous_response_id is null`, async () => {
    await using h = await createConnectorHarness(connector);
    const response = await within(
      h.pd(
        RESPONSES,
        turn({ previous_response_id: null, background: false }),
        { "x-request-id": "plain-1" },
      ),
      "the answer",
    );
    const text = await within(response.text(), "the answer's body");
    assert.equal(response.status, 200, text);
    const prefill = await within(h.prefill.nextRequest(), "the prefill");
    assert.equal(prefill.path, RESPONSES);
    const decode = await within(h.decode.nextRequest(), "the decode");
    assert.equal(decode.kvTransfer?.outcome, "pulled", decode.bodyText);
    const access = await h.accessLine("plain-1");
    assert.equal(access.fallback, undefined);
    assert.equal(typeof access.prefill_target, "string");
  });
}
