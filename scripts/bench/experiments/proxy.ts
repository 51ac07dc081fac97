/**
 * @module
 * Experiment (not shipped): a minimal P/D and passthrough proxy built the way
 * the sidecar is (Hono on `Deno.serve`, or bare `Deno.serve` for reference),
 * whose upstream HTTP client is chosen with `--client`, so the clients can be
 * compared under the same load on the same upstreams. The proxying itself is
 * the bench's runtime floor (`../floor_proxy.ts`); with `--client fetch-pool
 * --framework bare` this is that floor.
 *
 *   deno run --allow-net --allow-env --allow-read scripts/bench/experiments/proxy.ts \
 *     --client fetch-pool --framework hono --port 8000 --decoder-port 8001
 */

import { Hono } from "hono";
import { parseArgs } from "node:util";
import { proxy } from "../floor_proxy.ts";
import { type ClientName, createClient } from "./clients.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      client: { type: "string", default: "fetch-pool" },
      framework: { type: "string", default: "hono" },
      port: { type: "string", default: "0" },
      "decoder-port": { type: "string" },
      "reuse-port": { type: "boolean", default: false },
    },
  });
  const client = await createClient(values.client as ClientName);
  const decoder = `http://127.0.0.1:${values["decoder-port"]}`;
  let handler: (request: Request) => Response | Promise<Response>;
  if (values.framework === "bare") {
    handler = (request) => proxy(client, request, decoder);
  } else {
    const app = new Hono();
    app.all("*", (c) => proxy(client, c.req.raw, decoder));
    handler = app.fetch;
  }
  Deno.serve({
    hostname: "127.0.0.1",
    port: Number(values.port),
    // Several processes on one port, the kernel spreading connections (Linux SO_REUSEPORT).
    reusePort: values["reuse-port"],
    onListen({ port }) {
      Deno.stdout.writeSync(
        new TextEncoder().encode(`${JSON.stringify({ port })}\n`),
      );
    },
  }, handler);
}
