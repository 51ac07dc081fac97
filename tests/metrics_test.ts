import assert from "node:assert/strict";
import {
  createMetrics,
  FAILURE_CAUSES,
  renderAggregate,
  UPSTREAM_ERROR_KINDS,
} from "../src/metrics.ts";
import { CONNECTOR_NAMES, EC_CONNECTOR_NAMES } from "../src/flag_table.ts";
import { createMockVllm } from "../scripts/mock_vllm/mod.ts";
import type { Config } from "../src/config.ts";
import {
  chatBody,
  createHarness,
  type Harness,
  jsonHeaders,
} from "./support/harness.ts";
import {
  closedPort,
  startHangingUpstream,
  startStubUpstream,
} from "./support/stub_upstream.ts";
import { within } from "./support/deadline.ts";
import {
  type Exposition,
  parseExposition,
  scrape,
  total,
} from "./support/prometheus.ts";

const P = "llm_d_sidecar_";

/** Waits for `response`'s stream to break (not end), as a stalled one broken off does. */
async function expectBrokenOff(response: Response): Promise<void> {
  const ended = await within(
    response.text().then(() => "ended", () => "broken"),
    3000,
    "the stalled stream was not broken off",
  );
  assert.equal(ended, "broken");
}

Deno.test("a P/D request counts once by route, connector and outcome, with its prefill and decode observed", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({ metrics });
  const response = await h.pd("/v1/chat/completions", chatBody());
  assert.equal(response.status, 200);
  await response.text();
  const families = await scrape(metrics);
  assertOnly(families, "requests_total", {
    route: "pd",
    connector: "nixlv2",
    outcome: "ok",
  }, 1);
  assert.equal(
    total(families, `${P}prefill_duration_seconds`, {
      connector: "nixlv2",
      outcome: "ok",
    }),
    1,
  );
  assert.equal(total(families, `${P}decode_first_byte_seconds`), 1);
  assert.equal(total(families, `${P}decode_duration_seconds`), 1);
  assert.equal(
    total(families, `${P}time_to_first_byte_seconds`, { route: "pd" }),
    1,
  );
  assert.equal(total(families, `${P}requests_in_flight`), 0);
  assert.equal(total(families, `${P}streams_in_flight`), 0);
});

Deno.test("a passthrough request counts under route passthrough and connector none, with no leg observed", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({ metrics });
  const response = await h.request("/v1/models");
  await response.body?.cancel();
  const families = await scrape(metrics);
  assert.equal(
    total(families, `${P}requests_total`, {
      route: "passthrough",
      connector: "none",
    }),
    1,
  );
  assert.equal(total(families, `${P}prefill_duration_seconds`), 0);
});

Deno.test("a refused prefiller counts as a prefill failure and an upstream error of kind refused, and the request as an error", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({ metrics });
  const response = await h.request("/v1/chat/completions", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-prefiller-host-port": `127.0.0.1:${closedPort()}`,
    },
    body: chatBody(),
  });
  assert.equal(response.status, 502);
  await response.text();
  const families = await scrape(metrics);
  assertLegFailureCounted(families, "prefill", "refused");
  assert.equal(
    total(families, `${P}requests_total`, { route: "pd", outcome: "error" }),
    1,
  );
  assert.equal(
    total(families, `${P}prefill_duration_seconds`, { outcome: "error" }),
    1,
  );
  assert.equal(h.decode.requests.length, 0);
});

Deno.test("a prefill 503 and a prefill 400 count under status_5xx and status_4xx, and only the 503 as an upstream error", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({ metrics });
  for (const status of ["503", "400"]) {
    const response = await h.pd("/v1/chat/completions", chatBody(), {
      "x-return-error": status,
    });
    assert.equal(response.status, Number(status));
    await response.text();
  }
  const families = await scrape(metrics);
  assert.equal(
    total(families, `${P}failures_total`, {
      leg: "prefill",
      cause: "status_5xx",
    }),
    1,
  );
  assert.equal(
    total(families, `${P}failures_total`, {
      leg: "prefill",
      cause: "status_4xx",
    }),
    1,
  );
  assertOnly(families, "upstream_errors_total", {
    leg: "prefill",
    kind: "status_5xx",
  }, 1);
});

