import assert from "node:assert/strict";
import { buildLoopbackNoProxy } from "../src/proxy_env.ts";

Deno.test("buildLoopbackNoProxy leaves the environment alone without a proxy", () => {
  assert.equal(buildLoopbackNoProxy({}), undefined);
  assert.equal(
    buildLoopbackNoProxy({ HTTP_PROXY: "", NO_PROXY: "x" }),
    undefined,
  );
});

Deno.test("buildLoopbackNoProxy adds loopback to the hosts NO_PROXY or no_proxy already exempts", () => {
  const proxy = "http://proxy:3128";
  const cases: [Record<string, string>, string | undefined][] = [
    [{ HTTP_PROXY: proxy }, "localhost,127.0.0.0/8,::1"],
    [{ https_proxy: proxy }, "localhost,127.0.0.0/8,::1"],
    [{ ALL_PROXY: proxy }, "localhost,127.0.0.0/8,::1"],
    [
      { HTTP_PROXY: proxy, NO_PROXY: ".svc,10.0.0.0/8" },
      ".svc,10.0.0.0/8,localhost,127.0.0.0/8,::1",
    ],
    // Go reads NO_PROXY first, no_proxy when it is empty.
    [
      { HTTP_PROXY: proxy, NO_PROXY: "", no_proxy: ".svc" },
      ".svc,localhost,127.0.0.0/8,::1",
    ],
    [
      { HTTP_PROXY: proxy, NO_PROXY: "LOCALHOST, ::1" },
      "LOCALHOST, ::1,127.0.0.0/8",
    ],
    [{ HTTP_PROXY: proxy, NO_PROXY: "localhost,127.0.0.0/8,::1" }, undefined],
  ];
  for (const [env, expected] of cases) {
    assert.equal(buildLoopbackNoProxy(env), expected, JSON.stringify(env));
  }
});
