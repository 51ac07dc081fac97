// deno-lint-ignore-file no-console -- a terminal report: printing is its job
/**
 * @module
 * Experiment (not shipped): the wire engine's latency tail at a few hundred
 * connections, reproduced without any sidecar code. A minimal keep-alive
 * responder on `Deno.listen` (one read loop per connection, as the wire
 * engine has) and the same on `Deno.serve` answer a fixed body, and the
 * bench's load generator measures both at rising connection counts. With
 * one JavaScript thread owning every socket, p99 jumps from a few ms to tens
 * or hundreds past a load-dependent point, while `Deno.serve`, whose
 * connections the runtime drives outside JavaScript, stays flat.
 *
 *   deno run --allow-net --allow-run --allow-read --allow-env --allow-write=/tmp \
 *     scripts/bench/experiments/starvation.ts [--duration-s 3] [--conns 64,128,160,256,512]
 */

import { parseArgs } from "node:util";
import { writeAll } from "../http1.ts";
import { detectLoadTool } from "../load_tool.ts";
import {
  createProcessGroup,
  freePort,
  stopAllAndRemove,
  waitForHttp,
} from "../processes.ts";

const encoder = new TextEncoder();
const ANSWER = encoder.encode(
  "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok",
);

/** Answers each complete request (head, then its Content-Length body) on `conn` until it closes. */
async function answerEach(conn: Deno.Conn): Promise<void> {
  let pending = new Uint8Array(0);
  const buffer = new Uint8Array(16 * 1024);
  for (;;) {
    const read = await conn.read(buffer);
    if (read === null) return;
    const joined = new Uint8Array(pending.length + read);
    joined.set(pending);
    joined.set(buffer.subarray(0, read), pending.length);
    let at = 0;
    for (;;) {
      const text = new TextDecoder().decode(joined.subarray(at));
      const end = text.indexOf("\r\n\r\n");
      if (end === -1) break;
      const length = Number(/content-length:\s*(\d+)/i.exec(text)?.[1] ?? 0);
      const size = end + 4 + length;
      if (joined.length - at < size) break;
      await writeAll(conn, ANSWER);
      at += size;
    }
    pending = joined.slice(at);
  }
}

function serveRaw(port: number): void {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  (async () => {
    for await (const conn of listener) {
      answerEach(conn).catch(() => {}).finally(() => {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      });
    }
  })();
}

function serveNative(port: number): void {
  Deno.serve(
    { hostname: "127.0.0.1", port, onListen() {} },
    async (request) => {
      await request.arrayBuffer();
      return new Response("ok");
    },
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      serve: { type: "string" },
      port: { type: "string" },
      "duration-s": { type: "string", default: "3" },
      conns: { type: "string", default: "64,128,160,256,512" },
    },
  });
  if (values.serve !== undefined) {
    const port = Number(values.port);
    if (values.serve === "raw") serveRaw(port);
    else serveNative(port);
    return;
  }
  const tempDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "starve-" });
  const group = createProcessGroup();
  try {
    const tool = await detectLoadTool(tempDir);
    console.log(`load generator: ${tool.version}; Deno ${Deno.version.deno}`);
    console.log(
      "server                  conns    req/s   p50 ms   p90 ms   p99 ms",
    );
    for (const kind of ["raw", "native"]) {
      const port = freePort();
      const server = group.start(kind, {
        cmd: Deno.execPath(),
        args: [
          "run",
          "--allow-net",
          new URL(import.meta.url).pathname,
          "--serve",
          kind,
          "--port",
          String(port),
        ],
      });
      await waitForHttp(`http://127.0.0.1:${port}/`, 10_000);
      for (const connections of values.conns.split(",").map(Number)) {
        const result = await tool.run({
          url: `http://127.0.0.1:${port}/`,
          headers: {},
          body: "{}",
          connections,
          durationS: Number(values["duration-s"]),
        }, group);
        const label = kind === "raw" ? "Deno.listen read loop" : "Deno.serve";
        const { p50, p90, p99 } = result.latencyMs;
        console.log(
          `${label.padEnd(22)} ${String(connections).padStart(6)} ${
            result.rps.toFixed(0).padStart(8)
          } ${p50.toFixed(2).padStart(8)} ${p90.toFixed(2).padStart(8)} ${
            p99.toFixed(2).padStart(8)
          }`,
        );
      }
      await group.stop(server);
    }
  } finally {
    await stopAllAndRemove(group, tempDir);
  }
}

if (import.meta.main) await main();
