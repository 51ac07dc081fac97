import assert from "node:assert/strict";
import { createMockVllm } from "../scripts/mock_vllm/mod.ts";
import { createWaiters } from "./support/deadline.ts";
import { chatBody, jsonHeaders, postChatOverHttp } from "./support/harness.ts";
import { startPlainBundle } from "./support/process.ts";
import { closedPort } from "./support/stub_upstream.ts";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN_ID = "b7ad6b7169203331";

/** A span as OTLP/HTTP JSON carries it. */
interface ReceivedSpan {
  readonly name: string;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly scope: string;
  readonly attributes: Readonly<Record<string, unknown>>;
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
}

function objectsOf(value: unknown, key: string): Record<string, unknown>[] {
  if (typeof value !== "object" || value === null) return [];
  const list: unknown = (value as Record<string, unknown>)[key];
  return Array.isArray(list)
    ? list.filter((item): item is Record<string, unknown> =>
      typeof item === "object" && item !== null
    )
    : [];
}

function attributeValue(value: unknown): unknown {
  const values = Object.values(value as Record<string, unknown>);
  return values[0];
}

/** The spans of one OTLP/HTTP JSON export request. */
function spansOf(body: unknown): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resource of objectsOf(body, "resourceSpans")) {
    for (const scoped of objectsOf(resource, "scopeSpans")) {
      const scope = String(objectsOf({ s: [scoped.scope] }, "s")[0]?.name);
      for (const span of objectsOf(scoped, "spans")) {
        const attributes: Record<string, unknown> = {};
        for (const attribute of objectsOf(span, "attributes")) {
          attributes[String(attribute.key)] = attributeValue(attribute.value);
        }
        spans.push({
          name: String(span.name),
          traceId: String(span.traceId),
          spanId: String(span.spanId),
          parentSpanId: String(span.parentSpanId ?? ""),
          scope,
          attributes,
          statusCode: Number(
            objectsOf({ s: [span.status] }, "s")[0]?.code ?? 0,
          ),
        });
      }
    }
  }
  return spans;
}

/** A local OTLP/HTTP receiver recording every span it is sent. */
function startReceiver() {
  const spans: ReceivedSpan[] = [];
  const received = createWaiters();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const body: unknown = await request.json().catch(() => undefined);
      if (new URL(request.url).pathname === "/v1/traces") {
        spans.push(...spansOf(body));
        received.notify();
      }
      return Response.json({});
    },
  );
  /** Resolves once `predicate` holds for the spans received so far. */
  const waitFor = (
    predicate: (spans: readonly ReceivedSpan[]) => boolean,
    what: string,
  ) =>
    received.until(() => predicate(spans), what, {
      ms: 10_000,
      detail: () => `got ${JSON.stringify(spans)}`,
    });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    spans,
    waitFor,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/**
 * The sidecar bundle with `-tracing` and `flags`, exporting its spans to
 * `receiverUrl` (OTLP over HTTP/JSON, batches every 50 ms), once it listens.
 */
async function startTracedBundle(
  decodePort: number,
  receiverUrl: string,
  flags: string[] = [],
) {
  const sidecar = startPlainBundle(decodePort, ["-tracing", ...flags], {
    env: {
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl,
      OTEL_BSP_SCHEDULE_DELAY: "50",
      OTEL_SERVICE_NAME: "llm-d-disagg-sidecar",
    },
  });
  try {
    await sidecar.waitForLine((line) => line.msg === "starting");
  } catch (error) {
    await sidecar[Symbol.asyncDispose]();
    throw error;
  }
  return sidecar;
}

/** The one `traceparent` a leg carried, split into its fields. */
function traceparentOf(headers: Headers): { traceId: string; parent: string } {
  const value = headers.get("traceparent") ?? "";
  assert.doesNotMatch(value, /,/, `one traceparent, got "${value}"`);
  const [version, traceId, parent, flags] = value.split("-");
  assert.equal(version, "00");
  assert.equal(flags, "01");
  return { traceId: traceId ?? "", parent: parent ?? "" };
}