Deno.test("a client leaving during prefill counts as a client abort before the response, and its prefill as neither ok nor error", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({
    metrics,
    prefill: { ttftMs: 5000 },
  });
  const controller = new AbortController();
  // The in-process app sees the abort through the request's own signal.
  const sent = h.request("/v1/chat/completions", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-prefiller-host-port": h.prefillerHeader,
    },
    body: chatBody(),
    signal: controller.signal,
  }).catch(() => undefined);
  await h.prefill.nextRequest();
  controller.abort();
  await sent;
  const families = await scrape(metrics);
  assert.equal(
    total(families, `${P}client_aborts_total`, { phase: "before_response" }),
    1,
  );
  assert.equal(
    total(families, `${P}requests_total`, { outcome: "client_aborted" }),
    1,
  );
  assert.equal(total(families, `${P}prefill_duration_seconds`), 0);
  assert.equal(total(families, `${P}failures_total`), 0);
});

Deno.test("a concurrent prefill aborted by its decode's 503 counts the decode failure only, not a prefill error", async () => {
  const metrics = createMetrics();
  await using decoder = startStubUpstream(() =>
    Response.json({ error: { message: "overloaded" } }, { status: 503 })
  );
  await using prefiller = startHangingUpstream();
  await using h = await createHarness({
    metrics,
    config: { connector: "sglang", modelServerPort: decoder.port },
  });
  const response = await within(
    h.pd("/v1/chat/completions", chatBody(), {
      "x-prefiller-host-port": prefiller.hostPort,
    }),
    3000,
    "the decode's answer",
  );
  assert.equal(response.status, 503);
  await response.body?.cancel();
  await within(prefiller.allClosed(), 3000, "the prefill leg to close");
  const families = await scrape(metrics);
  assert.equal(
    total(families, `${P}failures_total`, {
      leg: "decode",
      cause: "status_5xx",
    }),
    1,
  );
  assert.equal(total(families, `${P}failures_total`, { leg: "prefill" }), 0);
  assert.equal(total(families, `${P}prefill_duration_seconds`), 0);
});

Deno.test("retries and fallbacks count by cause for the failure policy to call", async () => {
  const metrics = createMetrics();
  metrics.retry("reset");
  metrics.retry("reset");
  metrics.fallback("timeout");
  const families = await scrape(metrics);
  assert.equal(
    total(families, `${P}prefill_retries_total`, { cause: "reset" }),
    2,
  );
  assert.equal(
    total(families, `${P}prefill_fallbacks_total`, { cause: "timeout" }),
    1,
  );
});

Deno.test("every metric is prefixed snake_case with its unit, and every label value comes from a closed set", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({ metrics });
  await (await h.pd("/v1/chat/completions", chatBody())).text();
  await (await h.request("/some/raw/path?x=1")).body?.cancel();
  const families = await scrape(metrics);
  const closed: Record<string, readonly string[]> = {
    route: ["health", "passthrough", "pd"],
    connector: [...CONNECTOR_NAMES, ...EC_CONNECTOR_NAMES, "none"],
    outcome: ["ok", "error", "client_aborted"],
    leg: ["prefill", "decode"],
    cause: FAILURE_CAUSES,
    kind: UPSTREAM_ERROR_KINDS,
    phase: ["before_response", "during_response"],
  };
  assert.ok(families.types.size >= 12);
  for (const [name, type] of families.types) {
    assert.match(name, /^llm_d_sidecar_[a-z_]+$/);
    if (type === "HISTOGRAM") assert.match(name, /_seconds$/);
    if (type === "COUNTER") assert.match(name, /_total$/);
  }
  for (const series of families.series) {
    for (const [label, value] of Object.entries(series.labels)) {
      if (label === "le") continue;
      const allowed = closed[label];
      assert.ok(allowed, `${series.name}: unexpected label ${label}`);
      assert.ok(allowed.includes(value), `${series.name}: ${label}=${value}`);
    }
  }
});

Deno.test("renderAggregate sums the snapshots of several threads' registries", async () => {
  const threads = [createMetrics(), createMetrics()];
  for (const metrics of threads) {
    metrics.requestStarted();
    metrics.requestEnded({
      route: "pd",
      connector: "nixlv2",
      outcome: "ok",
      seconds: 0.2,
    });
  }
  threads[0]?.prefill("nixlv2", true, 0.05);
  const families = parseExposition(
    await renderAggregate(
      await Promise.all(threads.map((metrics) => metrics.snapshot())),
    ),
  );
  assert.equal(total(families, `${P}requests_total`, { route: "pd" }), 2);
  assert.equal(total(families, `${P}request_duration_seconds`), 2);
  assert.equal(total(families, `${P}prefill_duration_seconds`), 1);
  assert.equal(total(families, `${P}requests_in_flight`), 0);
});

