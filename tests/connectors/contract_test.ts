/**
 * The invariants every connector shares, run over every connector: one
 * request id on every leg, token limits on prefill and the client's own on
 * decode, the decode streamed as produced, a client's abort reaching every
 * leg in flight, and the same error mapping.
 */

import assert from "node:assert/strict";
import type { ConnectorName } from "../../src/config.ts";
import { DECODER_NOT_READY_MESSAGE } from "../../src/upstream/relay.ts";
import type { RecordedRequest } from "../../scripts/mock_vllm/mod.ts";
import { chatBody, type Harness, jsonHeaders } from "../support/harness.ts";
import {
  closedPort,
  type HangingUpstream,
  startHangingUpstream,
} from "../support/stub_upstream.ts";
import {
  bodyOf,
  createConnectorHarness,
  isPending,
  within,
} from "./_support.ts";

interface ConnectorCase {
  readonly name: ConnectorName;
  /** Both legs sent at once (the decoder waits for the KV), else prefill then decode. */
  readonly concurrent: boolean;
  /**
   * Whether the prefill leg carries token limits of 1. SGLang's prefill and
   * decode get the same body: its prefill server computes the prompt and one
   * token whatever the limits say (vllm-wire.md §3.8).
   */
  readonly capsPrefill: boolean;
}

