import assert from "node:assert/strict";
import {
  type Allowlist,
  createAllowlist,
  type TargetVerdict,
} from "../../src/allowlist/allowlist.ts";
import {
  createResolver,
  type LookupFunction,
  RESOLVE_MAX_FAILED_NAMES,
  RESOLVE_MAX_NAMES,
  RESOLVE_NEGATIVE_TTL_MS,
  RESOLVE_TTL_MS,
} from "../../src/allowlist/resolve.ts";
import { parseStaticEntry } from "../../src/allowlist/static_list.ts";
import { parseTarget } from "../../src/upstream/target.ts";
import { within } from "../support/deadline.ts";

const HEADER = "x-prefiller-host-port";

/** A lookup that records each name it is asked for and answers with `answer`. */
function countedLookup(answer: LookupFunction): {
  readonly lookup: LookupFunction;
  readonly names: string[];
} {
  const names: string[] = [];
  return {
    names,
    lookup: (host) => {
      names.push(host);
      return answer(host);
    },
  };
}

const notFound: LookupFunction = (host) =>
  Promise.reject(new Error(`getaddrinfo ENOTFOUND ${host}`));

/** An allowlist of `entries` whose resolver looks names up with `lookup` on the test's clock. */
function allowlistWith(entries: string[], lookup: LookupFunction, clock: {
  now: number;
}): Allowlist {
  return createAllowlist({
    entries: entries.map(parseStaticEntry),
    resolver: createResolver({ lookup, now: () => clock.now }),
  });
}

function check(allowlist: Allowlist, target: string): Promise<TargetVerdict> {
  return allowlist.checkTarget(parseTarget(target, HEADER));
}

Deno.test("a static entry that does not resolve is looked up once per negative TTL, not once per request", async () => {
  let resolves = false;
  const counted = countedLookup((host) =>
    resolves ? Promise.resolve(["10.0.0.5"]) : notFound(host)
  );
  const clock = { now: 1_000 };
  const allowlist = allowlistWith(["gone.ns.svc:8000"], counted.lookup, clock);
  for (let i = 0; i < 20; i++) {
    assert.equal((await check(allowlist, "10.0.0.5:8000")).allowed, false);
  }
  assert.deepEqual(counted.names, ["gone.ns.svc"]);
  clock.now += RESOLVE_NEGATIVE_TTL_MS - 1;
  assert.equal((await check(allowlist, "10.0.0.5:8000")).allowed, false);
  assert.equal(counted.names.length, 1, "looked up within the negative TTL");
  // Once the failure expires the name is looked up again, and now resolves.
  resolves = true;
  clock.now += 1;
  assert.equal((await check(allowlist, "10.0.0.5:8000")).allowed, true);
  assert.equal(counted.names.length, 2);
  clock.now += RESOLVE_TTL_MS - 1;
  assert.equal((await check(allowlist, "10.0.0.5:8000")).allowed, true);
  assert.equal(counted.names.length, 2, "looked up within the TTL");
});

Deno.test("a target name that does not resolve gets the same refusal without a lookup until the negative TTL passes", async () => {
  const counted = countedLookup(notFound);
  const clock = { now: 1_000 };
  const allowlist = allowlistWith(["10.0.0.0/8"], counted.lookup, clock);
  const first = await check(allowlist, "Nowhere.example:8000");
  assert.equal(first.allowed, false);
  assert.match(
    first.allowed ? "" : first.reason,
    /^cannot resolve: .*ENOTFOUND nowhere\.example/,
  );
  clock.now += RESOLVE_NEGATIVE_TTL_MS - 1;
  assert.deepEqual(await check(allowlist, "nowhere.example:9000"), first);
  assert.deepEqual(counted.names, ["nowhere.example"]);
  clock.now += 1;
  assert.deepEqual(await check(allowlist, "nowhere.example:8000"), first);
  assert.deepEqual(counted.names, ["nowhere.example", "nowhere.example"]);
});

for (const outcome of ["resolves", "fails"] as const) {
  Deno.test(`50 concurrent requests for a slow name that ${outcome} wait on one lookup`, async () => {
    const answer = Promise.withResolvers<readonly string[]>();
    const counted = countedLookup(() => answer.promise);
    const allowlist = allowlistWith(["10.0.0.0/8"], counted.lookup, {
      now: 1_000,
    });
    const verdicts = Promise.all(
      Array.from({ length: 50 }, () => check(allowlist, "slow.example:8000")),
    );
    if (outcome === "resolves") answer.resolve(["10.0.0.7"]);
    else answer.reject(new Error("getaddrinfo EAI_AGAIN slow.example"));
    const all = await within(verdicts, 5_000, "the 50 verdicts");
    assert.deepEqual(counted.names, ["slow.example"]);
    assert.deepEqual(
      new Set(all.map((verdict) => verdict.allowed)),
      new Set([outcome === "resolves"]),
    );
    if (outcome === "resolves") {
      assert.deepEqual(all[49], {
        allowed: true,
        connectHostPort: "10.0.0.7:8000",
      });
    }
  });
}

Deno.test("a lookup that never answers fails the name after the timeout, and the failure is cached", async () => {
  const counted = countedLookup(() => new Promise(() => {}));
  const clock = { now: 1_000 };
  const resolver = createResolver({
    lookup: counted.lookup,
    now: () => clock.now,
    timeoutMs: 20,
  });
  const waiting = Array.from(
    { length: 10 },
    () => resolver.resolve("stuck.example"),
  );
  for (const pending of waiting) {
    await assert.rejects(
      within(pending, 5_000, "the stuck lookup's failure"),
      /no answer within 20 ms/,
    );
  }
  await assert.rejects(resolver.resolve("stuck.example"), /no answer/);
  assert.deepEqual(counted.names, ["stuck.example"]);
});

Deno.test("failed names are cached within their own bound: the oldest is dropped first", async () => {
  const counted = countedLookup(notFound);
  const allowlist = allowlistWith(["10.0.0.0/8"], counted.lookup, {
    now: 1_000,
  });
  for (let i = 0; i <= RESOLVE_MAX_FAILED_NAMES; i++) {
    await check(allowlist, `name-${i}.example:8000`);
  }
  assert.equal(counted.names.length, RESOLVE_MAX_FAILED_NAMES + 1);
  await check(allowlist, `name-${RESOLVE_MAX_FAILED_NAMES}.example:8000`);
  assert.equal(
    counted.names.length,
    RESOLVE_MAX_FAILED_NAMES + 1,
    "newest kept",
  );
  await check(allowlist, "name-0.example:8000");
  assert.equal(counted.names.at(-1), "name-0.example", "oldest dropped");
});

Deno.test("a flood of names that do not resolve does not push out a name that does", async () => {
  const counted = countedLookup((host) =>
    host === "prefill.svc" ? Promise.resolve(["10.0.0.7"]) : notFound(host)
  );
  const allowlist = allowlistWith(["10.0.0.0/8"], counted.lookup, {
    now: 1_000,
  });
  assert.equal((await check(allowlist, "prefill.svc:8000")).allowed, true);
  for (let i = 0; i < RESOLVE_MAX_NAMES; i++) {
    await check(allowlist, `bad-${i}.example:8000`);
  }
  assert.equal((await check(allowlist, "prefill.svc:8000")).allowed, true);
  assert.equal(
    counted.names.filter((name) => name === "prefill.svc").length,
    1,
    "the good name was looked up again",
  );
});