Deno.test("a client leaving mid-stream counts as an abort during the response, and the stream leaves the in-flight gauges", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({ metrics, config: { verbosity: 0 } });
  const base = h.listen();
  const controller = new AbortController();
  const response = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-prefiller-host-port": h.prefillerHeader,
      "x-request-id": "left",
      "x-mock-inter-token-ms": "60000",
    },
    body: chatBody({ stream: true }),
    signal: controller.signal,
  });
  const reader = response.body!.getReader();
  await reader.read();
  const during = await scrape(metrics);
  assert.equal(total(during, `${P}streams_in_flight`), 1);
  assert.equal(total(during, `${P}requests_in_flight`), 1);
  controller.abort();
  await reader.cancel().catch(() => {});
  // The access line is written after the request's metrics are recorded.
  await h.accessLine("left");
  const after = await scrape(metrics);
  assert.equal(
    total(after, `${P}client_aborts_total`, { phase: "during_response" }),
    1,
  );
  assert.equal(total(after, `${P}streams_in_flight`), 0);
  assert.equal(total(after, `${P}requests_in_flight`), 0);
  assert.equal(
    total(after, `${P}requests_total`, { outcome: "client_aborted" }),
    1,
  );
});

Deno.test("a retried prefill counts one retry by cause, and its access line says how many", async () => {
  await using failing = await createMockVllm({
    name: "failing",
    failureRate: 1,
    failureStatus: 503,
  });
  const metrics = createMetrics();
  await using h = await createHarness({
    metrics,
    config: { prefillMaxRetries: 1, prefillRetryBackoff: 10, verbosity: 0 },
  });
  const response = await h.request("/v1/chat/completions", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-request-id": "retried",
      "x-prefiller-host-port":
        `127.0.0.1:${failing.port}, ${h.prefillerHeader}`,
    },
    body: chatBody(),
  });
  assert.equal(response.status, 200);
  await response.text();
  const families = await scrape(metrics);
  assert.equal(
    total(families, `${P}prefill_retries_total`, { cause: "status_5xx" }),
    1,
  );
  assert.equal(total(families, `${P}failures_total`), 0);
  assert.equal(
    total(families, `${P}requests_total`, { route: "pd", outcome: "ok" }),
    1,
  );
  const line = await h.accessLine("retried");
  assert.equal(line.retries, 1);
});

Deno.test("a prefill that falls back to decode counts a fallback by cause, and its access line says so", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({
    metrics,
    config: { prefillFailurePolicy: "decode", verbosity: 0 },
  });
  const response = await h.request("/v1/chat/completions", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-request-id": "fell-back",
      "x-prefiller-host-port": `127.0.0.1:${closedPort()}`,
    },
    body: chatBody(),
  });
  assert.equal(response.status, 200);
  await response.text();
  const families = await scrape(metrics);
  assert.equal(
    total(families, `${P}prefill_fallbacks_total`, { cause: "refused" }),
    1,
  );
  assert.equal(
    total(families, `${P}failures_total`, { leg: "prefill", cause: "refused" }),
    1,
  );
  assert.equal(total(families, `${P}decode_first_byte_seconds`), 1);
  const line = await h.accessLine("fell-back");
  assert.equal(line.fallback, "decode");
  assert.equal(line.fallback_cause, "prefill_unreachable");
});

Deno.test("a prefill answered 503 twice, then 200, counts two upstream errors and two retries but no failure", async () => {
  // Retries move to the next prefiller named, so two failing mocks come first.
  await using first = await createMockVllm({
    name: "failing-1",
    failureRate: 1,
    failureStatus: 503,
  });
  await using second = await createMockVllm({
    name: "failing-2",
    failureRate: 1,
    failureStatus: 503,
  });
  const metrics = createMetrics();
  await using h = await createHarness({
    metrics,
    config: { prefillMaxRetries: 2, prefillRetryBackoff: 10, verbosity: 0 },
  });
  const response = await h.request("/v1/chat/completions", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-prefiller-host-port":
        `127.0.0.1:${first.port}, 127.0.0.1:${second.port}, ${h.prefillerHeader}`,
    },
    body: chatBody(),
  });
  assert.equal(response.status, 200);
  await response.text();
  assert.equal(first.requests.length + second.requests.length, 2);
  assert.equal(h.prefill.requests.length, 1);
  const families = await scrape(metrics);
  assertOnly(families, "upstream_errors_total", {
    leg: "prefill",
    kind: "status_5xx",
  }, 2);
  assert.equal(total(families, `${P}failures_total`), 0);
  assert.equal(
    total(families, `${P}prefill_retries_total`, { cause: "status_5xx" }),
    2,
  );
  assert.equal(
    total(families, `${P}requests_total`, { route: "pd", outcome: "ok" }),
    1,
  );
});