const CASES: readonly ConnectorCase[] = [
  { name: "nixlv2", concurrent: false, capsPrefill: true },
  { name: "nixl", concurrent: false, capsPrefill: true },
  { name: "lmcache", concurrent: false, capsPrefill: true },
  { name: "shared-storage", concurrent: false, capsPrefill: true },
  { name: "sglang", concurrent: true, capsPrefill: false },
  { name: "mooncake", concurrent: true, capsPrefill: true },
  { name: "offloading", concurrent: true, capsPrefill: true },
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The one prefill and the one decode a P/D request sent. */
async function legsOf(h: Harness): Promise<{
  prefill: RecordedRequest;
  decode: RecordedRequest;
}> {
  const prefill = await within(h.prefill.nextRequest(), "the prefill leg");
  const decode = await within(h.decode.nextRequest(), "the decode leg");
  assert.equal(h.prefill.requests.length, 1, "one prefill leg");
  assert.equal(h.decode.requests.length, 1, "one decode leg");
  return { prefill, decode };
}

/** Sends a P/D request in process; fails the test when no answer came in time. */
function send(
  h: Harness,
  path: string,
  body: string,
  headers?: Record<string, string>,
): Promise<Response> {
  return within(h.pd(path, body, headers), "the sidecar's answer");
}

/** Resolves once the sidecar logged the end of a request. */
async function requestHandled(h: Harness): Promise<void> {
  await h.accessLine(undefined, 5000);
}

for (const c of CASES) {
  Deno.test(`${c.name} sends one request id, minted, on every leg`, async () => {
    await using h = await createConnectorHarness(c.name);
    const response = await send(h, "/v1/chat/completions", chatBody());
    assert.equal(response.status, 200);
    const answer = await response.json();
    const { prefill, decode } = await legsOf(h);
    const id = prefill.headers.get("x-request-id") ?? "";
    assert.match(id, UUID);
    assert.equal(decode.headers.get("x-request-id"), id);
    assert.equal(answer.id, `chatcmpl-${id}`);
  });

  Deno.test(
    `${c.name} hands the prefill's KV to the decode, as the engines' protocol checks see it`,
    async () => {
      // A prefill that takes a while: a sequential connector's decode sent
      // before the prefill answered finds no KV in a shared store yet.
      await using h = await createConnectorHarness(c.name, {
        prefill: { ttftMs: 50 },
      });
      for (const stream of [false, true]) {
        const response = await send(
          h,
          "/v1/chat/completions",
          chatBody({
            stream,
            messages: [{ role: "user", content: `${stream}` }],
          }),
        );
        assert.equal(response.status, 200);
        await within(response.text(), "the answer");
      }
      for (const decode of h.decode.requests) {
        assert.equal(decode.kvTransfer?.outcome, "pulled", decode.bodyText);
      }
      assert.equal(h.decode.requests.length, 2);
    },
  );

  Deno.test(`${c.name} sends the client's request id, once, on every leg`, async () => {
    await using h = await createConnectorHarness(c.name);
    const response = await send(h, "/v1/chat/completions", chatBody(), {
      "x-request-id": "client-id-1",
    });
    await response.body?.cancel();
    const { prefill, decode } = await legsOf(h);
    assert.equal(prefill.headers.get("x-request-id"), "client-id-1");
    assert.equal(decode.headers.get("x-request-id"), "client-id-1");
  });

  Deno.test(
    `${c.name} ${
      c.capsPrefill ? "caps token limits on prefill and" : ""
    } keeps the client's on decode`,
    async () => {
      await using h = await createConnectorHarness(c.name);
      const response = await send(
        h,
        "/v1/chat/completions",
        chatBody({
          "max_tokens": 8,
          "max_completion_tokens": 9,
          "min_tokens": 2,
          stream: true,
          stream_options: { include_usage: true },
        }),
      );
      assert.equal(response.status, 200);
      await response.text();
      const { prefill, decode } = await legsOf(h);
      const sent = bodyOf(prefill);
      if (c.capsPrefill) {
        assert.equal(sent.max_tokens, 1);
        assert.equal(sent.max_completion_tokens, 1);
        assert.equal(sent.min_tokens, 1);
      } else {
        assert.equal(prefill.bodyText, decode.bodyText);
      }
      const decoded = bodyOf(decode);
      assert.equal(decoded.max_tokens, 8);
      assert.equal(decoded.max_completion_tokens, 9);
      assert.equal(decoded.min_tokens, 2);
      assert.equal(decoded.stream, true);
      assert.deepEqual(decoded.stream_options, { include_usage: true });
    },
  );

  if (c.capsPrefill) {
    Deno.test(`${c.name} caps max_output_tokens on the Responses API`, async () => {
      await using h = await createConnectorHarness(c.name);
      const response = await send(
        h,
        "/v1/responses",
        JSON.stringify({
          model: "Qwen/Qwen3-0.6B",
          input: "Hi",
          max_output_tokens: 20,
        }),
      );
      assert.equal(response.status, 200);
      assert.equal((await response.json()).object, "response");
      const { prefill, decode } = await legsOf(h);
      assert.equal(bodyOf(prefill).max_output_tokens, 1);
      assert.equal("max_tokens" in bodyOf(prefill), false);
      assert.equal(bodyOf(decode).max_output_tokens, 20);
    });
  }

  Deno.test(`${c.name} streams the decode answer chunk by chunk`, async () => {
    await using h = await createConnectorHarness(c.name, {
      decode: { interTokenMs: 40 },
    });
    const response = await send(
      h,
      "/v1/chat/completions",
      chatBody({ stream: true, max_tokens: 5 }),
    );
    assert.equal(response.status, 200);
    const reader = response.body!.getReader();
    const decode = await within(h.decode.nextRequest(), "the decode leg");
    const first = await within(reader.read(), "the first chunk");
    assert.equal(first.done, false);
    assert.ok(
      await isPending(decode.finished),
      "the first chunk reached the client while the decoder was generating",
    );
    let text = new TextDecoder().decode(first.value);
    for (;;) {
      const { value, done } = await within(reader.read(), "the next chunk");
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    assert.match(text, /data: \[DONE\]\n\n$/);
    assert.equal(await within(decode.finished, "the decode"), "completed");
  });

  Deno.test(
    `${c.name} closes every leg in flight when the client leaves before the answer`,
    async () => {
      await using prefiller = startHangingUpstream();
      await using decoder = startHangingUpstream();
      await using h = await createConnectorHarness(c.name, {
        config: c.concurrent ? { modelServerPort: decoder.port } : {},
      });
      const controller = new AbortController();
      // Disposed first: a wait that fails must not leave the request
      // holding the harness open (legs run one after the other hang here).
      using _leave = { [Symbol.dispose]: () => controller.abort() };
      const pending = fetch(`${h.listen()}/v1/chat/completions`, {
        method: "POST",
        headers: jsonHeaders({ "x-prefiller-host-port": prefiller.hostPort }),
        body: chatBody(),
        signal: controller.signal,
      });
      pending.catch(() => {});
      await within(prefiller.requestSeen, "the prefill leg");
      if (c.concurrent) await within(decoder.requestSeen, "the decode leg");
      controller.abort();
      await assert.rejects(pending);
      await within(prefiller.allClosed(), "the prefill leg to close");
      if (c.concurrent) {
        await within(decoder.allClosed(), "the decode leg to close");
      } else {
        await requestHandled(h);
        assert.equal(h.decode.requests.length, 0, "no decode for nobody");
      }
    },
  );

  Deno.test(
    `${c.name} aborts the decode when the client leaves mid-stream`,
    async () => {
      await using h = await createConnectorHarness(c.name, {
        decode: { interTokenMs: 60_000 },
      });
      const controller = new AbortController();
      // A decode that is not streamed would send nothing for a minute.
      const response = await within(
        fetch(`${h.listen()}/v1/chat/completions`, {
          method: "POST",
          headers: jsonHeaders({ "x-prefiller-host-port": h.prefillerHeader }),
          body: chatBody({ stream: true }),
          signal: controller.signal,
        }),
        "the answer's head",
      ).catch((error) => {
        controller.abort();
        throw error;
      });
      const reader = response.body!.getReader();
      await within(reader.read(), "the first chunk");
      controller.abort();
      await reader.cancel().catch(() => {});
      const { prefill, decode } = await legsOf(h);
      assert.equal(await within(decode.finished, "the decode"), "aborted");
      assert.notEqual(
        await within(prefill.finished, "the prefill"),
        "failed",
      );
    },
  );

  Deno.test(
    `${c.name} relays a prefill 4xx with its status and body${
      c.concurrent ? " and aborts the decode" : ", sending no decode"
    }`,
    async () => {
      await using decoder = startHangingUpstream();
      await using h = await createConnectorHarness(c.name, {
        prefill: { failureRate: 1, failureStatus: 429 },
        config: { modelServerPort: decoder.port },
      });
      const response = await send(h, "/v1/chat/completions", chatBody());
      assert.equal(response.status, 429);
      assert.equal((await response.json()).error.type, "RateLimitError");
      await expectNoDecodeAnswer(h, c, decoder);
    },
  );

  Deno.test(
    `${c.name} answers a prefill 5xx with its status and a message naming the prefiller`,
    async () => {
      await using decoder = startHangingUpstream();
      await using h = await createConnectorHarness(c.name, {
        prefill: { failureRate: 1, failureStatus: 503 },
        config: { modelServerPort: decoder.port },
      });
      const response = await send(h, "/v1/chat/completions", chatBody());
      assert.equal(response.status, 503);
      const error = (await response.json()).error;
      assert.equal(error.code, 503);
      assert.match(
        error.message,
        new RegExp(`^Prefill server "${h.prefillerHeader}" answered 503: `),
      );
      await expectNoDecodeAnswer(h, c, decoder);
    },
  );

  Deno.test(
    `${c.name} answers 502 naming a prefiller it cannot reach`,
    async () => {
      await using decoder = startHangingUpstream();
      await using h = await createConnectorHarness(c.name, {
        config: { modelServerPort: decoder.port },
      });
      const target = `127.0.0.1:${closedPort()}`;
      const response = await send(h, "/v1/chat/completions", chatBody(), {
        "x-prefiller-host-port": target,
      });
      assert.equal(response.status, 502);
      assert.equal(
        (await response.json()).error.message,
        `Cannot reach prefill server "${target}": connection refused`,
      );
      await expectNoDecodeAnswer(h, c, decoder);
    },
  );

  Deno.test(
    `${c.name} answers 503 when the decoder is not listening`,
    async () => {
      await using h = await createConnectorHarness(c.name, {
        config: { modelServerPort: closedPort() },
      });
      const response = await send(h, "/v1/chat/completions", chatBody());
      assert.equal(response.status, 503);
      assert.equal(
        (await response.json()).error.message,
        DECODER_NOT_READY_MESSAGE,
      );
    },
  );

  Deno.test(`${c.name} relays a decoder error as is`, async () => {
    await using h = await createConnectorHarness(c.name, {
      decode: { failureRate: 1, failureStatus: 500 },
    });
    const response = await send(h, "/v1/chat/completions", chatBody());
    assert.equal(response.status, 500);
    assert.equal((await response.json()).error.type, "InternalServerError");
  });
}

/**
 * After a failed prefill: no decode was sent (sequential), or every decode
 * sent was closed without an answer (concurrent).
 */
async function expectNoDecodeAnswer(
  h: Harness,
  c: ConnectorCase,
  decoder: HangingUpstream,
): Promise<void> {
  await requestHandled(h);
  if (!c.concurrent) {
    assert.equal(decoder.connections(), 0, "no decode after a failed prefill");
    return;
  }
  await within(decoder.allClosed(), "the decode leg to close");
}
