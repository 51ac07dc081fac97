import assert from "node:assert/strict";
import { createHarness } from "../support/harness.ts";
import { startStubUpstream } from "../support/stub_upstream.ts";

const TEXT = "a body long enough to be worth compressing ".repeat(20);

async function compress(format: CompressionFormat): Promise<Uint8Array> {
  const stream = new Blob([TEXT]).stream().pipeThrough(
    new CompressionStream(format),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Asks for `/v1/models` with `accept-encoding: gzip, br` from a decoder answering `body` coded as `coding`. */
async function relayedThroughPassthrough(
  coding: string,
  body: Uint8Array,
): Promise<Response> {
  await using decoder = startStubUpstream(() =>
    new Response(body.slice(), {
      headers: { "content-encoding": coding, "content-type": "text/plain" },
    })
  );
  await using h = await createHarness({
    config: { modelServerPort: decoder.port },
  });
  const response = await h.request("/v1/models", {
    headers: { "accept-encoding": "gzip, br" },
  });
  return new Response(await response.arrayBuffer(), response);
}

Deno.test(
  "passthrough relays a gzip body fetch decoded without its content-encoding",
  async () => {
    const response = await relayedThroughPassthrough(
      "gzip",
      await compress("gzip"),
    );
    assert.equal(response.headers.get("content-encoding"), null);
    assert.equal(await response.text(), TEXT);
  },
);

Deno.test(
  "passthrough relays a deflate body fetch leaves alone with its content-encoding, bytes unchanged",
  async () => {
    const deflated = await compress("deflate");
    const response = await relayedThroughPassthrough("deflate", deflated);
    assert.equal(response.headers.get("content-encoding"), "deflate");
    assert.deepEqual(new Uint8Array(await response.arrayBuffer()), deflated);
  },
);

Deno.test(
  "passthrough relays a gzip body with its label when the client named no coding and the upstream compressed anyway",
  async () => {
    const gzipped = await compress("gzip");
    await using decoder = startStubUpstream(() =>
      new Response(gzipped.slice(), { headers: { "content-encoding": "gzip" } })
    );
    await using h = await createHarness({
      config: { modelServerPort: decoder.port },
    });
    const response = await h.request("/v1/models");
    assert.equal(response.headers.get("content-encoding"), "gzip");
    assert.deepEqual(new Uint8Array(await response.arrayBuffer()), gzipped);
  },
);
