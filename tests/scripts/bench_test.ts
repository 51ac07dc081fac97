import assert from "node:assert/strict";
import { buildWrkScript } from "../../scripts/bench/load_tool.ts";
import { buildNginxConfig } from "../../scripts/bench/nginx.ts";
import {
  buildDecodeBody,
  buildPrefillBody,
} from "../../scripts/bench/pd_client.ts";
import {
  computeRatios,
  formatReport,
  judgeTargets,
  medianRoundByP99,
  type ThroughputRow,
} from "../../scripts/bench/report.ts";
import { SIDECAR_V8_FLAGS } from "../../scripts/build.ts";
import { sidecarCommand } from "../../scripts/bench/processes.ts";
import { quantile, summarize } from "../../scripts/bench/stats.ts";
import type { StreamResult } from "../../scripts/bench/stream_client.ts";

function streamResult(...delays: number[]): StreamResult {
  return {
    streams: 1,
    completed: 1,
    failed: 0,
    events: delays.length,
    delayMs: summarize(delays),
    gapMs: summarize([1]),
    firstEventMs: summarize([1]),
    wallS: 1,
  };
}

function row(
  scenario: ThroughputRow["scenario"],
  connections: number,
  rps: number,
  p50: number,
): ThroughputRow {
  return {
    scenario,
    tool: "wrk",
    connections,
    requests: rps,
    rps,
    p50,
    p90: p50,
    p99: p50,
    errors: 0,
    non2xx: 0,
  };
}

Deno.test("bench wrk script posts the body and headers and reports JSON from done()", () => {
  const script = buildWrkScript({
    url: "http://127.0.0.1:1/v1/chat/completions",
    headers: { "x-prefiller-host-port": "127.0.0.1:2" },
    body: '{"a":"quote \\" and \\\\ slash"}',
    connections: 1,
    durationS: 1,
  });
  assert.match(script, /wrk\.method = "POST"/);
  assert.match(
    script,
    /wrk\.body = "\{\\"a\\":\\"quote \\\\\\" and \\\\\\\\ slash\\"\}"/,
  );
  assert.match(
    script,
    /wrk\.headers\["x-prefiller-host-port"\] = "127\.0\.0\.1:2"/,
  );
  assert.match(script, /function done\(summary, latency, requests\)/);
});

Deno.test("bench nginx config listens on loopback only and streams both ways", () => {
  const config = buildNginxConfig({
    prefix: "/tmp/x",
    port: 1234,
    upstreamPort: 5678,
    workers: "1",
  });
  assert.match(config, /listen 127\.0\.0\.1:1234;/);
  assert.match(config, /server 127\.0\.0\.1:5678;/);
  assert.match(config, /daemon off;/);
  assert.match(config, /proxy_buffering off;/);
  assert.match(config, /proxy_request_buffering off;/);
});

Deno.test("bench chain client builds the prefill and decode legs as the sidecar does", () => {
  const body =
    '{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":9}';
  const prefill = JSON.parse(buildPrefillBody(body));
  assert.equal(prefill.stream, false);
  assert.equal(prefill.max_tokens, 1);
  assert.equal(prefill.stream_options, undefined);
  assert.equal(prefill.kv_transfer_params.do_remote_decode, true);
  const decode = JSON.parse(
    buildDecodeBody(body, '{"kv_transfer_params":{"remote_block_ids":[1]}}'),
  );
  assert.deepEqual(decode.kv_transfer_params, { remote_block_ids: [1] });
  assert.equal(decode.max_tokens, 9);
});

Deno.test("bench ratios and targets are computed from the rows of one run", () => {
  const rows = [
    row("direct", 1, 10_000, 0.1),
    row("passthrough", 1, 5_000, 0.2),
    row("chain_baseline", 1, 4_000, 0.25),
    row("pd_same_client", 1, 2_000, 0.6),
    row("nginx", 32, 40_000, 0.5),
    row("passthrough", 32, 24_000, 1),
    row("pd", 32, 12_000, 2),
  ];
  const ratios = computeRatios(rows, { concurrencies: [1, 32] });
  assert.equal(ratios.passthrough_vs_nginx_rps_c32, 0.6);
  assert.equal(ratios.pd_vs_own_passthrough_rps_c32, 0.5);
  assert.equal(ratios.pd_vs_nginx_passthrough_rps_c32, 0.3);
  assert.ok(
    Math.abs((ratios.passthrough_minus_direct_p50_ms_c1 ?? 0) - 0.1) < 1e-9,
  );
  assert.equal(ratios.passthrough_vs_nginx_rps_c1, null);
  const targets = judgeTargets(ratios, {
    streamDelayP99Ms: 0.5,
    peakRssMiB: null,
  });
  const verdict = (prefix: string) =>
    targets.find((t) => t.name.startsWith(prefix))?.pass;
  assert.equal(verdict("passthrough >= 0.5x nginx throughput (c=32)"), true);
  assert.equal(verdict("passthrough >= 0.5x nginx throughput (c=256)"), null);
  assert.equal(verdict("P/D c=32 >= 0.6x own passthrough"), false);
  assert.equal(verdict("P/D p50"), false);
  assert.equal(verdict("streaming"), true);
  assert.equal(verdict("sidecar peak RSS"), null);
});

