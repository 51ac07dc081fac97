/**
 * @module
 * Run as its own process with `--allow-ffi`: opens a TLS listener, sets
 * TCP_NODELAY on it through the sidecar's `setTlsListenerNoDelay` unless
 * `--leave` is given, accepts one TLS connection and reads the option on the
 * accepted socket with `getsockopt`. Prints `{"result":…,"accepted":0|1}`.
 */

import { setTlsListenerNoDelay } from "../../src/tls_nodelay.ts";
import { makeCa, makeServerCert } from "./certs.ts";

const libc = Deno.dlopen("libc.so.6", {
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "buffer"],
    result: "i32",
  },
}).symbols;

function intOption(fd: number, level: number, name: number): number {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  return libc.getsockopt(fd, level, name, value, length) === 0 ? value[0]! : -1;
}

function localPort(fd: number): number | undefined {
  const address = new Uint8Array(128);
  const length = new Uint32Array([128]);
  if (libc.getsockname(fd, address, length) !== 0) return undefined;
  return (address[2]! << 8) | address[3]!;
}

const ca = await makeCa("probe-ca");
const pair = await makeServerCert(ca);
const listener = Deno.listenTls({
  hostname: "127.0.0.1",
  port: 0,
  cert: pair.cert,
  key: pair.key,
});
const port = listener.addr.port;
const result = Deno.args.includes("--leave")
  ? { skipped: "left as the runtime sets it" }
  : setTlsListenerNoDelay(port);
const [client, server] = await Promise.all([
  Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [ca.cert] }),
  listener.accept(),
]);
await Promise.all([client.handshake(), server.handshake()]);
// The accepted socket: bound to the port, not listening (SO_ACCEPTCONN 0).
let accepted = -1;
for (let fd = 0; fd < 1024; fd++) {
  if (localPort(fd) !== port || intOption(fd, 1, 30) !== 0) continue;
  accepted = intOption(fd, 6, 1);
}
client.close();
server.close();
listener.close();
// deno-lint-ignore no-console -- its output is the answer the test reads
console.log(JSON.stringify({ result, accepted }));
