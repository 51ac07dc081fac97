import assert from "node:assert/strict";
import { ProxyError } from "../src/errors.ts";
import {
  MAX_PREFILL_TARGETS,
  selectPrefillTarget,
} from "../src/prefill_selection.ts";

const FIRST = { sampling: false, random: () => 0.99 };

Deno.test("selectPrefillTarget takes the first of a comma-separated list, trimmed", () => {
  const headers = new Headers({ "x-prefiller-host-port": " a:1 , b:2,c:3" });
  assert.equal(selectPrefillTarget(headers, FIRST)?.hostPort, "a:1");
});

Deno.test("selectPrefillTarget reads several header lines like one list", () => {
  const headers = new Headers([["x-prefiller-host-port", "a:1"], [
    "x-prefiller-host-port",
    "b:2",
  ]]);
  assert.equal(
    selectPrefillTarget(headers, { sampling: true, random: () => 0.6 })
      ?.hostPort,
    "b:2",
  );
});

Deno.test("selectPrefillTarget samples uniformly with -enable-prefiller-sampling", () => {
  const headers = new Headers({ "x-prefiller-host-port": "a:1,b:2,c:3" });
  const picks = [0, 0.34, 0.67, 0.999].map((r) =>
    selectPrefillTarget(headers, { sampling: true, random: () => r })?.hostPort
  );
  assert.deepEqual(picks, ["a:1", "b:2", "c:3", "c:3"]);
});

Deno.test("selectPrefillTarget falls back to the legacy x-prefiller-url", () => {
  const headers = new Headers({
    "x-prefiller-host-port": " , ",
    "x-prefiller-url": "http://old:8002",
  });
  assert.equal(selectPrefillTarget(headers, FIRST)?.hostPort, "old:8002");
});

Deno.test("selectPrefillTarget returns undefined without a usable value", () => {
  assert.equal(selectPrefillTarget(new Headers(), FIRST), undefined);
  assert.equal(
    selectPrefillTarget(new Headers({ "x-prefiller-host-port": "" }), FIRST),
    undefined,
  );
});

Deno.test("selectPrefillTarget rejects a bad entry even when another would be picked", () => {
  const headers = new Headers({
    "x-prefiller-host-port": "a:1,http://x:1/path",
  });
  assert.throws(() => selectPrefillTarget(headers, FIRST), ProxyError);
});

Deno.test("selectPrefillTarget refuses more than MAX_PREFILL_TARGETS entries, empty ones included", () => {
  const at = (count: number, entry: string) =>
    new Headers({
      "x-prefiller-host-port": Array(count).fill(entry).join(","),
    });
  assert.equal(
    selectPrefillTarget(at(MAX_PREFILL_TARGETS, "a:1"), FIRST)?.hostPort,
    "a:1",
  );
  for (const entry of ["a:1", ""]) {
    assert.throws(
      () => selectPrefillTarget(at(MAX_PREFILL_TARGETS + 1, entry), FIRST),
      (error: unknown) =>
        error instanceof ProxyError && error.status === 400 &&
        error.code === "too_many_prefill_targets",
    );
  }
});
