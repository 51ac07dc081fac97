import assert from "node:assert/strict";
import type { Config, EcConnectorName } from "../../src/config.ts";
import { MAX_ITEMS_IN_FLIGHT } from "../../src/stages/encoder.ts";
import {
  createEcStore,
  createKvStore,
  createMockVllm,
  type EcStore,
  type MockVllm,
  type RecordedRequest,
} from "../../scripts/mock_vllm/mod.ts";
import { bodyOf, within } from "../connectors/_support.ts";
import {
  createHarness,
  type Harness,
  jsonHeaders,
  postChatOverHttp,
} from "../support/harness.ts";
import {
  startHangingUpstream,
  startStubUpstream,
} from "../support/stub_upstream.ts";

/** How long a request past the in-flight bound is given to show up. */
const PAST_BOUND_WINDOW_MS = 200;

const ENCODERS = "x-encoder-hosts-ports";
const PREFILLER = "x-prefiller-host-port";

const IMAGE_A = { type: "image_url", "image_url": { url: "https://x/a.png" } };
const IMAGE_B = { type: "image_url", "image_url": { url: "https://x/b.png" } };
const VIDEO = { type: "video_url", "video_url": { url: "https://x/c.mp4" } };
const AUDIO = {
  type: "input_audio",
  "input_audio": { data: "UklGRg==", format: "wav" },
};

/** A chat body whose user message holds `parts` after a text part. */
function multimodalBody(
  parts: readonly unknown[],
  extra: Record<string, unknown> = {},
): string {
  return JSON.stringify({
    model: "Qwen/Qwen3-0.6B",
    messages: [{
      role: "user",
      content: [{ type: "text", text: "Describe these" }, ...parts],
    }],
    max_tokens: 8,
    ...extra,
  });
}

interface EpdHarness extends AsyncDisposable {
  readonly h: Harness;
  readonly encoders: readonly MockVllm[];
  /** `x-encoder-hosts-ports` naming every encoder. */
  readonly encoderHeader: string;
}

/** Two encoders, a prefiller and a decoder speaking `ec`, the P/D pair nixlv2, and the sidecar. */
async function createEpdHarness(
  ec: EcConnectorName,
  config: Partial<Config> = {},
): Promise<EpdHarness> {
  const ecStore: EcStore = createEcStore();
  const kvStore = createKvStore();
  const encoders = [
    await createMockVllm({
      name: "encoder-0",
      ecConnector: ec,
      ecRole: "ec_producer",
      ecStore,
    }),
    await createMockVllm({
      name: "encoder-1",
      ecConnector: ec,
      ecRole: "ec_producer",
      ecStore,
    }),
  ];
  const consumer = { ecConnector: ec, ecRole: "ec_consumer", ecStore } as const;
  const h = await createHarness({
    prefill: { ...consumer, kvRole: "kv_producer", kvStore },
    decode: { ...consumer, kvRole: "kv_consumer", kvStore },
    config: { ecConnector: ec, ...config },
  });
  return {
    h,
    encoders,
    encoderHeader: encoders.map((e) => `127.0.0.1:${e.port}`).join(","),
    async [Symbol.asyncDispose]() {
      await h[Symbol.asyncDispose]();
      await Promise.all(encoders.map((encoder) => encoder.close()));
    },
  };
}

function messagesOf(request: RecordedRequest | undefined): unknown {
  return bodyOf(request).messages;
}

