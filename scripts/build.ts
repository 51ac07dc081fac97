/**
 * @module
 * `deno task build`: compiles the sidecar into the single executable
 * `bin/llm-d-routing-sidecar` with `deno compile`. The compile step needs the
 * `denort` runtime: downloaded from Deno's release server, or taken from
 * `DENORT_BIN` when set. Exit codes: 0 built, 3 runtime not obtainable
 * (a fact of the machine, reported in one line), 1 any other failure.
 */

/** Where the executable is written. */
export const OUTPUT = "bin/llm-d-routing-sidecar";

/**
 * Run-time permissions baked into the executable: network, the certificate
 * directory, and the environment (issue 11: with -enable-ssrf-protection,
 * the Kubernetes client, client-node, reads every variable when it loads).
 */
export const RUNTIME_PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-env",
];

/**
 * V8 settings baked into the executable (and passed by `deno task start`):
 * the old generation may grow to 1.5x its live size before a full collection
 * (V8 lets it reach about 3.6x here), and the young generation stays at most
 * 16 MiB per semi-space (32 by default). Measured side by side on the same
 * upstreams: peak RSS 122 against 209 MiB after five rounds of 1,000 streams,
 * 103 against 137 MiB at 32 connections and 122 against 191 at 256, for no
 * CPU per request beyond noise except passthrough at 256 connections (+10%).
 */
export const SIDECAR_V8_FLAGS =
  "--heap-growing-percent=50,--max-semi-space-size=16";

/** `deno compile`'s arguments. */
export function compileArgs(): string[] {
  return [
    "compile",
    // Explicit, although deno.json says it too: without it request.signal
    // also fires after every successful response.
    "--unstable-no-legacy-abort",
    "--unstable-net",
    ...RUNTIME_PERMISSIONS,
    `--v8-flags=${SIDECAR_V8_FLAGS}`,
    "--output",
    OUTPUT,
    "main.ts",
  ];
}

const RUNTIME_UNAVAILABLE =
  /denort|dl\.deno\.land|error sending request|dns error/i;

function say(text: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`${text}\n`));
}

async function build(): Promise<number> {
  const env = Deno.env.toObject();
  // deno compile reads DENORT_BIN itself and fails on an empty value.
  if (!env.DENORT_BIN) delete env.DENORT_BIN;
  const denort = env.DENORT_BIN;
  const command = new Deno.Command(Deno.execPath(), {
    args: compileArgs(),
    clearEnv: true,
    env,
    stdout: "inherit",
    stderr: "piped",
  });
  const { code, stderr } = await command.output();
  const errors = new TextDecoder().decode(stderr);
  if (code === 0) {
    const { size } = await Deno.stat(OUTPUT);
    say(
      `Built ${OUTPUT} (${(size / 1e6).toFixed(1)} MB)${
        denort ? ` with DENORT_BIN=${denort}` : ""
      }`,
    );
    return 0;
  }
  if (denort === undefined && RUNTIME_UNAVAILABLE.test(errors)) {
    say(
      "Cannot build the executable: deno compile could not download its denort runtime " +
        "(no internet access); set DENORT_BIN to a denort binary of the same Deno version",
    );
    return 3;
  }
  say(errors.trim());
  return 1;
}

if (import.meta.main) Deno.exit(await build());
