/**
 * @module
 * Runs the shipped artifact, the bundled `dist/llm-d-routing-sidecar.js`, as
 * a real process, so the tests exercise what operators run.
 */

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
  /** Resolves with the first log line matching `predicate` (rejects if the process ends first). */
  waitForLine(
    predicate: (line: Record<string, unknown>) => boolean,
  ): Promise<Record<string, unknown>>;
}

/** Options of `runBundle` and `startBundle`. */
export interface BundleOptions {
  /** Environment variables added to the test process's. */
  readonly env?: Readonly<Record<string, string>>;
}

/** Runs the bundle with `args` and collects its output. */
export async function runBundle(
  args: readonly string[],
  options: BundleOptions = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [...RUN_FLAGS, BUNDLE, ...args],
    ...(options.env ? { env: { ...options.env } } : {}),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Starts the bundle with `args`; `await using` kills it. */
export function startBundle(
  args: readonly string[],
  options: BundleOptions = {},
): SidecarProcess {
  const process = new Deno.Command(Deno.execPath(), {
    args: [...RUN_FLAGS, BUNDLE, ...args],
    ...(options.env ? { env: { ...options.env } } : {}),
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: Record<string, unknown>[] = [];
  const waiters: {
    predicate: (line: Record<string, unknown>) => boolean;
    resolve: (line: Record<string, unknown>) => void;
  }[] = [];
  let ended: (() => void) | undefined;
  const endedPromise = new Promise<void>((resolve) => ended = resolve);
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
      for (const waiter of waiters.splice(0)) {
        if (waiter.predicate(line)) waiter.resolve(line);
        else waiters.push(waiter);
      }
    }
    ended?.();
  })();
  return {
    process,
    lines,
    waitForLine(predicate) {
      const seen = lines.find(predicate);
      if (seen) return Promise.resolve(seen);
      return Promise.race([
        new Promise<Record<string, unknown>>((resolve) =>
          waiters.push({ predicate, resolve })
        ),
        endedPromise.then(() => {
          throw new Error(
            `Sidecar exited before the expected log line; it wrote:\n${
              JSON.stringify(lines, null, 1)
            }`,
          );
        }),
      ]);
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
