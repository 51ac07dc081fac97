import assert from "node:assert/strict";
import {
  isUnspecified,
  parseIpLiteral,
  parseIpRange,
} from "../../src/allowlist/address.ts";
import {
  admitOptionalTarget,
  admitPrefillTarget,
  createAllowlist,
  OPEN_ALLOWLIST,
  type PoolMembers,
  PREFILL_DENIED_MESSAGE,
} from "../../src/allowlist/allowlist.ts";
import { createResolver } from "../../src/allowlist/resolve.ts";
import { parseStaticEntry } from "../../src/allowlist/static_list.ts";
import { ProxyError } from "../../src/errors.ts";
import { createLogger } from "../../src/log.ts";
import { parseTarget } from "../../src/upstream/target.ts";

const HEADER = "x-prefiller-host-port";

/** The spellings of 127.0.0.1 an outside tester got through (issue 11). */
const LOOPBACK_SPELLINGS = [
  "0:8000",
  "0.0.0.0:8000",
  "127.1:8000",
  "2130706433:8000",
  "0x7f000001:8000",
  "[::ffff:127.0.0.1]:8000",
  "localhost.:8000",
  "127.0.0.1:8000",
  "[::1]:8000",
];

function allowlistOf(entries: string[], options: {
  readonly pool?: PoolMembers;
  readonly lookup?: (host: string) => Promise<readonly string[]>;
} = {}) {
  return createAllowlist({
    entries: entries.map(parseStaticEntry),
    pool: options.pool,
    resolver: createResolver(
      options.lookup ? { lookup: options.lookup, ttlMs: 0 } : {},
    ),
  });
}

Deno.test("parseIpLiteral reads every spelling fetch would dial as the address it dials", () => {
  const cases: [string, string | undefined][] = [
    ["0", "0.0.0.0"],
    ["127.1", "127.0.0.1"],
    ["2130706433", "127.0.0.1"],
    ["0x7f000001", "127.0.0.1"],
    ["010.0.0.1", "8.0.0.1"],
    ["::ffff:127.0.0.1", "127.0.0.1"],
    ["0:0:0:0:0:ffff:7f00:1", "127.0.0.1"],
    ["FD00:0::5", "fd00::5"],
    ["localhost", undefined],
    ["prefill-0.ns.svc", undefined],
    ["1.2.3.4.5", undefined],
  ];
  for (const [host, expected] of cases) {
    assert.equal(parseIpLiteral(host)?.text, expected, host);
  }
  for (const host of ["0.0.0.0", "0.1.2.3", "::"]) {
    const address = parseIpLiteral(host);
    assert.ok(address && isUnspecified(address), host);
  }
  assert.equal(parseIpRange("10.0.0.0/8")?.text, "10.0.0.0/8");
  assert.equal(parseIpRange("10.0.0.0/33"), undefined);
  assert.equal(parseIpRange("fd00::/8")?.bits, 8);
});

Deno.test("parseStaticEntry accepts hosts, host:port, IPs, [v6]:port and CIDRs, and says what is wrong", () => {
  assert.deepEqual(parseStaticEntry("10.0.0.0/8").kind, "range");
  assert.deepEqual(parseStaticEntry("10.0.0.5"), {
    kind: "address",
    address: parseIpLiteral("10.0.0.5"),
    port: undefined,
  });
  assert.equal(parseStaticEntry("10.0.0.5:8000").kind, "address");
  assert.equal(parseStaticEntry("[fd00::5]:8000").kind, "address");
  assert.equal(parseStaticEntry("fd00::5").kind, "address");
  assert.deepEqual(parseStaticEntry("Prefill.NS.svc.:8000"), {
    kind: "name",
    host: "prefill.ns.svc",
    port: 8000,
  });
  for (
    const bad of [
      "10.0.0.0/99",
      "host:0",
      "host:70000",
      "[nope]:80",
      "a b",
      "http://x:1",
      "",
    ]
  ) {
    assert.throws(() => parseStaticEntry(bad), Error, bad);
  }
});

Deno.test("the static allowlist admits no spelling of the loopback address when it lists none", async () => {
  const allowlist = allowlistOf(["10.0.0.0/8", "prefill.ns.svc:8000"], {
    lookup: (host) =>
      Promise.resolve(
        host === "localhost" ? ["127.0.0.1", "::1"] : ["10.1.2.3"],
      ),
  });
  for (const spelling of LOOPBACK_SPELLINGS) {
    const verdict = await allowlist.checkTarget(parseTarget(spelling, HEADER));
    assert.equal(verdict.allowed, false, spelling);
  }
  const metadata = await allowlist.checkTarget(
    parseTarget("169.254.169.254:80", HEADER),
  );
  assert.equal(metadata.allowed, false);
});

Deno.test("the static allowlist admits listed addresses, ports, ranges and names, dialling the checked address", async () => {
  const lookups: string[] = [];
  const allowlist = allowlistOf(
    ["10.0.0.0/8", "192.168.1.5:8000", "[fd00::7]:9000", "prefill.ns.svc:8200"],
    {
      lookup: (host) => {
        lookups.push(host);
        return Promise.resolve(
          host === "prefill.ns.svc" ? ["192.168.9.9"] : ["203.0.113.1"],
        );
      },
    },
  );
  const expect = async (target: string, connect: string | undefined) => {
    const verdict = await allowlist.checkTarget(parseTarget(target, HEADER));
    assert.equal(
      verdict.allowed ? verdict.connectHostPort : undefined,
      connect,
      target,
    );
  };
  await expect("10.2.3.4:1234", "10.2.3.4:1234");
  await expect("0x0a020304:1234", "10.2.3.4:1234");
  await expect("192.168.1.5:8000", "192.168.1.5:8000");
  await expect("192.168.1.5:8001", undefined);
  await expect("[fd00::7]:9000", "[fd00::7]:9000");
  await expect("[FD00:0:0::7]:9000", "[fd00::7]:9000");
  await expect("prefill.ns.svc:8200", "192.168.9.9:8200");
  await expect("192.168.9.9:8200", "192.168.9.9:8200");
  await expect("prefill.ns.svc:8201", undefined);
  // A name resolving to an address outside the list is refused, whatever its spelling.
  await expect("evil.example:8000", undefined);
  assert.ok(lookups.includes("evil.example"));
});

