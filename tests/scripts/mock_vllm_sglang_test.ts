import assert from "node:assert/strict";
import { createMockVllm, type MockVllm } from "../../scripts/mock_vllm/mod.ts";
import {
  CHAT,
  chatBody,
  postForJson,
  postJson,
  sseData,
  sseJson,
} from "./_mock_vllm_helpers.ts";
import { withDeadline } from "../support/deadline.ts";

/** Short enough that a leg left alone fails fast, long enough for loopback legs to meet. */
const WAIT_MS = 2_000;

async function sglangPair(waitMs = WAIT_MS): Promise<[MockVllm, MockVllm]> {
  return await Promise.all([
    createMockVllm({
      name: "prefiller",
      kvConnector: "sglang",
      kvRole: "kv_producer",
      kvWaitTimeoutMs: waitMs,
    }),
    createMockVllm({
      name: "decoder",
      kvConnector: "sglang",
      kvRole: "kv_consumer",
      kvWaitTimeoutMs: waitMs,
      promptTokensDetails: true,
    }),
  ]);
}

/** The body both legs get: the client's plus the three bootstrap fields naming `prefill`. */
function legBody(
  prefill: MockVllm,
  room: number,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return chatBody({
    max_tokens: 32,
    ...extra,
    bootstrap_host: "127.0.0.1",
    bootstrap_port: prefill.sideChannelPort,
    bootstrap_room: room,
  });
}

Deno.test("mock vllm sglang prefill and decode meet on bootstrap_room; the decode answers", async () => {
  const [prefill, decode] = await sglangPair();
  await using _p = prefill;
  await using _d = decode;
  const body = legBody(prefill, 42);
  const [p, d] = await withDeadline(
    Promise.all([
      postForJson(prefill, CHAT, body),
      postForJson(decode, CHAT, body),
    ]),
    10_000,
    "both SGLang legs",
  );
  assert.equal(p.status, 200);
  assert.equal(d.status, 200);
  assert.equal((d.body.usage as Record<string, unknown>).completion_tokens, 12);
  assert.deepEqual(
    (d.body.usage as Record<string, unknown>).prompt_tokens_details,
    { cached_tokens: 9 },
  );
  assert.equal(prefill.requests[0]?.role, "prefill");
  assert.equal(decode.requests[0]?.role, "decode");
  assert.deepEqual(prefill.requests[0]?.kvHandOff, {
    connector: "sglang",
    key: "42",
    numTokens: 9,
  });
  assert.deepEqual(decode.requests[0]?.kvTransfer, {
    connector: "sglang",
    remoteRequestId: "42",
    remoteHost: "127.0.0.1",
    remotePort: prefill.sideChannelPort,
    outcome: "pulled",
    numTokens: 9,
  });
  assert.deepEqual(prefill.kvPulls, [{
    path: "/_mock/sglang/bootstrap",
    remoteRequestId: "42",
    status: 200,
  }]);
});

Deno.test("mock vllm sglang decode that arrives first waits for its prefill and streams", async () => {
  const [prefill, decode] = await sglangPair();
  await using _p = prefill;
  await using _d = decode;
  const body = legBody(prefill, 7, { stream: true });
  const decoded = postJson(decode, CHAT, body);
  await withDeadline(decode.nextRequest(), 5_000, "the decode leg");
  const prefilled = await postJson(prefill, CHAT, body);
  await prefilled.body?.cancel();
  const response = await withDeadline(decoded, 10_000, "the decode answer");
  assert.equal(response.status, 200);
  const chunks = sseJson(await response.text());
  assert.equal(
    (chunks[0]?.choices as Record<string, unknown>[])[0]?.delta !== undefined,
    true,
  );
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "pulled");
});

Deno.test("mock vllm sglang decode whose room never gets a prefill fails after the wait timeout", async () => {
  const [prefill, decode] = await sglangPair(100);
  await using _p = prefill;
  await using _d = decode;
  const started = performance.now();
  const { status, body } = await withDeadline(
    postForJson(decode, CHAT, legBody(prefill, 9)),
    5_000,
    "the lonely decode",
  );
  assert.ok(performance.now() - started >= 100);
  assert.equal(status, 500);
  assert.deepEqual(body, {
    error: {
      message:
        "KV transfer failed for bootstrap_room 9: no prefill for bootstrap_room 9 within 100 ms",
      type: "InternalServerError",
      param: null,
      code: 500,
    },
  });
  assert.equal(decode.requests[0]?.kvTransfer?.outcome, "failed");
  assert.equal(prefill.kvPulls[0]?.status, 404);
});