Deno.test(
  "ec-nixl sends each multimodal item to an encoder and hands the merged ec_transfer_params to prefill and decode",
  async () => {
    await using epd = await createEpdHarness("ec-nixl");
    const { h, encoders } = epd;
    const response = await within(
      h.pd(
        "/v1/chat/completions",
        multimodalBody([IMAGE_A, IMAGE_B, VIDEO, AUDIO], {
          max_completion_tokens: 8,
          stream: true,
          stream_options: { include_usage: true },
        }),
        {
          [ENCODERS]: epd.encoderHeader,
          authorization: "Bearer secret",
          "x-request-id": "req-7",
        },
      ),
      "the answer",
    );
    assert.equal(response.status, 200);
    await response.text();
    const sent = encoders.flatMap((encoder) => encoder.requests);
    assert.equal(sent.length, 4, "one encoder request per item");
    // Round robin: items 0 and 2 to the first encoder, 1 and 3 to the second.
    assert.deepEqual(
      encoders.map((encoder) =>
        encoder.requests.map((r) => r.headers.get("x-request-id")).sort()
      ),
      [["req-7-enc-0", "req-7-enc-2"], ["req-7-enc-1", "req-7-enc-3"]],
    );
    const byId = (id: string) =>
      sent.find((r) => r.headers.get("x-request-id") === id);
    for (const [index, item] of [IMAGE_A, IMAGE_B, VIDEO, AUDIO].entries()) {
      const request = byId(`req-7-enc-${index}`);
      assert.deepEqual(messagesOf(request), [{
        role: "user",
        content: [item],
      }]);
      const body = bodyOf(request);
      assert.equal(body.max_tokens, 1);
      assert.equal(body.max_completion_tokens, 1);
      assert.equal(body.stream, false);
      assert.equal("stream_options" in body, false);
      assert.equal(request?.path, "/v1/chat/completions");
      assert.equal(request?.headers.get("authorization"), "Bearer secret");
      assert.equal(request?.headers.has(ENCODERS), false);
      assert.equal(request?.ecTransfer?.loaded.length, 1);
    }
    const merged: Record<string, unknown> = {};
    for (const request of sent) {
      const answer = request.ecTransfer?.items[0] as string;
      merged[answer] = {
        engine_id: encoders.find((e) => e.requests.includes(request))
          ?.engineId,
        mm_hash: answer,
        peer_host: "127.0.0.1",
        peer_port: encoders.find((e) => e.requests.includes(request))
          ?.sideChannelPort,
      };
    }
    for (const leg of [h.prefill.requests[0], h.decode.requests[0]]) {
      assert.equal(leg?.status, 200);
      assert.deepEqual(bodyOf(leg).ec_transfer_params, merged);
      assert.equal(bodyOf(leg).cache_hit_threshold, 0);
      assert.deepEqual(leg?.ecTransfer?.missing, []);
      assert.equal(leg?.ecTransfer?.loaded.length, 4);
      assert.equal(leg?.headers.has(ENCODERS), false);
      assert.equal(leg?.headers.get("x-request-id"), "req-7");
    }
    assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
  },
);

Deno.test(
  "ec-example without a prefill header encodes, then decodes from the shared encoder cache",
  async () => {
    await using epd = await createEpdHarness("ec-example");
    const { h, encoders } = epd;
    const response = await h.request("/v1/chat/completions", {
      method: "POST",
      headers: jsonHeaders({ [ENCODERS]: epd.encoderHeader }),
      // The same image twice is one encoder request.
      body: multimodalBody([IMAGE_A, IMAGE_A]),
    });
    assert.equal(response.status, 200);
    await response.text();
    // The decode without prefill is timed as every P/D decode leg is.
    assert.match(
      response.headers.get("server-timing") ?? "",
      /^decode_ttfb;dur=[\d.]+$/,
    );
    assert.equal(encoders[0]?.requests.length, 1);
    assert.equal(encoders[1]?.requests.length, 0);
    assert.equal(h.prefill.requests.length, 0);
    const [decode] = h.decode.requests;
    assert.equal(decode?.status, 200);
    assert.deepEqual(decode?.ecTransfer?.missing, []);
    assert.equal("ec_transfer_params" in bodyOf(decode), false);
  },
);

Deno.test("the mock's encoder-cache consumer refuses items no encoder produced", async () => {
  // The check the tests above rely on: a sidecar that skips the encoders fails.
  await using decoder = await createMockVllm({
    ecConnector: "ec-nixl",
    ecRole: "ec_consumer",
  });
  const response = await fetch(`${decoder.url}/v1/chat/completions`, {
    method: "POST",
    headers: jsonHeaders(),
    body: multimodalBody([IMAGE_A]),
  });
  assert.equal(response.status, 500);
  assert.match(await response.text(), /Encoder cache miss/);
});

Deno.test(
  "a failing encoder cancels the other encoder requests and the client gets a 502",
  async () => {
    await using epd = await createEpdHarness("ec-nixl");
    await using hanging = startHangingUpstream();
    await using failing = startStubUpstream(() =>
      new Response('{"error":"boom"}', { status: 500 })
    );
    const answer = epd.h.pd(
      "/v1/chat/completions",
      multimodalBody([IMAGE_A, IMAGE_B]),
      { [ENCODERS]: `${hanging.hostPort},${failing.hostPort}` },
    );
    await within(hanging.requestSeen, "the hanging encoder's request");
    const response = await within(answer, "the answer");
    assert.equal(response.status, 502);
    const body = await response.json();
    assert.match(body.error.message, /Encoder "127\.0\.0\.1:\d+" answered 500/);
    await within(hanging.allClosed(), "the hanging encoder request's cancel");
    assert.equal(epd.h.prefill.requests.length, 0);
    assert.equal(epd.h.decode.requests.length, 0);
  },
);