Deno.test("a host name is dialled at the address that passed the check, not resolved again", async () => {
  // DNS rebinding: the first answer passes, later answers point at the metadata service.
  let answers = 0;
  const allowlist = allowlistOf(["10.0.0.0/8"], {
    lookup: () =>
      Promise.resolve(answers++ === 0 ? ["10.0.0.5"] : ["169.254.169.254"]),
  });
  const first = await allowlist.checkTarget(
    parseTarget("rebind.example:8000", HEADER),
  );
  assert.deepEqual(first, { allowed: true, connectHostPort: "10.0.0.5:8000" });
  const second = await allowlist.checkTarget(
    parseTarget("rebind.example:8000", HEADER),
  );
  assert.equal(second.allowed, false);
});

Deno.test("the unspecified address is refused even by a list that covers it", async () => {
  const allowlist = allowlistOf(["0.0.0.0/0"]);
  for (const spelling of ["0:8000", "0.0.0.0:8000", "0.1.2.3:8000"]) {
    const verdict = await allowlist.checkTarget(parseTarget(spelling, HEADER));
    assert.equal(verdict.allowed, false, spelling);
  }
  const ok = await allowlist.checkTarget(parseTarget("10.0.0.1:80", HEADER));
  assert.equal(ok.allowed, true);
});

Deno.test("pool members and the static list are combined", async () => {
  const pool: PoolMembers = {
    has: (address, port) => address.text === "10.5.0.1" && port === 8000,
    hasAddress: (address) => address.text === "10.5.0.1",
  };
  const allowlist = allowlistOf(["192.168.0.0/16"], { pool });
  const check = async (target: string) =>
    (await allowlist.checkTarget(parseTarget(target, HEADER))).allowed;
  assert.equal(await check("10.5.0.1:8000"), true);
  assert.equal(await check("10.5.0.1:9000"), false);
  assert.equal(await check("192.168.3.3:9000"), true);
  assert.equal(await check("10.5.0.2:8000"), false);
  const poolOnly = createAllowlist({
    entries: [],
    pool,
    resolver: createResolver(),
  });
  assert.equal(poolOnly.enabled, true);
  assert.equal(
    (await poolOnly.checkTarget(parseTarget("192.168.3.3:9000", HEADER)))
      .allowed,
    false,
  );
});

Deno.test("without a pool or a list every target is admitted unchanged", async () => {
  const allowlist = allowlistOf([]);
  assert.equal(allowlist, OPEN_ALLOWLIST);
  assert.deepEqual(
    await allowlist.checkTarget(parseTarget("127.1:8000", HEADER)),
    { allowed: true, connectHostPort: "127.1:8000" },
  );
});

Deno.test("admitPrefillTarget answers a denied target with the Go sidecar's 403 and logs target and client", async () => {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    verbosity: 0,
    write: (line) => lines.push(JSON.parse(line)),
  });
  await assert.rejects(
    admitPrefillTarget(
      allowlistOf(["10.0.0.0/8"]),
      parseTarget("127.1:8000", HEADER),
      {
        log,
        clientIp: "203.0.113.9",
        userAgent: "curl/8",
        path: "/v1/completions",
      },
    ),
    (error: unknown) => {
      assert.ok(error instanceof ProxyError);
      assert.equal(error.status, 403);
      assert.equal(error.message, PREFILL_DENIED_MESSAGE);
      return true;
    },
  );
  const [line] = lines;
  assert.equal(line?.level, "error");
  assert.equal(line?.msg, "SSRF protection: prefill target not in allowlist");
  assert.equal(line?.target, "127.1:8000");
  assert.equal(line?.clientIP, "203.0.113.9");
  assert.equal(line?.userAgent, "curl/8");
  assert.equal(line?.requestPath, "/v1/completions");
  assert.match(String(line?.reason), /127\.0\.0\.1/);
});

Deno.test("admitOptionalTarget drops a denied encoder or KV source with an info line, and dials an allowed one at its checked address", async () => {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    verbosity: 0,
    write: (line) => lines.push(JSON.parse(line)),
  });
  const origin = {
    log,
    clientIp: "203.0.113.9",
    userAgent: null,
    path: "/v1/chat/completions",
  };
  const allowlist = allowlistOf(["10.0.0.0/8"]);
  assert.equal(
    await admitOptionalTarget(
      allowlist,
      parseTarget("127.1:7000", "x-kv-cache-source-host-port"),
      "KV cache source",
      origin,
    ),
    undefined,
  );
  assert.equal(
    await admitOptionalTarget(
      allowlist,
      parseTarget("0x0a000001:7000", "x-encoder-hosts-ports"),
      "encoder",
      origin,
    ),
    "10.0.0.1:7000",
  );
  assert.equal(lines.length, 1);
  assert.equal(lines[0]?.level, "info");
  assert.equal(
    lines[0]?.msg,
    "SSRF protection: KV cache source not in allowlist, ignoring",
  );
  assert.equal(lines[0]?.clientIP, "203.0.113.9");
});
