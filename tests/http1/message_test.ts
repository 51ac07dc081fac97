import assert from "node:assert/strict";
import {
  parseRequestHead,
  parseResponseHead,
  type RequestHead,
} from "../../src/http1/message.ts";

/** The status a refusal carries (the error's class is the parser's business). */
function statusOf(error: unknown): number {
  assert.ok(
    error instanceof Error && "status" in error &&
      typeof error.status === "number",
    `not an error with a status: ${String(error)}`,
  );
  return error.status;
}

/** A request head from its lines, joined as they come off the wire. */
function request(...lines: string[]): RequestHead {
  return parseRequestHead(lines.join("\r\n"));
}

/** The status a head made of `lines` is refused with. */
function refusal(...lines: string[]): number {
  try {
    request(...lines);
  } catch (error) {
    return statusOf(error);
  }
  assert.fail(`head accepted: ${JSON.stringify(lines)}`);
}

Deno.test("parseRequestHead reads method, target, path, version and lower-cased fields", () => {
  const head = request(
    "POST /v1/completions?trace=1 HTTP/1.1",
    "Host: sidecar:8000",
    "Content-Type: application/json",
    "X-Custom:   spaced value  ",
    "x-custom: second",
  );
  assert.equal(head.method, "POST");
  assert.equal(head.target, "/v1/completions?trace=1");
  assert.equal(head.path, "/v1/completions");
  assert.equal(head.version, "1.1");
  assert.deepEqual(head.headers.list, [
    ["host", "sidecar:8000"],
    ["content-type", "application/json"],
    ["x-custom", "spaced value"],
    ["x-custom", "second"],
  ]);
  assert.equal(head.headers.get("x-custom"), "spaced value, second");
  assert.equal(head.headers.get("x-absent"), null);
  assert.deepEqual(head.framing, { kind: "none" });
  assert.equal(head.keepAlive, true);
  assert.equal(head.expectContinue, false);
});

Deno.test("parseRequestHead skips empty lines before the request line", () => {
  const head = request("", "", "GET /health HTTP/1.1", "Host: x");
  assert.equal(head.path, "/health");
});

Deno.test("parseRequestHead frames a body by Content-Length", () => {
  assert.deepEqual(
    request("POST / HTTP/1.1", "Host: x", "Content-Length: 42").framing,
    { kind: "length", length: 42 },
  );
  assert.deepEqual(
    request("POST / HTTP/1.1", "Host: x", "Content-Length: 0").framing,
    { kind: "length", length: 0 },
  );
});

Deno.test("parseRequestHead accepts repeated Content-Length fields that agree", () => {
  assert.deepEqual(
    request(
      "POST / HTTP/1.1",
      "Host: x",
      "Content-Length: 7",
      "Content-Length: 7",
    ).framing,
    { kind: "length", length: 7 },
  );
  assert.deepEqual(
    request("POST / HTTP/1.1", "Host: x", "Content-Length: 7, 7").framing,
    { kind: "length", length: 7 },
  );
});

Deno.test("parseRequestHead refuses Content-Length fields that differ with 400", () => {
  assert.equal(
    refusal(
      "POST / HTTP/1.1",
      "Host: x",
      "Content-Length: 7",
      "Content-Length: 8",
    ),
    400,
  );
  assert.equal(
    refusal("POST / HTTP/1.1", "Host: x", "Content-Length: 7, 8"),
    400,
  );
});

Deno.test("parseRequestHead refuses a Content-Length that is not a decimal count with 400", () => {
  for (const value of ["-1", "+5", "0x10", "1.5", "", "abc", "1 2"]) {
    assert.equal(
      refusal("POST / HTTP/1.1", "Host: x", `Content-Length: ${value}`),
      400,
      JSON.stringify(value),
    );
  }
});

Deno.test("parseRequestHead frames a body as chunked, whatever the case", () => {
  for (const value of ["chunked", "Chunked", " CHUNKED "]) {
    assert.deepEqual(
      request("POST / HTTP/1.1", "Host: x", `Transfer-Encoding: ${value}`)
        .framing,
      { kind: "chunked" },
      value,
    );
  }
});

Deno.test("parseRequestHead refuses Content-Length with Transfer-Encoding with 400", () => {
  assert.equal(
    refusal(
      "POST / HTTP/1.1",
      "Host: x",
      "Content-Length: 5",
      "Transfer-Encoding: chunked",
    ),
    400,
  );
  assert.equal(
    refusal(
      "POST / HTTP/1.1",
      "Host: x",
      "Transfer-Encoding: chunked",
      "Content-Length: 5",
    ),
    400,
  );
});

Deno.test("parseRequestHead refuses transfer codings other than chunked alone with 501", () => {
  for (const value of ["gzip", "gzip, chunked", "chunked, gzip", "identity"]) {
    assert.equal(
      refusal("POST / HTTP/1.1", "Host: x", `Transfer-Encoding: ${value}`),
      501,
      value,
    );
  }
});