Deno.test(
  "an encoder's 503 is answered 502 naming the encoder, unlike a prefiller's gateway status",
  async () => {
    await using epd = await createEpdHarness("ec-example");
    await using failing = startStubUpstream(() =>
      new Response("overloaded", { status: 503 })
    );
    const response = await epd.h.pd(
      "/v1/chat/completions",
      multimodalBody([IMAGE_A]),
      { [ENCODERS]: failing.hostPort },
    );
    assert.equal(response.status, 502);
    assert.equal(response.headers.get("x-pd-error-code"), "encoder_failed");
    const body = await response.json();
    assert.match(
      body.error.message,
      /^Encoder "127\.0\.0\.1:\d+" answered 503 for item 0: overloaded$/,
    );
    assert.equal(epd.h.prefill.requests.length, 0);
    assert.equal(epd.h.decode.requests.length, 0);
  },
);

Deno.test("a client that leaves cancels the encoder requests", async () => {
  await using epd = await createEpdHarness("ec-nixl");
  await using hanging = startHangingUpstream();
  const client = new AbortController();
  const answer = epd.h.request("/v1/chat/completions", {
    method: "POST",
    headers: jsonHeaders({ [ENCODERS]: hanging.hostPort }),
    body: multimodalBody([IMAGE_A, IMAGE_B]),
    signal: client.signal,
  }).catch((error) => error);
  await within(hanging.requestSeen, "the encoder requests");
  client.abort();
  await within(hanging.allClosed(), "the encoder requests' cancel");
  await within(answer, "the abandoned answer");
  assert.equal(epd.h.decode.requests.length, 0);
});

Deno.test(
  "without -ec-connector the encoder header is dropped and no encoder is called",
  async () => {
    await using encoder = await createMockVllm({ name: "encoder" });
    await using h = await createHarness();
    const response = await h.request("/v1/chat/completions", {
      method: "POST",
      headers: jsonHeaders({ [ENCODERS]: `127.0.0.1:${encoder.port}` }),
      body: multimodalBody([IMAGE_A]),
    });
    assert.equal(response.status, 200);
    await response.text();
    assert.equal(encoder.requests.length, 0);
    assert.equal(h.decode.requests[0]?.headers.has(ENCODERS), false);
  },
);

Deno.test(
  "a text-only request skips the encoders but still goes through the encoder route",
  async () => {
    await using epd = await createEpdHarness("ec-nixl");
    const response = await epd.h.pd(
      "/v1/chat/completions",
      multimodalBody([]),
      { [ENCODERS]: epd.encoderHeader },
    );
    assert.equal(response.status, 200);
    await response.text();
    assert.equal(epd.encoders[0]?.requests.length, 0);
    assert.equal(bodyOf(epd.h.decode.requests[0]).cache_hit_threshold, 0);
    assert.equal(epd.h.prefill.requests[0]?.headers.has(PREFILLER), false);
  },
);

Deno.test("a malformed encoder target is the client's 400", async () => {
  await using h = await createHarness({ config: { ecConnector: "ec-nixl" } });
  const response = await h.request("/v1/chat/completions", {
    method: "POST",
    headers: jsonHeaders({ [ENCODERS]: "https://10.0.0.1:8000" }),
    body: multimodalBody([IMAGE_A]),
  });
  assert.equal(response.status, 400);
  assert.match(
    (await response.json()).error.message,
    /Invalid encoder target "https:\/\/10\.0\.0\.1:8000" in header "x-encoder-hosts-ports"/,
  );
  assert.equal(h.decode.requests.length, 0);
});

Deno.test("a body with many multimodal items keeps at most MAX_ITEMS_IN_FLIGHT encoder requests open at once", async () => {
  await using epd = await createEpdHarness("ec-nixl");
  await using hanging = startHangingUpstream();
  const client = new AbortController();
  const items = Array.from({ length: 3 * MAX_ITEMS_IN_FLIGHT }, (_, i) => ({
    type: "image_url",
    "image_url": { url: `https://x/${i}.png` },
  }));
  const answer = epd.h.request("/v1/chat/completions", {
    method: "POST",
    headers: jsonHeaders({ [ENCODERS]: hanging.hostPort }),
    body: multimodalBody(items),
    signal: client.signal,
  }).catch((error) => error);
  await hanging.accepted(MAX_ITEMS_IN_FLIGHT);
  // None answered: a request past the bound would open a connection within
  // this window (a deliberate negative wait; there is no event to wait on).
  await new Promise((resolve) => setTimeout(resolve, PAST_BOUND_WINDOW_MS));
  assert.equal(hanging.connections(), MAX_ITEMS_IN_FLIGHT);
  client.abort();
  await within(hanging.allClosed(), "the encoder requests' cancel");
  await within(answer, "the abandoned answer");
  assert.equal(epd.h.decode.requests.length, 0);
});

