import assert from "node:assert/strict";
import {
  formatEndpoint,
  isPeerGoneState,
  listenerKey,
  socketKey,
  socketStates,
  tableOf,
  TCP_STATE,
} from "../src/proc_net_tcp.ts";

// Lines captured from this machine's /proc/net/tcp and /proc/net/tcp6
// (x86_64, little-endian): a listener on 127.0.0.1:18001, a dual-stack
// listener on [::]:34465 with an IPv4 client (v4-mapped) whose FIN arrived,
// and an IPv6 loopback connection.
const TCP = [
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 231 1 000000003de8b204 100 0 0 10 0",
  "   1: 0100007F:4651 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4243135 1 000000006b7abada 100 0 0 10 0",
].join("\n");
const TCP6 = [
  "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  "   0: 00000000000000000000000000000000:86A1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4266645 1 000000002492ec32 100 0 0 10 0",
  "   1: 0000000000000000FFFF00000100007F:86A1 0000000000000000FFFF00000100007F:B334 08 00000000:00000001 00:00000000 00000000     0        0 4266647 1 000000006bbda6c7 20 4 0 10 -1",
  "   3: 00000000000000000000000001000000:86A1 00000000000000000000000001000000:A9BA 01 00000000:00000000 00:00000000 00000000     0        0 4259220 1 00000000f3dd61d2 20 0 0 10 -1",
].join("\n");

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

Deno.test(
  "formatEndpoint prints addresses as the kernel does on this machine",
  {
    ignore: !littleEndian,
  },
  () => {
    assert.equal(formatEndpoint("127.0.0.1", 18001, "tcp"), "0100007F:4651");
    assert.equal(formatEndpoint("0.0.0.0", 2024, "tcp"), "00000000:07E8");
    assert.equal(
      formatEndpoint("::1", 34465, "tcp6"),
      "00000000000000000000000001000000:86A1",
    );
    assert.equal(
      formatEndpoint("::ffff:127.0.0.1", 45876, "tcp6"),
      "0000000000000000FFFF00000100007F:B334",
    );
    // An IPv4 peer of a dual-stack socket, however the runtime spells it.
    assert.equal(
      formatEndpoint("127.0.0.1", 45876, "tcp6"),
      "0000000000000000FFFF00000100007F:B334",
    );
    assert.equal(
      formatEndpoint("fe80::1%eth0", 80, "tcp6"),
      "000080FE000000000000000001000000:0050",
    );
  },
);

Deno.test("formatEndpoint refuses what a table cannot list", () => {
  assert.equal(formatEndpoint("::1", 80, "tcp"), undefined);
  assert.equal(formatEndpoint("localhost", 80, "tcp"), undefined);
  assert.equal(formatEndpoint("127.0.0.1", 65536, "tcp"), undefined);
});

Deno.test("socketStates finds the wanted sockets of captured tables", {
  ignore: !littleEndian,
}, () => {
  const mapped = socketKey(
    "tcp6",
    { hostname: "::ffff:127.0.0.1", port: 34465 },
    { hostname: "::ffff:127.0.0.1", port: 45876 },
  );
  const v6 = socketKey(
    "tcp6",
    { hostname: "::1", port: 34465 },
    { hostname: "::1", port: 43450 },
  );
  const listener = listenerKey("tcp6", { hostname: "::", port: 34465 });
  const absent = socketKey(
    "tcp6",
    { hostname: "::1", port: 34465 },
    { hostname: "::1", port: 1 },
  );
  assert.ok(mapped && v6 && listener && absent);
  const states = socketStates(TCP6, new Set([mapped, v6, listener, absent]));
  assert.equal(states.get(mapped), TCP_STATE.closeWait);
  assert.equal(states.get(v6), TCP_STATE.established);
  assert.equal(states.get(listener), TCP_STATE.listen);
  assert.equal(states.has(absent), false);

  const v4Listener = listenerKey("tcp", { hostname: "127.0.0.1", port: 18001 });
  assert.ok(v4Listener);
  assert.equal(
    socketStates(TCP, new Set([v4Listener])).get(v4Listener),
    TCP_STATE.listen,
  );
});

Deno.test("socketStates skips lines it cannot read instead of guessing", () => {
  const key = "0100007F:4651 00000000:0000";
  const garbled = [
    "",
    "no colon here",
    "   0: 0100007F:4651",
    `   1: ${key} zz 0000`,
    `   2: ${key}`,
  ].join("\n");
  assert.equal(socketStates(garbled, new Set([key])).size, 0);
  // A line cut at the end of a read still counts when it carries the state.
  assert.equal(
    socketStates(`   1: ${key} 0A`, new Set([key])).get(key),
    TCP_STATE.listen,
  );
});

Deno.test("a socket whose peer sent its FIN, or that closed, is gone; one connected or listening is not", () => {
  for (
    const state of [
      TCP_STATE.closeWait,
      TCP_STATE.close,
      TCP_STATE.lastAck,
      TCP_STATE.closing,
      TCP_STATE.timeWait,
    ]
  ) {
    assert.equal(isPeerGoneState(state), true, String(state));
  }
  for (const state of [TCP_STATE.established, TCP_STATE.listen]) {
    assert.equal(isPeerGoneState(state), false, String(state));
  }
});

Deno.test("tableOf lists a dual-stack or IPv6 listener in tcp6", () => {
  assert.equal(tableOf("::"), "tcp6");
  assert.equal(tableOf("0.0.0.0"), "tcp");
});
