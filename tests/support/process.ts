/**
 * @module
 * Runs the shipped artifact, the bundled `dist/llm-d-routing-sidecar.js`, as
 * a real process, so the tests exercise what operators run.
 */

import { ALLOWED_ENV_VARS } from "../../src/flag_table.ts";
import { createWaiters, within } from "./deadline.ts";
import { TextLineStream } from "./text_line_stream.ts";

/** Path of the bundle `deno task bundle` writes. */
export const BUNDLE =
  new URL("../../dist/llm-d-routing-sidecar.js", import.meta.url).pathname;

/** The run-time flags the sidecar is shipped with. */
export const RUN_FLAGS = [
  "run",
  "--no-config",
  "--unstable-no-legacy-abort",
  "--unstable-net",
  "--allow-net",
  "--allow-read",
  // As scripts/build.ts RUNTIME_PERMISSIONS (issue 11: client-node and undici read the environment).
  "--allow-env",
];

/** A running sidecar process and its stderr log lines. */
export interface SidecarProcess extends AsyncDisposable {
  readonly process: Deno.ChildProcess;
  /** Parsed JSON log lines read so far. */
  readonly lines: Record<string, unknown>[];
  /**
   * Resolves with the first log line matching `predicate`; rejects if the
   * process ends first or after `timeoutMs` (default 10 s).
   */
  waitForLine(
    predicate: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** Resolves with the exit code; rejects if the process runs past `timeoutMs` (default 30 s). */
  exitCode(timeoutMs?: number): Promise<number>;
}

/** How long `waitForLine` waits by default: start-up takes well under a second. */
const LINE_DEADLINE_MS = 10_000;
/** How long `exitCode` waits by default: past the longest grace a test sets. */
const EXIT_DEADLINE_MS = 30_000;

/** Options of `runBundle` and `startBundle`. */
export interface BundleOptions {
  /** Environment variables set on top of the test's own. */
  readonly env?: Readonly<Record<string, string>>;
  /** Run with `--allow-all` instead of the shipped permissions (what `-watch-client-connections` needs). */
  readonly allowAll?: boolean;
  /** Permissions granted on top of the shipped ones, e.g. `--allow-ffi`. */
  readonly extraPermissions?: readonly string[];
  /** Leave `-metrics-port` at its default (9090) instead of turning it off. */
  readonly defaultMetricsPort?: boolean;
}

/** `RUN_FLAGS` and `extraPermissions`, or with `--allow-all` in place of its permissions. */
function runFlags(options: BundleOptions): string[] {
  if (!options.allowAll) {
    return [...RUN_FLAGS, ...(options.extraPermissions ?? [])];
  }
  return [
    ...RUN_FLAGS.filter((flag) => !flag.startsWith("--allow-")),
    "--allow-all",
  ];
}

/**
 * The sidecar's variables cleared (the test's environment must not leak into
 * the sidecar's configuration), then `env` set.
 */
function sidecarEnv(
  env: Readonly<Record<string, string>> = {},
): Record<string, string> {
  const inherited = Deno.env.toObject();
  for (const name of ALLOWED_ENV_VARS) delete inherited[name];
  return { ...inherited, ...env };
}

/**
 * Runs the bundle with `args` and collects its output. A run expected to
 * exit (usage, a refused flag) that starts serving instead is killed after
 * {@linkcode EXIT_DEADLINE_MS} and rejects, so the test fails, not hangs.
 */
export async function runBundle(
  args: readonly string[],
  options: BundleOptions = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...runFlags(options), BUNDLE, ...args],
    clearEnv: true,
    env: sidecarEnv(options.env),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), EXIT_DEADLINE_MS);
  const output = await child.output().finally(() => clearTimeout(timer));
  if (output.signal === "SIGKILL") {
    throw new Error(
      `The sidecar run with ${
        JSON.stringify(args)
      } did not exit within ${EXIT_DEADLINE_MS} ms`,
    );
  }
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * `args` with `-metrics-port=0` first unless they set the port: tests run
 * side by side, and the default port 9090 can be taken by only one.
 */
export function withoutDefaultMetricsPort(args: readonly string[]): string[] {
  if (args.some((arg) => arg.includes("metrics-port"))) return [...args];
  return ["-metrics-port=0", ...args];
}

/** Starts the bundle with `args`; `await using` kills it. */
export function startBundle(
  args: readonly string[],
  options: BundleOptions = {},
): SidecarProcess {
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      ...runFlags(options),
      BUNDLE,
      ...(options.defaultMetricsPort ? args : withoutDefaultMetricsPort(args)),
    ],
    clearEnv: true,
    env: sidecarEnv(options.env),
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: Record<string, unknown>[] = [];
  const logged = createWaiters();
  const pump = (async () => {
    const stream = process.stderr.pipeThrough(new TextDecoderStream())
      .pipeThrough(new TextLineStream());
    for await (const text of stream) {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text);
      } catch {
        line = { level: "raw", msg: text };
      }
      lines.push(line);
      logged.notify();
    }
    logged.end("The sidecar exited");
  })();
  return {
    process,
    lines,
    waitForLine: (predicate, timeoutMs = LINE_DEADLINE_MS) =>
      logged.until(
        () => lines.find(predicate),
        `a log line where ${predicate}`,
        {
          ms: timeoutMs,
          detail: () => `the sidecar wrote:\n${JSON.stringify(lines, null, 1)}`,
        },
      ),
    async exitCode(timeoutMs = EXIT_DEADLINE_MS) {
      const status = await within(
        process.status,
        timeoutMs,
        `The sidecar did not exit within ${timeoutMs} ms`,
      );
      return status.code;
    },
    async [Symbol.asyncDispose]() {
      try {
        process.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await process.status;
      await pump;
    },
  };
}

/** A loopback port that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** A bundle started by {@linkcode startPlainBundle}: the port it listens on and its base URL. */
export interface PlainSidecarProcess extends SidecarProcess {
  readonly port: number;
  readonly base: string;
}

/** Starts the bundle on a free loopback port in front of `decodePort`, plain HTTP, with `flags` added; `await using` kills it. */
export function startPlainBundle(
  decodePort: number,
  flags: readonly string[] = [],
  options: BundleOptions = {},
): PlainSidecarProcess {
  const port = freePort();
  const sidecar = startBundle([
    `-port=${port}`,
    `-model-server-port=${decodePort}`,
    "-listen-host=127.0.0.1",
    "-secure-proxy=false",
    ...flags,
  ], options);
  return Object.assign(sidecar, { port, base: `http://127.0.0.1:${port}` });
}

/** How long {@linkcode fetchOnOwnConnection} waits unless `init` has a signal. */
const FETCH_DEADLINE_MS = 10_000;

/**
 * Sends `init` to `url` on a connection of its own, as a kubelet probe does
 * and as spreading requests over listener threads needs (the kernel spreads
 * connections, not requests); resolves with the status and the body's text.
 */
export async function fetchOnOwnConnection(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; text: string }> {
  using client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  const response = await fetch(url, {
    signal: AbortSignal.timeout(FETCH_DEADLINE_MS),
    ...init,
    client,
  });
  return { status: response.status, text: await response.text() };
}
