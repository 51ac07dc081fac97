import assert from "node:assert/strict";
import { compileArgs, SIDECAR_V8_FLAGS } from "../scripts/build.ts";

const root = new URL("../", import.meta.url);

Deno.test("Containerfile builds with the Deno version scripts/deno pins", async () => {
  const pinned = /^DENO_VERSION=(\S+)$/m.exec(
    await Deno.readTextFile(new URL("scripts/deno", root)),
  )?.[1];
  const image = /^ARG DENO_VERSION=(\S+)$/m.exec(
    await Deno.readTextFile(new URL("Containerfile", root)),
  )?.[1];
  assert.ok(pinned);
  assert.equal(image, pinned);
  assert.equal(Deno.version.deno, pinned, "tests must run on the pinned Deno");
});

Deno.test("build task reports a missing denort runtime in one line, exit 3", async () => {
  // Only meaningful where deno compile cannot download its runtime, as on the CI machines.
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "scripts/build.ts",
    ],
    cwd: root.pathname,
    env: { DENORT_BIN: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr).trim();
  if (output.code === 0) {
    assert.match(stderr, /^Built bin\/llm-d-routing-sidecar/);
    return;
  }
  assert.equal(output.code, 3, stderr);
  assert.equal(stderr.split("\n").length, 1);
  assert.match(stderr, /set DENORT_BIN/);
});

Deno.test("the executable and deno task start carry the same V8 flags, and this Deno knows them", async () => {
  assert.ok(compileArgs().includes(`--v8-flags=${SIDECAR_V8_FLAGS}`));
  const config = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", root)),
  ) as { tasks: Record<string, string> };
  assert.ok(
    config.tasks.start?.includes(` --v8-flags=${SIDECAR_V8_FLAGS} main.ts`),
    config.tasks.start,
  );
  // An unknown flag stops deno with "V8 did not recognize flag".
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `--v8-flags=${SIDECAR_V8_FLAGS}`, "0"],
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
});