Deno.test("mock vllm sglang streaming decode without a prefill ends in an error frame", async () => {
  const [prefill, decode] = await sglangPair(50);
  await using _p = prefill;
  await using _d = decode;
  const response = await postJson(
    decode,
    CHAT,
    legBody(prefill, 10, { stream: true }),
  );
  assert.equal(response.status, 200);
  const frames = sseData(await response.text());
  assert.equal(frames.length, 2);
  assert.match(frames[0] ?? "", /"code":500/);
  assert.equal(frames[1], "[DONE]");
});

Deno.test("mock vllm sglang prefill without bootstrap fields is rejected", async () => {
  const [prefill, decode] = await sglangPair();
  await using _p = prefill;
  await using _d = decode;
  const { status, body } = await postForJson(
    prefill,
    CHAT,
    chatBody({ max_tokens: 32 }),
  );
  assert.equal(status, 400);
  assert.deepEqual(body.error, {
    message: "bootstrap_host should not be None",
    type: "BadRequestError",
    param: "bootstrap_host",
    code: 400,
  });
  const { bootstrap_room: _room, ...noRoom } = legBody(prefill, 1);
  const missingRoom = await postForJson(prefill, CHAT, noRoom);
  assert.equal(
    (missingRoom.body.error as Record<string, unknown>).message,
    "bootstrap_room should not be None",
  );
  const stringRoom = await postForJson(prefill, CHAT, {
    ...noRoom,
    bootstrap_room: "1",
  });
  assert.equal(stringRoom.status, 400);
});

Deno.test("mock vllm sglang decode fails when the legs' bodies differ", async () => {
  const [prefill, decode] = await sglangPair();
  await using _p = prefill;
  await using _d = decode;
  const [p, d] = await withDeadline(
    Promise.all([
      postForJson(prefill, CHAT, legBody(prefill, 5, { max_tokens: 1 })),
      postForJson(decode, CHAT, legBody(prefill, 5)),
    ]),
    10_000,
    "both legs",
  );
  assert.equal(p.status, 200);
  assert.equal(d.status, 500);
  assert.match(
    decode.requests[0]?.kvTransfer?.reason ?? "",
    /bodies differ/,
  );
});

Deno.test("mock vllm sglang prefill whose decode never joins fails after the wait timeout", async () => {
  const [prefill, decode] = await sglangPair(50);
  await using _p = prefill;
  await using _d = decode;
  const { status, body } = await postForJson(
    prefill,
    CHAT,
    legBody(prefill, 6),
  );
  assert.equal(status, 500);
  assert.match(
    (body.error as Record<string, unknown>).message as string,
    /no decode joined bootstrap_room 6 within 50 ms/,
  );
  // A decode that comes later learns at once that its prefill gave up.
  const late = await postForJson(decode, CHAT, legBody(prefill, 6));
  assert.equal(late.status, 500);
  assert.match(decode.requests[0]?.kvTransfer?.reason ?? "", /gave up/);
});

Deno.test("mock vllm sglang refuses a room another prefill already used", async () => {
  const [prefill, decode] = await sglangPair();
  await using _p = prefill;
  await using _d = decode;
  const body = legBody(prefill, 8);
  await Promise.all([
    postForJson(prefill, CHAT, body),
    postForJson(decode, CHAT, body),
  ]);
  const again = await postForJson(prefill, CHAT, body);
  assert.equal(again.status, 400);
  assert.equal(
    (again.body.error as Record<string, unknown>).message,
    "bootstrap_room 8 is already in use by another prefill",
  );
});

Deno.test("mock vllm sglang keeps every digit of an int64 bootstrap_room", async () => {
  const [prefill, decode] = await sglangPair();
  await using _p = prefill;
  await using _d = decode;
  // Past 2^53: JSON.parse would round it, so the legs must meet on the digits sent.
  const text = JSON.stringify(legBody(prefill, 0)).replace(
    '"bootstrap_room":0',
    '"bootstrap_room":1767225600123456789',
  );
  const [p, d] = await Promise.all([
    postJson(prefill, CHAT, text),
    postJson(decode, CHAT, text),
  ]);
  await p.body?.cancel();
  await d.body?.cancel();
  assert.equal(d.status, 200);
  assert.equal(
    decode.requests[0]?.kvTransfer?.remoteRequestId,
    "1767225600123456789",
  );
});

