/**
 * Methods the runtime's `fetch` refuses to send (CONNECT, TRACE, TRACK) get
 * the sidecar's own 405, not a 502 blaming a decoder that was never asked.
 */

import assert from "node:assert/strict";
import { createHarness } from "../support/harness.ts";
import { closeQuietly, connectTo } from "../support/sockets.ts";
import {
  bodyText,
  exchange,
  headerValues,
  startRecordingUpstream,
  statusOf,
} from "./_http.ts";

for (
  const [method, target] of [
    ["TRACE", "/v1/models"],
    ["track", "/v1/models"],
    ["CONNECT", "decode.example:443"],
  ]
) {
  Deno.test(`a ${method} request is a 405 method_not_allowed, logged as the client's error, and reaches no upstream`, async () => {
    await using decoder = startRecordingUpstream();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port, verbosity: 4 },
    });
    const conn = await connectTo(Number(new URL(h.listen()).port));
    try {
      const result = await exchange(
        conn,
        `${method} ${target} HTTP/1.1\r\nHost: a\r\n\r\n`,
      );
      const answer = result.responses[0];
      assert.ok(answer, `no answer: ${result.text}`);
      assert.equal(statusOf(answer), 405);
      assert.deepEqual(headerValues(answer, "x-pd-error-code"), [
        "method_not_allowed",
      ]);
      assert.deepEqual(JSON.parse(bodyText(answer)).error, {
        message: `Method "${method}" is not supported by the sidecar`,
        type: "MethodNotAllowed",
        param: null,
        code: 405,
      });
    } finally {
      closeQuietly(conn);
    }
    assert.equal(decoder.received(), "");
    const line = await h.accessLine();
    assert.equal(line.status, 405);
    assert.equal(h.logs.some((entry) => entry.level === "error"), false);
  });
}