Deno.test("a prefill answered 503 on every attempt counts each attempt as an upstream error and the leg once as a failure", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({
    metrics,
    config: { prefillMaxRetries: 2, prefillRetryBackoff: 10, verbosity: 0 },
    prefill: { failureRate: 1, failureStatus: 503 },
  });
  const response = await h.pd("/v1/chat/completions", chatBody());
  assert.equal(response.status, 503);
  await response.text();
  assert.equal(h.prefill.requests.length, 3);
  const families = await scrape(metrics);
  assertOnly(families, "upstream_errors_total", {
    leg: "prefill",
    kind: "status_5xx",
  }, 3);
  assertOnly(families, "failures_total", {
    leg: "prefill",
    cause: "status_5xx",
  }, 1);
  assert.equal(total(families, `${P}prefill_retries_total`), 2);
});

/** `count` samples of `metric` with `labels`, and none with other labels. */
function assertOnly(
  families: Exposition,
  metric: string,
  labels: Record<string, string>,
  count: number,
): void {
  assert.equal(total(families, `${P}${metric}`, labels), count);
  assert.equal(total(families, `${P}${metric}`), count);
}

/** One failure of `leg` by `cause` and one upstream error of the same kind, others aside. */
function assertLegFailureCounted(
  families: Exposition,
  leg: "prefill" | "decode",
  cause: string,
): void {
  assert.equal(total(families, `${P}failures_total`, { leg, cause }), 1);
  assert.equal(
    total(families, `${P}upstream_errors_total`, { leg, kind: cause }),
    1,
  );
}

/**
 * One failure of `leg` by `cause` and one upstream error of the same kind,
 * and no other of either.
 */
function assertOneLegFailure(
  families: Exposition,
  leg: "prefill" | "decode",
  cause: string,
): void {
  assertOnly(families, "failures_total", { leg, cause }, 1);
  assertOnly(families, "upstream_errors_total", { leg, kind: cause }, 1);
}

Deno.test("a decoder that never sends its first byte counts once as a decode failure and upstream error of kind timeout", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({
    metrics,
    config: { decodeFirstByteTimeout: 300, verbosity: 0 },
    // The decoder waits for the KV transfer, as one whose KV never arrives.
    decode: { kvTransferMs: 10_000 },
  });
  const response = await h.pd(
    "/v1/chat/completions",
    chatBody({ stream: true }),
  );
  assert.equal(response.status, 504);
  await response.text();
  assertOneLegFailure(await scrape(metrics), "decode", "timeout");
});

Deno.test("a decoder that stalls mid-stream counts once as a decode failure and upstream error of kind timeout", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({
    metrics,
    config: { streamIdleTimeout: 300, verbosity: 0 },
    decode: { interTokenMs: 10_000 },
  });
  const response = await h.pd(
    "/v1/chat/completions",
    chatBody({ stream: true }),
  );
  assert.equal(response.status, 200);
  await expectBrokenOff(response);
  assertOneLegFailure(await scrape(metrics), "decode", "timeout");
});

/** One way into a P/D decode leg, and the request that takes it. */
interface DecodePath {
  readonly name: string;
  readonly config: Partial<Config>;
  request(h: Harness, encoder: string): Promise<Response>;
}

const DECODE_PATHS: readonly DecodePath[] = [
  {
    name: "the connector's decode leg",
    config: {},
    request: (h) => h.pd("/v1/chat/completions", chatBody()),
  },
  {
    name: "the decode-only fallback",
    config: { prefillFailurePolicy: "decode" },
    request: (h) =>
      h.request("/v1/chat/completions", {
        method: "POST",
        headers: jsonHeaders({
          "x-prefiller-host-port": `127.0.0.1:${closedPort()}`,
        }),
        body: chatBody(),
      }),
  },
  {
    name: "a decode pulling from a KV source",
    config: { connector: "offloading" },
    request: (h) =>
      h.request("/v1/chat/completions", {
        method: "POST",
        headers: jsonHeaders({
          "x-kv-cache-source-host-port": h.prefillerHeader,
        }),
        body: chatBody(),
      }),
  },
  {
    name: "an encoded request without prefiller",
    config: { ecConnector: "ec-example" },
    request: (h, encoder) =>
      h.request("/v1/chat/completions", {
        method: "POST",
        headers: jsonHeaders({ "x-encoder-hosts-ports": encoder }),
        body: JSON.stringify({
          model: "Qwen/Qwen3-0.6B",
          messages: [{
            role: "user",
            content: [{ type: "text", text: "Describe" }, {
              type: "image_url",
              "image_url": { url: "https://x/a.png" },
            }],
          }],
          max_tokens: 8,
        }),
      }),
  },
];

