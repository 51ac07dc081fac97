import assert from "node:assert/strict";

Deno.test("demo runs a P/D exchange and exits 0", async () => {
  const demo = new URL("../../scripts/demo.ts", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      "--allow-run",
      demo,
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  assert.match(stdout, /data: \[DONE\]/);
  assert.match(stdout, /sidecar\s+debug sending prefill request/);
  assert.match(stdout, /prefiller .*NIXLConnector request_finished/);
  assert.match(
    stdout,
    /decoder .*start_load_kv for request \S+ from remote engine/,
  );
});
