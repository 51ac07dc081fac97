import assert from "node:assert/strict";
import { ProxyError } from "../../src/errors.ts";
import {
  joinHostPort,
  parseTarget,
  splitHostPort,
} from "../../src/upstream/target.ts";

const HEADER = "x-prefiller-host-port";

for (
  const [value, hostPort] of [
    [
      "prefill-0.vllm.svc.cluster.local:8000",
      "prefill-0.vllm.svc.cluster.local:8000",
    ],
    ["10.0.0.5:8000", "10.0.0.5:8000"],
    ["[::1]:8000", "[::1]:8000"],
    ["[FE80::1%eth0]:9", "[fe80::1%eth0]:9"],
    ["http://localhost:8002", "localhost:8002"],
    ["HTTP://Localhost:8002/", "localhost:8002"],
    ["10.0.0.5:8000/", "10.0.0.5:8000"],
    ["[::1]:8000/", "[::1]:8000"],
    ["my_pod:65535", "my_pod:65535"],
  ] as const
) {
  Deno.test(`parseTarget accepts ${value}`, () => {
    assert.equal(parseTarget(value, HEADER).hostPort, hostPort);
  });
}

for (
  const [value, reason] of [
    ["localhost", /expected host:port/],
    ["::1:8000", /expected host:port/],
    ["user:pw@host:80", /credentials/],
    ["http://user@host:80", /credentials/],
    ["host:80/v1/completions", /path, query or fragment/],
    ["host:80//", /path, query or fragment/],
    ["http://host:80/x", /path, query or fragment/],
    ["host:80?x=1", /path, query or fragment/],
    ["https://host:443", /scheme "https" is not supported/],
    ["file://host:1", /scheme "file"/],
    ["host:80\r\nx-evil: 1", /control characters/],
    ["host:0", /out of range/],
    ["[:::::]:8000", /":::::" is not a valid IPv6 address/],
    ["[...]:8000", /"..." is not a valid IPv6 address/],
    ["[1::2::3%eth0]:8000", /"1::2::3" is not a valid IPv6 address/],
    ["host:70000", /out of range/],
    ["host:65536", /port 65536 is out of range/],
    ["[::1]:65536", /port 65536 is out of range/],
    ["ho st:80", /control characters or spaces/],
    ["-bad-:80", /not a valid host name/],
    ["host:", /expected host:port/],
  ] as const
) {
  Deno.test(`parseTarget rejects ${JSON.stringify(value)} with a 400 naming the header`, () => {
    assert.throws(() => parseTarget(value, HEADER), (error: unknown) => {
      assert.ok(error instanceof ProxyError);
      assert.equal(error.status, 400);
      assert.match(error.message, reason);
      assert.match(error.message, /header "x-prefiller-host-port"/);
      return true;
    });
  });
}

Deno.test("splitHostPort reads back what joinHostPort wrote, IPv6 without brackets", () => {
  for (
    const [host, port] of [
      ["10.0.0.5", 8000],
      ["prefill.ns.svc", 1],
      ["fd00::1", 65535],
      ["::ffff:127.0.0.1", 80],
    ] as const
  ) {
    assert.deepEqual(splitHostPort(joinHostPort(host, port)), { host, port });
  }
});