for (const path of DECODE_PATHS) {
  Deno.test(`a decoder answering 503 on ${path.name} counts one decode failure and one decode upstream error`, async () => {
    const metrics = createMetrics();
    await using encoder = startStubUpstream(() => Response.json({}));
    await using h = await createHarness({
      metrics,
      config: { ...path.config, verbosity: 0 },
      decode: { failureRate: 1, failureStatus: 503 },
    });
    const response = await path.request(h, encoder.hostPort);
    assert.equal(response.status, 503);
    await response.text();
    assert.equal(h.decode.requests.length, 1);
    const families = await scrape(metrics);
    assert.equal(
      total(families, `${P}failures_total`, {
        leg: "decode",
        cause: "status_5xx",
      }),
      1,
    );
    assert.equal(total(families, `${P}failures_total`, { leg: "decode" }), 1);
    assert.equal(
      total(families, `${P}upstream_errors_total`, {
        leg: "decode",
        kind: "status_5xx",
      }),
      1,
    );
    assert.equal(
      total(families, `${P}upstream_errors_total`, { leg: "decode" }),
      1,
    );
  });
}

Deno.test("a refused decoder on the decode-only fallback counts one decode failure and one decode upstream error of kind refused", async () => {
  const metrics = createMetrics();
  await using h = await createHarness({
    metrics,
    config: {
      prefillFailurePolicy: "decode",
      modelServerPort: closedPort(),
      verbosity: 0,
    },
  });
  const response = await h.request("/v1/chat/completions", {
    method: "POST",
    headers: jsonHeaders({
      "x-prefiller-host-port": `127.0.0.1:${closedPort()}`,
    }),
    body: chatBody(),
  });
  assert.equal(response.status, 503);
  await response.text();
  const families = await scrape(metrics);
  assertLegFailureCounted(families, "decode", "refused");
});

Deno.test("a prefill 200 without a JSON object counts one prefill failure and one upstream error of kind bad_answer", async () => {
  const metrics = createMetrics();
  await using prefiller = startStubUpstream(() => new Response("not json"));
  await using h = await createHarness({ metrics, config: { verbosity: 0 } });
  const response = await h.request("/v1/chat/completions", {
    method: "POST",
    headers: jsonHeaders({ "x-prefiller-host-port": prefiller.hostPort }),
    body: chatBody(),
  });
  assert.equal(response.status, 502);
  await response.text();
  assert.equal(h.decode.requests.length, 0);
  const families = await scrape(metrics);
  assertOneLegFailure(families, "prefill", "bad_answer");
});

Deno.test("a prefill 3xx counts as a prefill failure and upstream error of kind status_3xx, not as a 5xx", async () => {
  const metrics = createMetrics();
  await using prefiller = startStubUpstream(() =>
    new Response(null, {
      status: 307,
      headers: { location: "http://127.0.0.1:1/elsewhere" },
    })
  );
  await using h = await createHarness({ metrics, config: { verbosity: 0 } });
  const response = await h.request("/v1/chat/completions", {
    method: "POST",
    headers: jsonHeaders({ "x-prefiller-host-port": prefiller.hostPort }),
    body: chatBody(),
  });
  assert.equal(response.status, 502);
  await response.text();
  const families = await scrape(metrics);
  assertOneLegFailure(families, "prefill", "status_3xx");
});

for (const route of ["pd", "passthrough"] as const) {
  Deno.test(`a ${route} stream that -stream-idle-timeout breaks off counts as an error, and its access line names the code`, async () => {
    const metrics = createMetrics();
    await using h = await createHarness({
      metrics,
      config: { streamIdleTimeout: 300, verbosity: 0 },
      decode: { interTokenMs: 10_000 },
    });
    const headers: Record<string, string> = route === "pd"
      ? { "x-prefiller-host-port": h.prefillerHeader }
      : {};
    // Over HTTP: the access line waits for the stream's end only when served.
    const response = await fetch(`${h.listen()}/v1/chat/completions`, {
      method: "POST",
      headers: jsonHeaders({ ...headers, "x-request-id": "stalled" }),
      body: chatBody({ stream: true }),
    });
    assert.equal(response.status, 200);
    await expectBrokenOff(response);
    const line = await h.accessLine("stalled");
    assert.equal(line.outcome, "error");
    assert.equal(line.error_code, "stream_idle_timeout");
    assertOnly(await scrape(metrics), "requests_total", {
      route,
      connector: route === "pd" ? "nixlv2" : "none",
      outcome: "error",
    }, 1);
  });
}
