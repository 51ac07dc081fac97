/**
 * A client's `Host` header cannot move its request to another path: the
 * runtime joins `Host` and the request target into the URL the router and
 * the upstream path are read from, so a `Host` holding a path is refused.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import http2 from "node:http2";
import { isValidHostHeader } from "../../src/middleware/host_header.ts";
import { withDeadline } from "../support/deadline.ts";
import { createHarness } from "../support/harness.ts";
import { closeQuietly, connectTo } from "../support/sockets.ts";
import {
  bodyText,
  exchange,
  headerValues,
  startRecordingUpstream,
  statusOf,
} from "./_http.ts";

/** A sidecar before a recording decoder that answers `{}` to everything. */
async function startEdge() {
  const decoder = startRecordingUpstream();
  const h = await createHarness({
    config: { modelServerPort: decoder.port, verbosity: 0 },
  });
  const base = h.listen();
  return {
    decoder,
    base,
    port: Number(new URL(base).port),
    accessLine: () => h.accessLine(),
    async [Symbol.asyncDispose]() {
      await h[Symbol.asyncDispose]();
      await decoder[Symbol.asyncDispose]();
    },
  };
}

/** POSTs `{}` to `target` with `host` over HTTP/1.1 on a fresh connection. */
async function postWithHost(port: number, target: string, host: string) {
  const conn = await connectTo(port);
  try {
    const result = await exchange(
      conn,
      `POST ${target} HTTP/1.1\r\nHost: ${host}\r\n` +
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    );
    const answer = result.responses[0];
    assert.ok(answer, `no answer: ${result.text}`);
    return answer;
  } finally {
    closeQuietly(conn);
  }
}

for (
  const host of [
    "x/v1/load_lora_adapter?",
    "x/v1/load_lora_adapter#",
    "a@127.0.0.1",
    "x\\v1",
    "x y",
  ]
) {
  Deno.test(
    `a Host of ${
      JSON.stringify(host)
    } is a 400 invalid_host_header and reaches no upstream`,
    async () => {
      await using edge = await startEdge();
      const answer = await postWithHost(
        edge.port,
        "/v1/chat/completions",
        host,
      );
      assert.equal(statusOf(answer), 400);
      assert.deepEqual(headerValues(answer, "x-pd-error-code"), [
        "invalid_host_header",
      ]);
      assert.deepEqual(JSON.parse(bodyText(answer)).error, {
        message: `Invalid Host header ${
          JSON.stringify(host)
        }: expected a host name or IP address and an optional port`,
        type: "BadRequestError",
        param: "host",
        code: 400,
      });
      assert.equal(edge.decoder.received(), "");
    },
  );
}

Deno.test("a Host naming a host and port, an IP or an IPv6 literal reaches the decoder on the client's path", async () => {
  await using edge = await startEdge();
  const hosts = ["decode.ns.svc:8000", "10.0.0.5", "[fd00::1]:80", "h_1.x-y"];
  for (const [index, host] of hosts.entries()) {
    const answer = await postWithHost(edge.port, "/v1/models?a=1", host);
    assert.equal(statusOf(answer), 200, host);
    const seen = await edge.decoder.request(index);
    assert.equal(seen.startLine, "POST /v1/models?a=1 HTTP/1.1");
  }
});

Deno.test("an HTTP/2 request whose host header holds a path is a 400 and reaches no upstream", async () => {
  await using edge = await startEdge();
  const session = http2.connect(edge.base);
  session.on("error", () => {
    // Reported through the stream.
  });
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": "/v1/chat/completions",
      "host": "x/v1/load_lora_adapter?",
      "content-type": "application/json",
    });
    const status = withDeadline(
      new Promise<number | undefined>((resolve, reject) => {
        stream.on("response", (headers) => resolve(headers[":status"]));
        stream.on("error", reject);
      }),
      10_000,
      "the HTTP/2 answer",
    );
    stream.end("{}");
    assert.equal(await status, 400);
    stream.resume();
  } finally {
    session.close();
  }
  assert.equal(edge.decoder.received(), "");
});

Deno.test("isValidHostHeader admits what Go's net/http admits and nothing a URL reads past", () => {
  for (
    const host of [
      "",
      "a",
      "a.b:1",
      "[::1]:8000",
      "[fe80::1%25eth0]",
      "x~!$&'()*+,;=_-",
    ]
  ) {
    assert.ok(isValidHostHeader(host), host);
  }
  for (
    const host of [
      "a/b",
      "a?b",
      "a#b",
      "a@b",
      "a\\b",
      "a b",
      "\u00e9",
      '"a"',
      "a<b",
    ]
  ) {
    assert.ok(!isValidHostHeader(host), host);
  }
});

Deno.test("whatever visible ASCII a Host holds, the decoder gets the request target's own path or nothing", async () => {
  await using edge = await startEdge();
  const targets = ["/v1/models", "/v1/chat/completions?a=1", "/health/x"];
  await fc.assert(
    fc.asyncProperty(
      fc.string({
        unit: fc.integer({ min: 0x21, max: 0x7e }).map((code) =>
          String.fromCharCode(code)
        ),
        maxLength: 24,
      }),
      fc.constantFrom(...targets),
      async (host, target) => {
        const before = edge.decoder.requests.length;
        const answer = await postWithHost(edge.port, target, host);
        if (statusOf(answer) === 400 && !isValidHostHeader(host)) {
          assert.equal(edge.decoder.requests.length, before);
          return;
        }
        const seen = await edge.decoder.request(before);
        assert.equal(seen.startLine, `POST ${target} HTTP/1.1`, host);
      },
    ),
    { numRuns: 150, seed: 20_261_206 },
  );
});

Deno.test("a Host holding a path on /v1/messages is refused in Anthropic's error shape, the shape of the API the target names", async () => {
  await using edge = await startEdge();
  const answer = await postWithHost(
    edge.port,
    "/v1/messages?beta=true",
    "x/v1/chat/completions?",
  );
  assert.equal(statusOf(answer), 400);
  assert.deepEqual(JSON.parse(bodyText(answer)), {
    type: "error",
    error: {
      type: "invalid_request_error",
      message:
        'Invalid Host header "x/v1/chat/completions?": expected a host name or IP address and an optional port',
    },
  });
  assert.equal(edge.decoder.received(), "");
  // The log names the path asked for, not the one the Host made up.
  const line = await edge.accessLine();
  assert.equal(line.path, "/v1/messages");
  assert.equal(line.error_code, "invalid_host_header");
});
