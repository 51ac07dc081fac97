import assert from "node:assert/strict";
import { within } from "./support/deadline.ts";
import { writeCertDir } from "./support/certs.ts";
import { generateSelfSignedCertificate, loadCertificate } from "../src/tls.ts";
import { listenWithFallback } from "../src/server.ts";
import { createLogger } from "../src/log.ts";
import {
  chatBody,
  createHarness,
  jsonHeaders,
  testConfig,
} from "./support/harness.ts";
import { upstreamClientOptions } from "../src/security.ts";
import {
  type HangingUpstream,
  startHangingUpstream,
} from "./support/stub_upstream.ts";

const decoder = new TextDecoder();

/** POSTs a chat request over a real socket to `base`, naming `prefiller`; `headers` adds more. */
function postChat(
  base: string,
  options: {
    prefiller: string;
    body?: string;
    headers?: Record<string, string>;
    signal?: AbortSignal;
    client?: Deno.HttpClient;
  },
): Promise<Response> {
  return fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: jsonHeaders({
      "x-prefiller-host-port": options.prefiller,
      ...options.headers,
    }),
    body: options.body ?? chatBody(),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.client ? { client: options.client } : {}),
  });
}

Deno.test(
  "server serves TLS with a self-signed certificate a client can pin",
  async () => {
    await using h = await createHarness();
    const tls = await generateSelfSignedCertificate();
    const base = h.listen(tls);
    using client = Deno.createHttpClient({ caCerts: [tls.cert] });
    const health = await fetch(`${base}/health`, { client });
    assert.equal(health.status, 200);
    await health.body?.cancel();
    const response = await postChat(base, {
      prefiller: h.prefillerHeader,
      client,
    });
    assert.equal(response.status, 200);
    assert.equal((await response.json()).object, "chat.completion");
    await assert.rejects(
      fetch(`${base}/health`),
      "an unpinned client must refuse the self-signed certificate",
    );
    // A failed handshake costs that connection only.
    using fresh = Deno.createHttpClient({ caCerts: [tls.cert] });
    const after = await fetch(`${base}/health`, { client: fresh });
    assert.equal(after.status, 200);
    await after.body?.cancel();
  },
);

Deno.test(
  "server offers HTTP/2 over TLS by ALPN",
  async () => {
    await using h = await createHarness();
    const tls = await generateSelfSignedCertificate();
    const base = h.listen(tls);
    using client = Deno.createHttpClient({
      caCerts: [tls.cert],
      http1: false,
      http2: true,
    });
    const response = await postChat(base, {
      prefiller: h.prefillerHeader,
      client,
    });
    assert.equal(response.status, 200);
    assert.equal((await response.json()).object, "chat.completion");
  },
);

Deno.test(
  "loadCertificate reads tls.crt and tls.key and names the file it cannot read",
  async () => {
    const tls = await generateSelfSignedCertificate();
    await using certs = await writeCertDir(tls);
    const { dir } = certs;
    assert.deepEqual(await loadCertificate(dir), tls);
    await Deno.remove(`${dir}/tls.key`);
    await assert.rejects(
      loadCertificate(`${dir}/`),
      /Cannot load TLS key pair from cert ".*\/tls\.crt" and key ".*\/tls\.key"/,
    );
  },
);

Deno.test(
  "server streams decode chunks to the client as the decoder produces them",
  async () => {
    await using h = await createHarness();
    const base = h.listen();
    const response = await postChat(base, {
      prefiller: h.prefillerHeader,
      body: chatBody({ stream: true, max_tokens: 4 }),
      headers: { "x-mock-inter-token-ms": "40" },
    });
    assert.equal(response.status, 200);
    const reader = response.body!.getReader();
    const decode = await h.decode.nextRequest();
    let finishedBeforeFirstChunk = false;
    decode.finished.then(() => finishedBeforeFirstChunk = true);
    const first = await reader.read();
    // The first event reached the client while the decoder was still generating.
    assert.equal(finishedBeforeFirstChunk, false);
    assert.match(decoder.decode(first.value), /"role":"assistant"/);
    let rest = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += decoder.decode(value, { stream: true });
    }
    assert.match(rest, /data: \[DONE\]\n\n$/);
    assert.equal(await decode.finished, "completed");
  },
);

