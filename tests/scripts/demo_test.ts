import assert from "node:assert/strict";

/** Runs the demo with `args`; returns its stdout after checking it exited 0. */
async function runDemo(args: readonly string[]): Promise<string> {
  const demo = new URL("../../scripts/demo.ts", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      "--allow-run",
      demo,
      ...args,
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  return new TextDecoder().decode(output.stdout);
}

Deno.test("demo runs a P/D exchange and exits 0", async () => {
  const stdout = await runDemo([]);
  assert.match(stdout, /data: \[DONE\]/);
  assert.match(stdout, /sidecar\s+debug sending prefill request/);
  assert.match(stdout, /prefiller .*NIXLConnector request_finished/);
  assert.match(
    stdout,
    /decoder .*start_load_kv for request \S+ from remote engine/,
  );
  // The trace is in the order things happened, though the sidecar writes its
  // lines in batches: the decode leg is logged before the decoder pulls.
  const sent = stdout.search(/sidecar\s+debug sending request to decoder/);
  const pulled = stdout.search(/decoder .*start_load_kv for request/);
  assert.ok(sent !== -1 && sent < pulled, "decode leg logged after the pull");
});

Deno.test("demo --connector sglang shows both legs meeting on one bootstrap room", async () => {
  const stdout = await runDemo(["--connector", "sglang"]);
  assert.match(stdout, /"kv_connector":"sglang"/);
  const room = /Decode joined bootstrap_room (\d+)/.exec(stdout)?.[1];
  assert.ok(room, "the decoder joined a bootstrap room");
  assert.match(stdout, new RegExp(`Received KV of bootstrap_room ${room}`));
  assert.match(stdout, /data: \[DONE\]/);
});

Deno.test("demo refuses an unknown --connector with exit code 2", async () => {
  const demo = new URL("../../scripts/demo.ts", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      "--allow-run",
      demo,
      "--connector",
      "bogus",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 2);
  assert.match(new TextDecoder().decode(output.stderr), /Unknown --connector/);
});
