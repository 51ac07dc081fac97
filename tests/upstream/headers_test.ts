import assert from "node:assert/strict";
import {
  buildClientHeaders,
  buildUpstreamHeaders,
} from "../../src/upstream/headers.ts";

Deno.test("buildUpstreamHeaders drops hop-by-hop and Connection-listed headers", () => {
  const incoming = new Headers({
    "connection": "keep-alive, x-hop",
    "keep-alive": "timeout=5",
    "x-hop": "1",
    "te": "trailers",
    "upgrade": "h2c",
    "proxy-authorization": "Basic x",
    "host": "sidecar:8000",
    "authorization": "Bearer t",
    "traceparent": "00-abc-def-01",
    "x-prefiller-host-port": "p:1",
  });
  const out = buildUpstreamHeaders(incoming, {
    omit: ["x-prefiller-host-port"],
  });
  assert.deepEqual(out.map(([name]) => name).sort(), [
    "authorization",
    "traceparent",
  ]);
});

Deno.test("buildUpstreamHeaders appends the client address to X-Forwarded-For", () => {
  const first = buildUpstreamHeaders(new Headers(), { clientIp: "10.1.1.1" });
  assert.deepEqual(first, [["x-forwarded-for", "10.1.1.1"]]);
  const chained = buildUpstreamHeaders(
    new Headers({ "x-forwarded-for": "1.2.3.4" }),
    {
      clientIp: "10.1.1.1",
    },
  );
  assert.deepEqual(chained, [["x-forwarded-for", "1.2.3.4, 10.1.1.1"]]);
});

Deno.test("buildClientHeaders drops the encoding and length of a body fetch decoded", () => {
  const out = buildClientHeaders(
    new Headers({
      "content-encoding": "gzip",
      "content-length": "10",
      "content-type": "text/plain",
      "transfer-encoding": "chunked",
    }),
    { fetchMayDecode: true },
  );
  assert.deepEqual(out, [["content-type", "text/plain"]]);
  const plain = buildClientHeaders(
    new Headers({ "content-length": "10", "x-a": "b" }),
  );
  assert.deepEqual(plain, [["content-length", "10"], ["x-a", "b"]]);
});

Deno.test("buildClientHeaders keeps each Set-Cookie value separate", () => {
  const upstream = new Headers([["set-cookie", "a=1"], ["set-cookie", "b=2"]]);
  assert.deepEqual(buildClientHeaders(upstream), [["set-cookie", "a=1"], [
    "set-cookie",
    "b=2",
  ]]);
});