Deno.test(
  "with -tracing and OTEL_DENO=true, each leg carries a child of its own span in the client's trace, and the spans reach the OTLP receiver",
  async () => {
    await using receiver = startReceiver();
    await using prefill = await createMockVllm({ name: "prefiller" });
    await using decode = await createMockVllm({ name: "decoder" });
    await using sidecar = await startTracedBundle(decode.port, receiver.url);
    const response = await postChatOverHttp(
      sidecar.base,
      chatBody({ stream: true }),
      jsonHeaders({
        "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
        traceparent: `00-${TRACE_ID}-${CLIENT_SPAN_ID}-01`,
      }),
    );
    assert.equal(response.status, 200);
    await response.text();
    const prefillLeg = traceparentOf(
      prefill.requests[0]?.headers ?? new Headers(),
    );
    const decodeLeg = traceparentOf(
      decode.requests[0]?.headers ?? new Headers(),
    );
    assert.equal(prefillLeg.traceId, TRACE_ID);
    assert.equal(decodeLeg.traceId, TRACE_ID);
    assert.notEqual(prefillLeg.parent, CLIENT_SPAN_ID);
    assert.notEqual(decodeLeg.parent, prefillLeg.parent);
    const named = (name: string) =>
      receiver.spans.find((span) =>
        span.name === name && span.traceId === TRACE_ID
      );
    await receiver.waitFor(
      () =>
        ["forward_request", "prefill", "decode"].every((name) => named(name)) &&
        receiver.spans.some((span) => span.parentSpanId === CLIENT_SPAN_ID) &&
        receiver.spans.some((span) => span.spanId === prefillLeg.parent) &&
        receiver.spans.some((span) => span.spanId === decodeLeg.parent),
      "the sidecar's spans and the legs' parents",
    );
    const request = named("forward_request");
    const prefillSpan = named("prefill");
    const decodeSpan = named("decode");
    assert.equal(request?.scope, "llm-d-router/pkg/sidecar/proxy");
    // The runtime's server span continues the client's; forward_request is its child.
    const server = receiver.spans.find((span) =>
      span.spanId === request?.parentSpanId
    );
    assert.equal(server?.parentSpanId, CLIENT_SPAN_ID);
    assert.equal(prefillSpan?.parentSpanId, request?.spanId);
    assert.equal(decodeSpan?.parentSpanId, request?.spanId);
    assert.equal(request?.attributes["llm_d.pd_proxy.connector"], "nixlv2");
    assert.equal(
      request?.attributes["llm_d.pd_proxy.prefill_target"],
      `127.0.0.1:${prefill.port}`,
    );
    assert.equal(request?.attributes["llm_d.openai.api"], "chat_completions");
    // Each leg's traceparent names the runtime's client span, a child of the leg's span.
    const prefillClient = receiver.spans.find((span) =>
      span.spanId === prefillLeg.parent
    );
    const decodeClient = receiver.spans.find((span) =>
      span.spanId === decodeLeg.parent
    );
    assert.equal(prefillClient?.parentSpanId, prefillSpan?.spanId);
    assert.equal(decodeClient?.parentSpanId, decodeSpan?.spanId);
  },
);

Deno.test(
  "without OTEL_DENO the client's traceparent reaches both legs unchanged, and -tracing warns that nothing exports",
  async () => {
    await using prefill = await createMockVllm({ name: "prefiller" });
    await using decode = await createMockVllm({ name: "decoder" });
    const traceparent = `00-${TRACE_ID}-${CLIENT_SPAN_ID}-01`;
    await using sidecar = startPlainBundle(decode.port, ["-tracing"], {
      env: { OTEL_DENO: "false" },
    });
    await sidecar.waitForLine((line) =>
      line.level === "warn" && /OTEL_DENO=true/.test(String(line.msg))
    );
    await sidecar.waitForLine((line) => line.msg === "starting");
    const response = await postChatOverHttp(
      sidecar.base,
      chatBody(),
      jsonHeaders({
        "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
        traceparent,
      }),
    );
    assert.equal(response.status, 200);
    await response.text();
    assert.equal(prefill.requests[0]?.headers.get("traceparent"), traceparent);
    assert.equal(decode.requests[0]?.headers.get("traceparent"), traceparent);
  },
);

