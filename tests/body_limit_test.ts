import assert from "node:assert/strict";
import {
  declaredLength,
  readBodyText,
  readFromClient,
} from "../src/body_limit.ts";
import { ProxyError } from "../src/errors.ts";

/** What `readFromClient` made of a read failing with `error`, and whether it said the client left. */
async function failedRead(
  error: unknown,
): Promise<{ error: ProxyError; left: unknown[] }> {
  const left: unknown[] = [];
  try {
    await readFromClient(() => Promise.reject(error), (cause) => {
      left.push(cause);
    });
  } catch (thrown) {
    assert.ok(thrown instanceof ProxyError, String(thrown));
    return { error: thrown, left };
  }
  throw new Error("the read did not fail");
}

Deno.test("a body read that fails because the connection went is the client gone: 499, and the request is told", async () => {
  // What Deno 2.9.6 throws when the client closes mid-body (tests/abort_test.ts sees it on the wire).
  const gone = new Deno.errors.BadResource(
    "Cannot read body as underlying resource unavailable",
  );
  const { error, left } = await failedRead(gone);
  assert.equal(error.status, 499);
  assert.equal(error.code, "client_disconnected");
  assert.deepEqual(left, [gone]);
  // A TLS peer dropping without close_notify, an HTTP/2 stream reset, a reset.
  for (
    const error of [
      new Deno.errors.Http(
        "peer closed connection without sending TLS close_notify",
      ),
      new Deno.errors.Http("error reading a body from connection"),
      new Deno.errors.ConnectionReset("x"),
      new Deno.errors.UnexpectedEof("x"),
    ]
  ) {
    assert.equal((await failedRead(error)).error.status, 499, error.message);
  }
});

Deno.test("a body the runtime cannot parse, from a client still there, is its 400 and not a client gone", async () => {
  const { error, left } = await failedRead(
    new Error("invalid HTTP/1 request: Invalid"),
  );
  assert.equal(error.status, 400);
  assert.equal(error.code, "invalid_request_body");
  assert.match(error.message, /^Malformed request body: invalid HTTP\/1/);
  assert.deepEqual(left, []);
});

Deno.test("a refusal of the sidecar's own while reading passes through unchanged", async () => {
  const tooLarge = new ProxyError(413, "too large", {
    code: "request_body_too_large",
  });
  const { error, left } = await failedRead(tooLarge);
  assert.equal(error, tooLarge);
  assert.deepEqual(left, []);
});

Deno.test("a body that ends before its declared length is the client gone (HTTP/2 ends a body at a stream reset)", async () => {
  const post = (declared: number) =>
    new Request("http://sidecar/v1/completions", {
      method: "POST",
      body: "abc",
      headers: { "content-length": String(declared) },
    });
  // Read in one call untimed, chunk by chunk timed (-client-body-timeout).
  for (const timeoutMs of [0, 60_000]) {
    for (const declared of [10, 4]) {
      const left: unknown[] = [];
      await assert.rejects(
        readBodyText(post(declared), {
          limit: 1000,
          timeoutMs,
          left: (cause) => left.push(cause),
        }),
        (error) =>
          error instanceof ProxyError && error.status === 499 &&
          String((error.cause as Error).message).includes(
            `ended after 3 of its ${declared} declared bytes`,
          ),
      );
      assert.equal(left.length, 1, `${declared} (timeout ${timeoutMs})`);
    }
    assert.equal(
      await readBodyText(post(3), { limit: 1000, timeoutMs, left: () => {} }),
      "abc",
    );
  }
});

Deno.test("declaredLength reads one run of decimal digits, equal repeated values as one, and nothing else", () => {
  const cases: [string | null, number | undefined][] = [
    [null, undefined],
    ["0", 0],
    ["12", 12],
    [" 12 ", 12],
    ["12, 12", 12],
    ["12,12,12", 12],
    ["12, 13", undefined],
    ["-1", undefined],
    ["1.5", undefined],
    ["abc", undefined],
    ["12, abc", undefined],
    ["", undefined],
    [",", undefined],
    ["0x10", undefined],
    ["1e3", undefined],
    ["+5", undefined],
    ["0b11", undefined],
    [String(2 ** 53), undefined],
  ];
  for (const [value, expected] of cases) {
    const headers = new Headers(
      value === null ? {} : { "content-length": value },
    );
    assert.equal(declaredLength(headers), expected, String(value));
  }
});
