/**
 * @module
 * The benchmark's purpose-built load client, run as its own process. A generic
 * load generator cannot chain two requests, so the "prefill direct + decode
 * direct" baseline is measured here (`--mode chain`: a prefill POST, its
 * `kv_transfer_params` read, then the decode POST), and the sidecar is
 * measured with the same client (`--mode single`) so the two compare like for
 * like. `--connections` loops run back to back for `--warmup-s` then
 * `--duration-s`; only requests that start and end inside the measured window
 * count. Prints one JSON object (`ClientResult`) on stdout.
 */

import { parseArgs } from "node:util";
import { createAgent, parseHeaderArgs, post } from "./http1.ts";
import { Samples, summarize, type Summary } from "./stats.ts";

/** What the client measured. */
export interface ClientResult {
  readonly requests: number;
  readonly durationS: number;
  readonly rps: number;
  readonly latencyMs: Summary;
  readonly errors: number;
  readonly non2xx: number;
  readonly firstError?: string;
}

/** What one run does. */
export interface ClientPlan {
  readonly mode: "single" | "chain";
  /** Target of single mode; the decoder in chain mode. */
  readonly url: URL;
  /** The prefiller, in chain mode. */
  readonly prefillUrl?: URL | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly connections: number;
  readonly warmupS: number;
  readonly durationS: number;
}

const JSON_HEADERS = { "content-type": "application/json" };

/** `kv_transfer_params` of a prefill request: the NIXL ask to keep the KV for a remote decode. */
export const PREFILL_KV_TRANSFER_PARAMS = {
  do_remote_decode: true,
  do_remote_prefill: false,
  remote_engine_id: null,
  remote_block_ids: null,
  remote_host: null,
  remote_port: null,
} as const;

/** Body of the prefill leg, as the sidecar's nixlv2 connector builds it. */
export function buildPrefillBody(body: string): string {
  // vLLM rejects stream_options unless stream is true (the sidecar drops it too).
  const { stream_options: _dropped, ...parsed } = JSON.parse(body) as Record<
    string,
    unknown
  >;
  return JSON.stringify({
    ...parsed,
    stream: false,
    max_tokens: 1,
    max_completion_tokens: 1,
    min_tokens: 1,
    kv_transfer_params: PREFILL_KV_TRANSFER_PARAMS,
  });
}

/** Body of the decode leg: the client's body plus the prefiller's `kv_transfer_params`. */
export function buildDecodeBody(body: string, prefillReply: string): string {
  const reply = JSON.parse(prefillReply) as Record<string, unknown>;
  const params = JSON.stringify(reply.kv_transfer_params ?? null);
  return `${
    body.slice(0, body.lastIndexOf("}"))
  },"kv_transfer_params":${params}}`;
}

/** Runs `plan` and measures it. */
export async function runClient(plan: ClientPlan): Promise<ClientResult> {
  const agent = createAgent();
  const prefillBody = buildPrefillBody(plan.body);
  const headers = { ...JSON_HEADERS, ...plan.headers };
  const samples = new Samples();
  let errors = 0;
  let non2xx = 0;
  let firstError: string | undefined;
  const windowStart = performance.now() + plan.warmupS * 1000;
  const windowEnd = windowStart + plan.durationS * 1000;

  async function iteration(): Promise<number> {
    if (plan.mode === "single") {
      return (await post(plan.url, plan.body, {
        agent,
        headers,
        keepBody: false,
      })).status;
    }
    const prefill = await post(plan.prefillUrl as URL, prefillBody, {
      agent,
      headers,
      keepBody: true,
    });
    if (prefill.status < 200 || prefill.status >= 300) return prefill.status;
    const decodeBody = buildDecodeBody(plan.body, prefill.text);
    return (await post(plan.url, decodeBody, {
      agent,
      headers,
      keepBody: false,
    })).status;
  }

  async function loop(): Promise<void> {
    while (performance.now() < windowEnd) {
      const started = performance.now();
      let status = 0;
      try {
        status = await iteration();
      } catch (error) {
        errors++;
        firstError ??= String(error);
        // A refused connection fails at once; do not spin.
        await new Promise((resolve) => setTimeout(resolve, 10));
        continue;
      }
      const ended = performance.now();
      if (started < windowStart || ended > windowEnd) continue;
      if (status < 200 || status >= 300) non2xx++;
      samples.push(ended - started);
    }
  }

  await Promise.all(Array.from({ length: plan.connections }, loop));
  agent.destroy();
  const latencyMs = summarize(samples.values());
  return {
    requests: latencyMs.count,
    durationS: plan.durationS,
    rps: latencyMs.count / plan.durationS,
    latencyMs,
    errors,
    non2xx,
    ...(firstError === undefined ? {} : { firstError }),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      mode: { type: "string", default: "single" },
      url: { type: "string" },
      "prefill-url": { type: "string" },
      header: { type: "string", multiple: true, default: [] },
      body: { type: "string" },
      connections: { type: "string", default: "1" },
      "warmup-s": { type: "string", default: "1" },
      "duration-s": { type: "string", default: "5" },
    },
  });
  const plan: ClientPlan = {
    mode: values.mode === "chain" ? "chain" : "single",
    url: new URL(values.url ?? ""),
    prefillUrl: values["prefill-url"] === undefined
      ? undefined
      : new URL(values["prefill-url"]),
    headers: parseHeaderArgs(values.header),
    body: values.body ?? "{}",
    connections: Number(values.connections),
    warmupS: Number(values["warmup-s"]),
    durationS: Number(values["duration-s"]),
  };
  // Bounded even if an upstream stalls: give up well after the window.
  const guard = setTimeout(
    () => Deno.exit(3),
    (plan.warmupS + plan.durationS + 30) * 1000,
  );
  const result = await runClient(plan);
  clearTimeout(guard);
  Deno.stdout.writeSync(
    new TextEncoder().encode(`${JSON.stringify(result)}\n`),
  );
  Deno.exit(0);
}
