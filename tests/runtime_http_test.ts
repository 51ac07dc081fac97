import assert from "node:assert/strict";
import { withDeadline } from "./support/deadline.ts";
import { findServeConnection } from "../src/runtime_http.ts";
import {
  closeQuietly,
  readUntil,
  socketPair,
  writeText,
} from "./support/sockets.ts";

Deno.test("the runtime exposes its per-connection HTTP server, and it serves a connection it is handed", async () => {
  // Internal to Deno: an upgrade that moves or reshapes it fails here first.
  const serveConnection = findServeConnection();
  assert.ok(serveConnection, `Deno ${Deno.version.deno}`);
  await using pair = await socketPair();
  const seen: string[] = [];
  const server = serveConnection(pair.server, {
    handler(request, info) {
      seen.push(
        `${request.method} ${
          new URL(request.url).pathname
        } from ${info.remoteAddr.hostname}`,
      );
      return new Response("ok");
    },
    onError: () => new Response("error", { status: 500 }),
  });
  await writeText(pair.client, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
  const answer = await readUntil(pair.client, (text) => text.endsWith("ok"));
  assert.match(answer.text, /^HTTP\/1\.1 200 OK\r\n/);
  assert.deepEqual(seen, ["GET /x from 127.0.0.1"]);
  closeQuietly(pair.client);
  await withDeadline(
    server.finished,
    5_000,
    "the connection's server to finish",
  );
});
