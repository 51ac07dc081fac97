// deno-lint-ignore-file no-console -- a terminal report: printing is its job
/**
 * @module
 * One-off measurement: what Nagle's algorithm costs streams to TLS clients.
 * The sidecar's accepted TCP connections get TCP_NODELAY from the runtime,
 * its TLS connections do not (Deno 2.9.6 sets it only on plain TCP streams
 * it serves, and `Deno.TlsConn` has no `setNoDelay`), so a small SSE event
 * written while the previous one is unacknowledged waits for the client's
 * delayed ACK (40 ms on Linux). Two sidecars pass the same decoder's streams
 * through, one on plain HTTP, one on HTTPS; rounds alternate; each event's
 * delay is the client's receive time minus the decoder's send time.
 *
 * Run from the repository root:
 *   scripts/deno run -A scripts/bench/experiments/tls_nagle.ts [--rounds 3] [--streams 20] [--interval-ms 20]
 */

import { parseArgs } from "node:util";
import { generateSelfSignedCertificate } from "../../../src/tls.ts";
import {
  createProcessGroup,
  freePort,
  sidecarArgs,
  sidecarCommand,
  startFastUpstream,
  waitForHttp,
} from "../processes.ts";
import { SENT_AT_FIELD } from "../fast_upstream.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;
const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    streams: { type: "string", default: "20" },
    "interval-ms": { type: "string", default: "20" },
    chunks: { type: "string", default: "100" },
  },
});
const rounds = Number(values.rounds);
const streams = Number(values.streams);
const intervalMs = Number(values["interval-ms"]);
const chunks = Number(values.chunks);

const certificate = await generateSelfSignedCertificate();
const certDir = await Deno.makeTempDir({ prefix: "tls-nagle-" });
await Deno.writeTextFile(`${certDir}/tls.crt`, certificate.cert);
await Deno.writeTextFile(`${certDir}/tls.key`, certificate.key);

const BODY = JSON.stringify({
  model: "bench",
  messages: [{ role: "user", content: "Hello" }],
  stream: true,
});
const SENT_AT = new RegExp(`"${SENT_AT_FIELD}":([\\d.]+)`, "g");

/** Reads one stream through the sidecar on `port`; returns each event's delay in ms. */
async function oneStream(port: number, tls: boolean): Promise<number[]> {
  const conn = tls
    ? await Deno.connectTls({
      hostname: "localhost",
      port,
      caCerts: [certificate.cert],
    })
    : await Deno.connect({ hostname: "127.0.0.1", port });
  const delays: number[] = [];
  try {
    await conn.write(new TextEncoder().encode(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: ${BODY.length}\r\n\r\n${BODY}`,
    ));
    const buffer = new Uint8Array(65536);
    const decoder = new TextDecoder();
    let pending = "";
    for (;;) {
      const read = await conn.read(buffer);
      if (read === null) break;
      const now = performance.timeOrigin + performance.now();
      pending += decoder.decode(buffer.subarray(0, read), { stream: true });
      const lastEnd = pending.lastIndexOf("\n\n");
      if (lastEnd < 0) continue;
      const complete = pending.slice(0, lastEnd);
      pending = pending.slice(lastEnd + 2);
      for (const match of complete.matchAll(SENT_AT)) {
        delays.push(now - Number(match[1]));
      }
      if (complete.includes("[DONE]")) break;
    }
  } finally {
    conn.close();
  }
  return delays;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ??
    NaN;
}

const group = createProcessGroup();
try {
  const decode = await startFastUpstream(group, "decode", {
    chunks,
    intervalMs,
  });
  const sidecars = [
    { name: "plain HTTP", tls: false, flags: [] as string[] },
    {
      name: "HTTPS",
      tls: true,
      flags: ["-secure-proxy=true", `-cert-path=${certDir}`],
    },
  ].map((variant) => {
    const port = freePort();
    const command = sidecarCommand(
      sidecarArgs(port, decode.port, [
        ...variant.flags,
        "-zap-log-level=error",
      ]),
    );
    group.start(variant.name, { ...command, cwd: ROOT });
    return { ...variant, port };
  });
  for (const sidecar of sidecars) {
    await waitForHttp(
      `${
        sidecar.tls ? "https://localhost" : "http://127.0.0.1"
      }:${sidecar.port}/health`,
      30_000,
    ).catch(async () => {
      // waitForHttp's fetch does not trust the certificate; a TLS connect that completes will do.
      const conn = await Deno.connectTls({
        hostname: "localhost",
        port: sidecar.port,
        caCerts: [certificate.cert],
      });
      await conn.handshake();
      conn.close();
    });
  }
  console.log(
    `${streams} streams at once, ${chunks} events each ${intervalMs} ms apart, ${rounds} rounds alternating`,
  );
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? sidecars : [...sidecars].reverse();
    for (const sidecar of order) {
      const delays = (await Promise.all(
        Array.from(
          { length: streams },
          () => oneStream(sidecar.port, sidecar.tls),
        ),
      )).flat().sort((a, b) => a - b);
      console.log(
        `round ${round + 1} ${
          sidecar.name.padEnd(10)
        } ${delays.length} events: delay p50 ${
          quantile(delays, 0.5).toFixed(2)
        } p90 ${quantile(delays, 0.9).toFixed(2)} p99 ${
          quantile(delays, 0.99).toFixed(2)
        } max ${(delays.at(-1) ?? NaN).toFixed(2)} ms; over 30 ms: ${
          delays.filter((delay) => delay > 30).length
        }`,
      );
    }
  }
} finally {
  await group.stopAll();
  await Deno.remove(certDir, { recursive: true });
}