Deno.test(
  "server aborts the decode when the client disconnects mid-stream",
  async () => {
    await using h = await createHarness();
    const base = h.listen();
    const controller = new AbortController();
    const response = await postChat(base, {
      prefiller: h.prefillerHeader,
      body: chatBody({ stream: true }),
      headers: { "x-mock-inter-token-ms": "60000" },
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    await reader.read();
    controller.abort();
    await reader.cancel().catch(() => {});
    const decode = await within(
      h.decode.nextRequest(),
      5000,
      "the decoder never got the request",
    );
    assert.equal(
      await within(
        decode.finished,
        5000,
        "the decode never ended after the client left",
      ),
      "aborted",
    );
  },
);

/** Sends a P/D request, disconnects once `upstream` has it, and waits for the sidecar to close `upstream`. */
async function disconnectWhileWaitingOn(
  upstream: HangingUpstream,
  request: { base: string; prefiller: string },
): Promise<void> {
  const controller = new AbortController();
  const pending = postChat(request.base, {
    prefiller: request.prefiller,
    signal: controller.signal,
  });
  await within(
    upstream.requestSeen,
    5000,
    "the upstream never got the request",
  );
  controller.abort();
  await assert.rejects(pending);
  await within(
    upstream.allClosed(),
    5000,
    "the sidecar never closed the upstream connection after the client left",
  );
}

Deno.test(
  "server closes the prefill connection when the client disconnects before decode",
  async () => {
    await using h = await createHarness();
    await using prefiller = startHangingUpstream();
    await disconnectWhileWaitingOn(prefiller, {
      base: h.listen(),
      prefiller: prefiller.hostPort,
    });
    assert.equal(h.decode.requests.length, 0);
  },
);

Deno.test(
  "server closes the decode connection when the client disconnects before the decoder answers",
  async () => {
    await using decoder = startHangingUpstream();
    await using h = await createHarness({
      config: { modelServerPort: decoder.port },
    });
    await disconnectWhileWaitingOn(decoder, {
      base: h.listen(),
      prefiller: h.prefillerHeader,
    });
    assert.equal(h.prefill.requests.length, 1);
  },
);

Deno.test(
  "server passthrough aborts the upstream stream when the client disconnects",
  async () => {
    await using h = await createHarness();
    const base = h.listen();
    const controller = new AbortController();
    const response = await fetch(`${base}/v1/completions`, {
      method: "POST",
      headers: jsonHeaders({ "x-mock-inter-token-ms": "60000" }),
      body: JSON.stringify({ prompt: "Hi", stream: true }),
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    await reader.read();
    controller.abort();
    await reader.cancel().catch(() => {});
    const decode = await within(
      h.decode.nextRequest(),
      5000,
      "the decoder never got the request",
    );
    assert.equal(
      await within(
        decode.finished,
        5000,
        "the decode never ended after the client left",
      ),
      "aborted",
    );
  },
);

Deno.test(
  "server breaks the client's stream when the decoder's stream breaks, and keeps serving",
  async () => {
    await using h = await createHarness();
    const base = h.listen();
    const response = await postChat(base, {
      prefiller: h.prefillerHeader,
      body: chatBody({ stream: true }),
      headers: { "x-mock-break-after": "2" },
    });
    assert.equal(response.status, 200);
    // A status cannot change once streaming started: the client must see the stream fail, not end cleanly.
    await assert.rejects(response.text());
    assert.equal(await h.decode.requests[0]?.finished, "failed");
    const health = await fetch(`${base}/health`);
    assert.equal(health.status, 200);
    await health.body?.cancel();
  },
);

Deno.test("listenWithFallback listens on IPv4 when the node has no IPv6, but not when the port is taken", () => {
  const log = createLogger({ verbosity: -1, write: () => {} });
  const tried: string[] = [];
  const fake = new Deno.errors.AddrNotAvailable(
    "Address family not supported by protocol",
  );
  const bound = listenWithFallback("::", (hostname) => {
    tried.push(hostname);
    if (hostname === "::") throw fake;
    return hostname;
  }, log);
  assert.equal(bound, "0.0.0.0");
  assert.deepEqual(tried, ["::", "0.0.0.0"]);
  assert.throws(
    () =>
      listenWithFallback("::", () => {
        throw new Deno.errors.AddrInUse("Address already in use");
      }, log),
    Deno.errors.AddrInUse,
  );
});

/** The listen queue length `ss` reports for the listener on `port` (its Send-Q). */
async function listenQueueLength(port: number): Promise<number> {
  const { stdout } = await new Deno.Command("ss", {
    args: ["-ltnH", `sport = :${port}`],
  }).output();
  const fields = decoder.decode(stdout).trim().split(/\s+/);
  return Number(fields[2]);
}

Deno.test("server listens with a queue of 4096 as Go's net/http does, not Deno's 511", async () => {
  await using h = await createHarness();
  for (const tls of [undefined, await generateSelfSignedCertificate()]) {
    const base = h.listen(tls);
    const port = Number(new URL(base).port);
    // The kernel caps the queue at net.core.somaxconn (4096 by default since Linux 5.4).
    const somaxconn = Number(
      decoder.decode(
        (await new Deno.Command("cat", {
          args: ["/proc/sys/net/core/somaxconn"],
        }).output()).stdout,
      ).trim(),
    );
    assert.equal(await listenQueueLength(port), Math.min(4096, somaxconn));
  }
});

Deno.test("upstreamClientOptions hands the upstream clients -connect-timeout and -max-idle-conns-per-host", () => {
  const options = upstreamClientOptions(
    testConfig({ connectTimeout: 1500, maxIdleConnsPerHost: 7 }),
    [],
  );
  assert.equal(options.connectTimeoutMs, 1500);
  assert.equal(options.maxIdlePerHost, 7);
});