Deno.test("mock vllm sglang decode told a wrong bootstrap port cannot reach the prefill", async () => {
  const [prefill, decode] = await sglangPair();
  await using _p = prefill;
  await using _d = decode;
  const gone = await createMockVllm();
  const closedPort = gone.port;
  await gone.close();
  const body = { ...legBody(prefill, 11), "bootstrap_port": closedPort };
  const { status } = await postForJson(decode, CHAT, body);
  assert.equal(status, 500);
  assert.match(decode.requests[0]?.kvTransfer?.reason ?? "", /^cannot reach /);
});

Deno.test("mock vllm sglang server without disaggregation ignores bootstrap fields", async () => {
  await using plain = await createMockVllm({ kvConnector: "sglang" });
  const { status } = await postForJson(plain, CHAT, chatBody());
  assert.equal(status, 200);
  assert.equal(plain.requests[0]?.role, "plain");
  assert.equal(plain.requests[0]?.kvTransfer, undefined);
});

/** A prefill mock whose `joined` and `left` resolve when a decode joins or leaves one of its rooms. */
async function prefillWatchingJoins(): Promise<
  { prefill: MockVllm; joined: Promise<void>; left: Promise<void> }
> {
  const joined = Promise.withResolvers<void>();
  const left = Promise.withResolvers<void>();
  const prefill = await createMockVllm({
    name: "prefiller",
    kvConnector: "sglang",
    kvRole: "kv_producer",
    kvWaitTimeoutMs: 60_000,
    log: (line) => {
      if (line.includes("Decode joined bootstrap_room")) joined.resolve();
      if (line.includes("Decode left bootstrap_room")) left.resolve();
    },
  });
  return { prefill, joined: joined.promise, left: left.promise };
}

Deno.test("mock vllm sglang close() of the prefiller ends its decode's wait promptly", async () => {
  const { prefill, joined } = await prefillWatchingJoins();
  await using decode = await createMockVllm({
    kvConnector: "sglang",
    kvRole: "kv_consumer",
    kvWaitTimeoutMs: 60_000,
  });
  const body = legBody(prefill, 12);
  const prefilled = postJson(prefill, CHAT, body, {
    headers: { "x-mock-ttft-ms": "60000" },
  }).then((r) => r.body?.cancel(), () => {});
  const decoded = postForJson(decode, CHAT, body);
  await withDeadline(joined, 5_000, "the decode to join");
  await withDeadline(prefill.close(), 5_000, "the prefiller to close");
  const { status } = await withDeadline(decoded, 5_000, "the decode answer");
  assert.equal(status, 500);
  assert.match(
    decode.requests[0]?.kvTransfer?.reason ?? "",
    /the prefill was aborted|shutting down/,
  );
  await prefilled;
});

Deno.test("mock vllm sglang decode whose client leaves stops waiting at the prefiller", async () => {
  const { prefill, joined, left } = await prefillWatchingJoins();
  await using _p = prefill;
  await using decode = await createMockVllm({
    kvConnector: "sglang",
    kvRole: "kv_consumer",
    kvWaitTimeoutMs: 60_000,
  });
  const client = new AbortController();
  const decoded = postJson(decode, CHAT, legBody(prefill, 13), {
    signal: client.signal,
  }).catch((error) => error);
  await withDeadline(joined, 5_000, "the decode to join");
  client.abort();
  assert.ok((await decoded) instanceof Error);
  assert.equal(
    await withDeadline(decode.requests[0]!.finished, 5_000, "the abort"),
    "aborted",
  );
  await withDeadline(left, 5_000, "the prefiller to see the decode leave");
});

Deno.test("mock vllm kvWaitTimeoutMs changes at runtime through /admin/config", async () => {
  const [prefill, decode] = await sglangPair(60_000);
  await using _p = prefill;
  await using _d = decode;
  const admin = await postForJson(decode, "/admin/config", {
    kvWaitTimeoutMs: 30,
  });
  assert.equal(admin.status, 200);
  assert.equal(admin.body.kvWaitTimeoutMs, 30);
  const { status } = await withDeadline(
    postForJson(decode, CHAT, legBody(prefill, 14)),
    5_000,
    "the lonely decode",
  );
  assert.equal(status, 500);
  assert.equal(
    decode.requests.at(-1)?.kvTransfer?.reason,
    "no prefill for bootstrap_room 14 within 30 ms",
  );
});