Deno.test(
  "with the runtime tracing, the client's tracestate reaches both legs unchanged beside the child's traceparent",
  async () => {
    await using prefill = await createMockVllm({ name: "prefiller" });
    await using decode = await createMockVllm({ name: "decoder" });
    // No collector listens: export fails quietly, requests are unaffected.
    await using sidecar = startPlainBundle(decode.port, ["-tracing"], {
      env: {
        OTEL_DENO: "true",
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${closedPort()}`,
      },
    });
    await sidecar.waitForLine((line) => line.msg === "starting");
    const tracestate = "vendor1=opaque1,vendor2=opaque2";
    const response = await postChatOverHttp(
      sidecar.base,
      chatBody(),
      jsonHeaders({
        "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
        traceparent: `00-${TRACE_ID}-${CLIENT_SPAN_ID}-01`,
        tracestate,
      }),
    );
    assert.equal(response.status, 200);
    await response.text();
    for (const leg of [prefill, decode]) {
      const headers = leg.requests[0]?.headers ?? new Headers();
      assert.equal(traceparentOf(headers).traceId, TRACE_ID);
      assert.notEqual(traceparentOf(headers).parent, CLIENT_SPAN_ID);
      assert.equal(headers.get("tracestate"), tracestate);
    }
  },
);

Deno.test(
  "a P/D stream that -stream-idle-timeout breaks off ends its forward_request and decode spans failed",
  async () => {
    await using receiver = startReceiver();
    await using prefill = await createMockVllm({ name: "prefiller" });
    await using decode = await createMockVllm({ name: "decoder" });
    await using sidecar = await startTracedBundle(decode.port, receiver.url, [
      "-stream-idle-timeout=200ms",
    ]);
    const response = await postChatOverHttp(
      sidecar.base,
      chatBody({ stream: true, max_tokens: 3 }),
      jsonHeaders({
        "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
        "x-mock-inter-token-ms": "5000",
        traceparent: `00-${TRACE_ID}-${CLIENT_SPAN_ID}-01`,
      }),
    );
    assert.equal(response.status, 200);
    await assert.rejects(response.text());
    const named = (name: string) =>
      receiver.spans.find((span) =>
        span.name === name && span.traceId === TRACE_ID
      );
    await receiver.waitFor(
      () => ["forward_request", "decode"].every((name) => named(name)),
      "the forward_request and decode spans",
    );
    assert.equal(named("forward_request")?.statusCode, 2);
    assert.equal(named("decode")?.statusCode, 2);
  },
);

Deno.test(
  "a Responses request sent to the decoder alone (background) says so on its forward_request span: no disaggregation",
  async () => {
    await using receiver = startReceiver();
    await using prefill = await createMockVllm({ name: "prefiller" });
    await using decode = await createMockVllm({ name: "decoder" });
    await using sidecar = await startTracedBundle(decode.port, receiver.url);
    const response = await fetch(`${sidecar.base}/v1/responses`, {
      method: "POST",
      headers: jsonHeaders({
        "x-prefiller-host-port": `127.0.0.1:${prefill.port}`,
        traceparent: `00-${TRACE_ID}-${CLIENT_SPAN_ID}-01`,
      }),
      body: JSON.stringify({
        model: "Qwen/Qwen3-0.6B",
        input: "Hello",
        background: true,
      }),
    });
    assert.equal(response.status, 200);
    await response.text();
    assert.equal(prefill.requests.length, 0);
    await receiver.waitFor(
      () =>
        receiver.spans.some((span) =>
          span.name === "forward_request" && span.traceId === TRACE_ID
        ),
      "the forward_request span",
    );
    const request = receiver.spans.find((span) =>
      span.name === "forward_request" && span.traceId === TRACE_ID
    );
    assert.equal(
      request?.attributes["llm_d.pd_proxy.disaggregation_used"],
      false,
    );
  },
);
