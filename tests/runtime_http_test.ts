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

Deno.test("the runtime's per-connection server ends an upgraded WebSocket as soon as its HTTP task ends (Deno 2.9.6; blocks WebSocket passthrough)", async () => {
  // A tripwire: when a Deno upgrade keeps the session open, this fails and
  // WebSocket passthrough (Go's ReverseProxy relays upgrades) becomes possible
  // on the sidecar's own accept loop. Deno.serve keeps such sessions open.
  const serveConnection = findServeConnection();
  assert.ok(serveConnection);
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serverClosed = Promise.withResolvers<number>();
  const served = listener.accept().then((conn) =>
    serveConnection(conn, {
      handler(request) {
        const { socket, response } = Deno.upgradeWebSocket(request);
        socket.onclose = (event) => serverClosed.resolve(event.code);
        return response;
      },
      onError: () => new Response("error", { status: 500 }),
    })
  );
  const client = new WebSocket(`ws://127.0.0.1:${listener.addr.port}/`);
  const clientClosed = Promise.withResolvers<CloseEvent>();
  client.onclose = (event) => clientClosed.resolve(event);
  // Neither side closes: the runtime does.
  const closed = await withDeadline(
    clientClosed.promise,
    5_000,
    "the runtime to end the upgraded session",
  );
  assert.equal(closed.wasClean, false);
  assert.equal(
    await withDeadline(serverClosed.promise, 5_000, "the server side to end"),
    1005,
  );
  await withDeadline(
    (await served).finished,
    5_000,
    "the connection's server to finish",
  );
});
