/**
 * An upstream that reads a P/D leg and closes without answering (a vLLM that
 * died on it, a proxy in between that dropped it): the leg is a POST, so the
 * sidecar answers 502 and never sends it a second time on its own, where
 * the connection was new. On a reused one the runtime re-sends it itself.
 */

import assert from "node:assert/strict";
import { within } from "../support/deadline.ts";
import { chatBody, createHarness } from "../support/harness.ts";
import { readRequest } from "../support/sockets.ts";
import { startScriptedServer } from "../support/stub_upstream.ts";

/** An upstream that reads each request whole and closes unanswered. */
function startDroppingUpstream() {
  return startScriptedServer(async (conn) => {
    await readRequest(conn);
    conn.close();
  });
}

Deno.test("a decoder that reads the P/D decode and closes gets it once: the client a 502 decoder_unreachable", async () => {
  await using decoder = startDroppingUpstream();
  await using h = await createHarness({
    config: { verbosity: 3, modelServerPort: decoder.port },
  });
  const response = await within(
    h.pd("/v1/chat/completions", chatBody()),
    10_000,
    "the sidecar's answer",
  );
  assert.equal(response.status, 502);
  assert.match(
    (await response.json()).error.message,
    /^Cannot reach decode server .*connection closed by the server/,
  );
  assert.equal((await h.accessLine()).error_code, "decoder_unreachable");
  assert.equal(h.prefill.requests.length, 1);
  assert.equal(decoder.connections(), 1, "the decode was sent again");
});

Deno.test("a prefiller that reads the prefill and closes gets it once without -prefill-max-retries, once per attempt with it", async () => {
  for (const retries of [0, 2]) {
    await using prefiller = startDroppingUpstream();
    await using h = await createHarness({
      config: {
        verbosity: 3,
        prefillMaxRetries: retries,
        prefillRetryBackoff: 1,
      },
    });
    const response = await within(
      h.pd("/v1/chat/completions", chatBody(), {
        "x-prefiller-host-port": `127.0.0.1:${prefiller.port}`,
      }),
      10_000,
      "the sidecar's answer",
    );
    assert.equal(response.status, 502);
    assert.equal((await h.accessLine()).error_code, "prefill_unreachable");
    assert.equal(prefiller.connections(), 1 + retries, `${retries} retries`);
    assert.equal(h.decode.requests.length, 0);
  }
});

const ANSWER = JSON.stringify({
  id: "chatcmpl-1",
  object: "chat.completion",
  choices: [{ index: 0, message: { role: "assistant", content: "hi" } }],
  usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
});

Deno.test("on a reused connection the runtime's fetch sends a dropped P/D decode again itself (Deno 2.9.6; pinned so an upgrade that stops it is noticed)", async () => {
  // Connection 0 answers the first decode and keeps alive, then reads the
  // second and closes unanswered; later connections answer.
  const seen: string[] = [];
  await using decoder = startScriptedServer(async (conn, index) => {
    for (let n = 0;; n++) {
      const request = await readRequest(conn).catch(() => undefined);
      if (request === undefined) return;
      seen.push(`${index}:${n}`);
      if (index === 0 && n === 1) {
        conn.close();
        return;
      }
      await conn.write(
        new TextEncoder().encode(
          "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" +
            `content-length: ${ANSWER.length}\r\n\r\n${ANSWER}`,
        ),
      );
    }
  });
  await using h = await createHarness({
    config: { verbosity: 3, modelServerPort: decoder.port },
  });
  for (const turn of [1, 2]) {
    const response = await within(
      h.pd("/v1/chat/completions", chatBody()),
      10_000,
      `the sidecar's answer ${turn}`,
    );
    assert.equal(response.status, 200, `turn ${turn}`);
    await response.body?.cancel();
  }
  // The second decode went out twice: on the reused connection, then again.
  assert.deepEqual(seen, ["0:0", "0:1", "1:0"]);
});