Deno.test("bench streaming ratios subtract the direct floor from nginx and the sidecar", () => {
  // Two delays each: the nearest-rank p50 is the first, the p99 the second.
  const stream = (p50: number, p99: number) => streamResult(p50, p99);
  const settings = { streams: 10, chunks: 10, intervalMs: 50, rampMs: 1 };
  const withNginx = computeRatios([], {
    concurrencies: [32],
    streaming: {
      timestamped: {
        direct: stream(0.5, 5),
        nginx: stream(0.75, 6),
        sidecar: stream(1, 12),
      },
      settings,
    },
  });
  assert.equal(withNginx.stream_delay_p99_sidecar_minus_direct_ms, 7);
  assert.equal(withNginx.stream_delay_p99_nginx_minus_direct_ms, 1);
  assert.equal(withNginx.stream_delay_p50_sidecar_minus_direct_ms, 0.5);
  const withoutNginx = computeRatios([], {
    concurrencies: [32],
    streaming: {
      timestamped: { direct: stream(0.5, 5), sidecar: stream(1, 12) },
      settings,
    },
  });
  assert.equal(withoutNginx.stream_delay_p99_nginx_minus_direct_ms, null);
  // With rounds, differences are taken within each round, then their median.
  const inRounds = computeRatios([], {
    concurrencies: [32],
    streaming: {
      timestamped: {
        direct: stream(0.5, 6),
        nginx: stream(0.5, 7),
        sidecar: stream(1, 11),
        p99Rounds: {
          direct: [5, 10, 6],
          nginx: [6, 9, 7],
          sidecar: [7, 11, 20],
        },
      },
      settings,
    },
  });
  assert.equal(inRounds.stream_delay_p99_sidecar_minus_direct_ms, 2);
  assert.equal(inRounds.stream_delay_p99_nginx_minus_direct_ms, 1);
});

Deno.test("bench streaming keeps each path's median round by p99", () => {
  const rounds = [
    streamResult(1, 9),
    streamResult(1, 30),
    streamResult(1, 4),
  ];
  assert.equal(medianRoundByP99(rounds), rounds[0]);
  assert.equal(medianRoundByP99(rounds.slice(1)), rounds[2]);
  const unmeasured = streamResult();
  assert.equal(
    medianRoundByP99([unmeasured, rounds[1]!, rounds[2]!]),
    rounds[1],
  );
  assert.throws(() => medianRoundByP99([]), /No stream rounds/);
});

Deno.test("bench report prints every target with its verdict", () => {
  const ratios = computeRatios([], { concurrencies: [32] });
  const text = formatReport({
    schema: 1,
    startedAt: "2026-01-01T00:00:00.000Z",
    quick: true,
    wallS: 1,
    machine: {
      nproc: 2,
      cpuModel: "cpu",
      memoryGiB: 1,
      kernel: "6",
      deno: "2",
      v8: "1",
      loadTool: "wrk",
      nginx: "not available",
    },
    settings: { durationS: 1, warmupS: 1, concurrencies: [32] },
    throughput: [],
    streaming: {
      timestamped: {
        direct: streamResult(0.5),
        nginx: streamResult(0.625),
        sidecar: streamResult(0.75),
        p99Rounds: { direct: [4.25, 5], nginx: [6, 7], sidecar: [8, 9.5] },
      },
      settings: { streams: 1, chunks: 1, intervalMs: 1, rampMs: 1, rounds: 2 },
    },
    sidecarPeakRssMiB: { throughput: 1, streaming: 1, streamingMock: null },
    ratios,
    targets: judgeTargets(ratios, { streamDelayP99Ms: 2, peakRssMiB: 100 }),
    notes: [],
  });
  assert.match(text, /FAIL {2}streaming added delay per chunk p99/);
  assert.match(text, /PASS {2}sidecar peak RSS/);
  assert.match(text, /fast decoder, client chain via nginx +1\/1 +0\.625 /);
  assert.match(
    text,
    /p99 per round.*direct 4\.3 \/ 5\.0; nginx 6\.0 \/ 7\.0; sidecar 8\.0 \/ 9\.5/,
  );
  assert.match(text, /fast decoder, 3 rounds through one sidecar/);
  assert.match(text, /N\/A +passthrough >= 0\.5x nginx throughput \(c=32\)/);
});

Deno.test("bench percentiles use the nearest rank", () => {
  const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(quantile(sorted, 0.5), 50);
  assert.equal(quantile(sorted, 0.99), 99);
  assert.equal(summarize([3, 1, 2]).max, 3);
  assert.ok(Number.isNaN(summarize([]).p50));
});

Deno.test("bench runs the sidecar with the shipped V8 flags unless told otherwise", () => {
  const flagsOf = (args: string[]) =>
    args.filter((arg) => arg.startsWith("--v8-flags"));
  const shipped = sidecarCommand(["main.ts", "-port=1"]);
  assert.deepEqual(shipped.args.slice(-2), ["main.ts", "-port=1"]);
  assert.deepEqual(flagsOf(shipped.args), [`--v8-flags=${SIDECAR_V8_FLAGS}`]);
  assert.deepEqual(flagsOf(sidecarCommand(["main.ts"], "").args), []);
  const tuned = sidecarCommand(["main.ts"], "--heap-growing-percent=80");
  const flag = tuned.args.indexOf("--v8-flags=--heap-growing-percent=80");
  assert.ok(flag > 0 && flag < tuned.args.indexOf("main.ts"));
});