Deno.test("parseRequestHead refuses protocols other than HTTP/1.0 and HTTP/1.1 with 505", () => {
  for (
    const protocol of ["HTTP/2", "HTTP/2.0", "HTTP/1.2", "http/1.1", "FOO"]
  ) {
    assert.equal(refusal(`GET / ${protocol}`, "Host: x"), 505, protocol);
  }
});

Deno.test("parseRequestHead refuses a malformed request line with 400", () => {
  for (
    const line of [
      "GET /",
      "GET  / HTTP/1.1",
      "GET / HTTP/1.1 extra",
      "G(T / HTTP/1.1",
      "garbage",
    ]
  ) {
    assert.equal(refusal(line, "Host: x"), 400, line);
  }
});

Deno.test("parseRequestHead refuses a malformed header line with 400", () => {
  for (
    const line of [
      "no colon here",
      ": no name",
      "Bad Name: x",
      "Host : x",
      " folded: continuation",
    ]
  ) {
    assert.equal(refusal("GET / HTTP/1.1", "Host: x", line), 400, line);
  }
});

Deno.test("parseRequestHead requires Host on HTTP/1.1 only", () => {
  assert.equal(refusal("GET / HTTP/1.1", "Accept: */*"), 400);
  assert.equal(refusal("GET / HTTP/1.1"), 400);
  assert.equal(request("GET / HTTP/1.0").version, "1.0");
});

Deno.test("parseRequestHead refuses a request with two Host fields with 400", () => {
  // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
  // code to any [...] request message that contains more than one Host
  // header field line".
  assert.equal(
    refusal("GET / HTTP/1.1", "Host: a.example", "Host: b.example"),
    400,
  );
});

Deno.test("parseRequestHead refuses field values carrying a bare LF or NUL", () => {
  // RFC 9110 §5.5: a recipient of CR, LF or NUL in a field value MUST reject
  // the message or replace them with SP before forwarding it.
  for (const value of ["a\nx-injected: 1", "a\0b"]) {
    let head: RequestHead;
    try {
      head = request("GET / HTTP/1.1", "Host: x", `X-Custom: ${value}`);
    } catch (error) {
      assert.equal(statusOf(error), 400);
      continue;
    }
    assert.doesNotMatch(
      head.headers.get("x-custom") ?? "",
      /[\r\n\0]/,
      `${JSON.stringify(value)} kept as is`,
    );
  }
});

Deno.test("parseRequestHead refuses a request target carrying control characters with 400", () => {
  // RFC 9112 §3.2: the target is a URI reference, which has no CTLs; a bare
  // LF in it would end the request line at a lenient upstream.
  for (const target of ["/v1/models\nx-injected:1", "/v1/mo\0dels", "/a\tb"]) {
    assert.equal(refusal(`GET ${target} HTTP/1.1`, "Host: x"), 400, target);
  }
});

Deno.test("parseRequestHead turns an absolute-form target into origin form", () => {
  const head = request(
    "GET http://decoder.example:8000/v1/models?x=1 HTTP/1.1",
    "Host: decoder.example:8000",
  );
  assert.equal(head.target, "/v1/models?x=1");
  assert.equal(head.path, "/v1/models");
  const bare = request("GET HTTPS://decoder.example HTTP/1.1", "Host: x");
  assert.equal(bare.target, "/");
  assert.equal(bare.path, "/");
});

Deno.test("parseRequestHead gives an absolute-form target with an empty path the path /", () => {
  // RFC 9112 §3.2.1: an empty path is sent as "/" in origin form.
  const head = request("GET http://decoder.example?x=1 HTTP/1.1", "Host: x");
  assert.equal(head.target, "/?x=1");
  assert.equal(head.path, "/");
});

Deno.test("parseRequestHead accepts the asterisk form and refuses other targets", () => {
  assert.equal(request("OPTIONS * HTTP/1.1", "Host: x").target, "*");
  assert.equal(refusal("GET v1/models HTTP/1.1", "Host: x"), 400);
  assert.equal(refusal("GET ftp://x/y HTTP/1.1", "Host: x"), 400);
});

Deno.test("parseRequestHead keeps HTTP/1.1 alive unless the client sends close", () => {
  assert.equal(request("GET / HTTP/1.1", "Host: x").keepAlive, true);
  assert.equal(
    request("GET / HTTP/1.1", "Host: x", "Connection: keep-alive").keepAlive,
    true,
  );
  assert.equal(
    request("GET / HTTP/1.1", "Host: x", "Connection: close").keepAlive,
    false,
  );
  assert.equal(
    request("GET / HTTP/1.1", "Host: x", "Connection: x-hop, Close").keepAlive,
    false,
  );
});