Deno.test(
  "-encoder-timeout answers 504 encoder_timeout and aborts encoders that accepted and never answer",
  async () => {
    await using epd = await createEpdHarness("ec-nixl", {
      encoderTimeout: 300,
    });
    const { h } = epd;
    await using hanging = startHangingUpstream();
    const response = await postChatOverHttp(
      h.listen(),
      multimodalBody([IMAGE_A, IMAGE_B]),
      jsonHeaders({
        [ENCODERS]: hanging.hostPort,
        [PREFILLER]: h.prefillerHeader,
      }),
    );
    assert.equal(response.status, 504);
    assert.equal(response.headers.get("x-pd-error-code"), "encoder_timeout");
    const error = (await response.json()).error;
    assert.equal(error.type, "GatewayTimeout");
    assert.match(
      error.message,
      /^Encoder stage \(2 items\) did not finish within 300 ms \(-encoder-timeout\)$/,
    );
    await hanging.accepted(2);
    assert.equal(hanging.connections(), 2);
    await within(hanging.allClosed(), "the encoder requests' abort");
    assert.equal(h.prefill.requests.length + h.decode.requests.length, 0);
    const line = await h.accessLine();
    assert.equal(line.error_code, "encoder_timeout");
  },
);

Deno.test(
  "-encoder-timeout leaves encoders that answer in time to the prefill and decode",
  async () => {
    await using epd = await createEpdHarness("ec-nixl", {
      encoderTimeout: 2000,
    });
    const { h, encoders } = epd;
    const response = await postChatOverHttp(
      h.listen(),
      multimodalBody([IMAGE_A, IMAGE_B]),
      jsonHeaders({
        [ENCODERS]: epd.encoderHeader,
        [PREFILLER]: h.prefillerHeader,
        // Every mock, the encoders included, waits this long before answering.
        "x-mock-ttft-ms": "300",
      }),
    );
    assert.equal(response.status, 200);
    assert.equal((await response.json()).object, "chat.completion");
    assert.equal(
      encoders.reduce((sum, encoder) => sum + encoder.requests.length, 0),
      2,
    );
    assert.equal(h.prefill.requests.length, 1);
    assert.equal(h.decode.requests.length, 1);
  },
);

/** `count` image parts with distinct URLs, each padded to `urlLength` characters. */
function distinctImages(count: number, urlLength = 16): unknown[] {
  return Array.from({ length: count }, (_, i) => ({
    type: "image_url",
    "image_url": { url: `https://x/${i}`.padEnd(urlLength, "a") },
  }));
}

Deno.test("a body whose items would each carry a large member besides messages is a 413 encoder_fan_out_too_large before any encoder is asked", async () => {
  await using epd = await createEpdHarness("ec-nixl");
  // 1 MiB beside 70 items: 70 encoder requests of over 1 MiB each pass
  // both 4 times the body and the 64 Mi floor.
  const body = multimodalBody(distinctImages(70), {
    pad: "x".repeat(1024 * 1024),
  });
  const response = await epd.h.pd("/v1/chat/completions", body, {
    [ENCODERS]: epd.encoderHeader,
  });
  assert.equal(response.status, 413);
  assert.equal(
    response.headers.get("x-pd-error-code"),
    "encoder_fan_out_too_large",
  );
  assert.match(
    (await response.json()).error.message,
    /^Request fans out too much: its 70 multimodal items would send \d+ characters to the encoders, more than 67108864 /,
  );
  assert.equal(epd.encoders[0]?.requests.length, 0);
  assert.equal(epd.encoders[1]?.requests.length, 0);
  assert.equal(epd.h.prefill.requests.length, 0);
  assert.equal(epd.h.decode.requests.length, 0);
});

Deno.test("items that are most of their body pass the fan-out bound's 64 Mi minimum, however many there are", async () => {
  await using epd = await createEpdHarness("ec-nixl");
  // 16 inline images of 256 KiB: the encoder requests carry about the body once.
  const body = multimodalBody(distinctImages(16, 256 * 1024));
  const response = await epd.h.pd("/v1/chat/completions", body, {
    [ENCODERS]: epd.encoderHeader,
  });
  assert.equal(response.status, 200);
  await response.text();
  const sent = (epd.encoders[0]?.requests.length ?? 0) +
    (epd.encoders[1]?.requests.length ?? 0);
  assert.equal(sent, 16);
});
