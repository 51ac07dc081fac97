import assert from "node:assert/strict";
import { newBootstrapRoom } from "../../src/connectors/sglang.ts";
import { chatBody } from "../support/harness.ts";
import {
  bodyOf,
  chatChunk,
  createConnectorHarness,
  scriptedStream,
  startRecordingUpstream,
  within,
} from "./_support.ts";

Deno.test(
  "sglang sends prefill and decode the same body: the client's plus the bootstrap fields",
  async () => {
    await using h = await createConnectorHarness("sglang");
    const body =
      '{"model":"Qwen/Qwen3-0.6B","prompt":"Hi","max_tokens":4,"stream":true}';
    const response = await h.pd("/v1/completions", body);
    assert.equal(response.status, 200);
    await response.text();
    const prefill = h.prefill.requests[0];
    const decode = h.decode.requests[0];
    assert.equal(prefill?.bodyText, decode?.bodyText);
    const room = /"bootstrap_room":(\d+)\}$/.exec(decode?.bodyText ?? "")?.[1];
    assert.ok(room, decode?.bodyText);
    assert.equal(
      decode?.bodyText,
      `${
        body.slice(0, -1)
      },"bootstrap_host":"127.0.0.1","bootstrap_port":${h.prefill.sideChannelPort},"bootstrap_room":${room}}`,
    );
    assert.equal(decode?.kvTransfer?.outcome, "pulled");
  },
);

Deno.test("sglang names an IPv6 prefiller's host without brackets", async () => {
  await using h = await createConnectorHarness("sglang", {
    prefill: { hostname: "::1" },
  });
  const response = await h.pd("/v1/chat/completions", chatBody(), {
    "x-prefiller-host-port": `[::1]:${h.prefill.port}`,
  });
  assert.equal(response.status, 200);
  await response.text();
  assert.equal(bodyOf(h.decode.requests[0]).bootstrap_host, "::1");
  assert.equal(bodyOf(h.prefill.requests[0]).bootstrap_host, "::1");
  assert.equal(
    bodyOf(h.decode.requests[0]).bootstrap_port,
    h.prefill.sideChannelPort,
  );
  assert.equal(h.decode.requests[0]?.kvTransfer?.outcome, "pulled");
});

Deno.test("sglang names an http:// prefiller's host without the scheme", async () => {
  await using h = await createConnectorHarness("sglang");
  const response = await h.pd("/v1/chat/completions", chatBody(), {
    "x-prefiller-host-port": `http://localhost:${h.prefill.port}`,
  });
  assert.equal(response.status, 200);
  await response.text();
  assert.equal(bodyOf(h.decode.requests[0]).bootstrap_host, "localhost");
});

Deno.test("sglang gives every request its own bootstrap room", async () => {
  await using h = await createConnectorHarness("sglang");
  for (let i = 0; i < 3; i++) {
    const response = await h.pd("/v1/chat/completions", chatBody());
    await response.text();
  }
  const rooms = h.decode.requests.map((r) =>
    /"bootstrap_room":(\d+)/.exec(r.bodyText)?.[1]
  );
  assert.equal(new Set(rooms).size, 3);
  for (let i = 0; i < 3; i++) {
    assert.equal(
      /"bootstrap_room":(\d+)/.exec(h.prefill.requests[i]?.bodyText ?? "")
        ?.[1],
      rooms[i],
    );
  }
});

Deno.test("newBootstrapRoom draws integers in [0, 2^63-1]", () => {
  const rooms = Array.from({ length: 200 }, newBootstrapRoom);
  for (const room of rooms) {
    assert.match(room, /^\d+$/);
    assert.ok(BigInt(room) < 2n ** 63n);
  }
  assert.equal(new Set(rooms).size, rooms.length);
  // Random 63-bit numbers: most need more digits than a double holds exactly.
  assert.ok(rooms.some((room) => BigInt(room) > 2n ** 53n));
});

Deno.test(
  "sglang keeps the decode's answer and logs the cause when the prefill fails after the decode started answering",
  async () => {
    const stream = scriptedStream();
    const prefillGate = Promise.withResolvers<void>();
    await using prefiller = startRecordingUpstream(async () => {
      await prefillGate.promise;
      return new Response("engine died", { status: 500 });
    });
    await using decoder = startRecordingUpstream(() => stream.response);
    await using h = await createConnectorHarness("sglang", {
      config: { modelServerPort: decoder.port },
    });
    stream.push(chatChunk({ role: "assistant", content: "" }));
    const response = await within(
      h.pd("/v1/chat/completions", chatBody({ stream: true }), {
        "x-prefiller-host-port": prefiller.hostPort,
      }),
      "the answer",
    );
    assert.equal(response.status, 200);
    const reader = response.body!.getReader();
    await within(reader.read(), "the first chunk");
    prefillGate.resolve();
    await h.nextLog(
      (line) => /decode goes on/.test(String(line.msg)),
      5000,
    );
    stream.push(chatChunk({ content: "Hi" }, "stop"));
    stream.push("data: [DONE]\n\n");
    stream.close();
    let rest = "";
    for (;;) {
      const { value, done } = await within(reader.read(), "the next chunk");
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    assert.match(rest, /"content":"Hi".*data: \[DONE\]\n\n$/s);
    const error = h.logs.find((line) =>
      /decode goes on/.test(String(line.msg))
    );
    assert.equal(error?.level, "error");
    assert.match(
      JSON.stringify(error?.cause),
      /answered 500: engine died/,
    );
  },
);