Deno.test("parseRequestHead keeps HTTP/1.0 alive only when the client asks", () => {
  assert.equal(request("GET / HTTP/1.0").keepAlive, false);
  assert.equal(
    request("GET / HTTP/1.0", "Connection: Keep-Alive").keepAlive,
    true,
  );
});

Deno.test("parseRequestHead never keeps alive an HTTP/1.0 request with Transfer-Encoding", () => {
  // RFC 9112 §6.1: such a message's framing is faulty, and the connection
  // MUST be closed after processing it (a request smuggling vector).
  let head: RequestHead;
  try {
    head = request(
      "POST / HTTP/1.0",
      "Connection: keep-alive",
      "Transfer-Encoding: chunked",
    );
  } catch (error) {
    assert.equal(statusOf(error), 400);
    return;
  }
  assert.equal(head.keepAlive, false);
});

Deno.test("parseRequestHead sees Expect: 100-continue on HTTP/1.1 only", () => {
  const head = (version: string, expect: string) =>
    request(
      `POST / HTTP/${version}`,
      "Host: x",
      "Content-Length: 3",
      `Expect: ${expect}`,
    );
  assert.equal(head("1.1", "100-continue").expectContinue, true);
  assert.equal(head("1.1", "100-Continue").expectContinue, true);
  assert.equal(head("1.0", "100-continue").expectContinue, false);
  assert.equal(head("1.1", "something-else").expectContinue, false);
});

Deno.test("parseResponseHead reads status, reason, fields and a Content-Length body", () => {
  const head = parseResponseHead(
    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n" +
      "Content-Length: 22",
    "GET",
  );
  assert.equal(head.version, "1.1");
  assert.equal(head.status, 404);
  assert.equal(head.reason, "Not Found");
  assert.equal(head.headers.get("content-type"), "application/json");
  assert.deepEqual(head.framing, { kind: "length", length: 22 });
  assert.equal(head.keepAlive, true);
});

Deno.test("parseResponseHead reads a status line without a reason", () => {
  const head = parseResponseHead("HTTP/1.1 200\r\nContent-Length: 0", "GET");
  assert.equal(head.status, 200);
  assert.equal(head.reason, "");
});

Deno.test("parseResponseHead frames a chunked answer", () => {
  const head = parseResponseHead(
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
    "POST",
  );
  assert.deepEqual(head.framing, { kind: "chunked" });
  assert.equal(head.keepAlive, true);
});

Deno.test("parseResponseHead reads an answer without framing until close", () => {
  const head = parseResponseHead(
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain",
    "GET",
  );
  assert.deepEqual(head.framing, { kind: "close" });
  assert.equal(head.keepAlive, false);
});

Deno.test("parseResponseHead gives HEAD, 1xx, 204 and 304 answers no body", () => {
  const cases: [string, string][] = [
    ["HTTP/1.1 200 OK\r\nContent-Length: 120", "HEAD"],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "HEAD"],
    ["HTTP/1.1 200 OK", "HEAD"],
    ["HTTP/1.1 204 No Content\r\nContent-Length: 5", "DELETE"],
    ["HTTP/1.1 204 No Content", "GET"],
    ["HTTP/1.1 304 Not Modified\r\nContent-Length: 120", "GET"],
    ["HTTP/1.1 100 Continue", "POST"],
  ];
  for (const [text, method] of cases) {
    const head = parseResponseHead(text, method);
    assert.deepEqual(head.framing, { kind: "none" }, `${method} ${text}`);
    assert.equal(head.keepAlive, true, `${method} ${text}`);
  }
});

Deno.test("parseResponseHead follows the keep-alive rules of each version", () => {
  const length = "Content-Length: 0";
  assert.equal(
    parseResponseHead(`HTTP/1.1 200 OK\r\n${length}`, "GET").keepAlive,
    true,
  );
  assert.equal(
    parseResponseHead(
      `HTTP/1.1 200 OK\r\nConnection: close\r\n${length}`,
      "GET",
    )
      .keepAlive,
    false,
  );
  assert.equal(
    parseResponseHead(`HTTP/1.0 200 OK\r\n${length}`, "GET").keepAlive,
    false,
  );
  assert.equal(
    parseResponseHead(
      `HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n${length}`,
      "GET",
    ).keepAlive,
    true,
  );
});

Deno.test("parseResponseHead refuses a status line it cannot read", () => {
  for (
    const line of ["HTTP/2 200 OK", "HTTP/1.1 2000 OK", "ICY 200 OK", "garbage"]
  ) {
    assert.throws(() => parseResponseHead(line, "GET"), line);
  }
});

Deno.test("parseResponseHead refuses an answer with Content-Length and Transfer-Encoding", () => {
  assert.throws(() =>
    parseResponseHead(
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
      "GET",
    )
  );
});
