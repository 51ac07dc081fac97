/**
 * @module
 * Every process the benchmark starts goes through one group, so all of them
 * (and their children, e.g. nginx's workers) are ended on success, on error
 * and on Ctrl-C. Also reads what the kernel knows about a process: CPU time
 * and peak resident memory.
 */

import { SIDECAR_V8_FLAGS } from "../build.ts";

const LINE_TAIL = 40;

/** A started process and the last lines it wrote. */
export interface Started {
  readonly name: string;
  readonly pid: number;
  readonly child: Deno.ChildProcess;
  /** The last lines of stdout and stderr, for error messages. */
  readonly tail: string[];
  /** Resolves with the exit status once the process ended. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Resolves with the first output line `parse` accepts; rejects on exit or after `timeoutMs`. */
  waitForLine<T>(
    parse: (line: string) => T | undefined,
    timeoutMs: number,
  ): Promise<T>;
}

/** Options of `ProcessGroup.start`. */
export interface StartOptions {
  /** Working directory. */
  readonly cwd?: string;
}

/** The processes one benchmark run started. */
export interface ProcessGroup {
  /** Spawns `command` with `args`, piping and draining its output. */
  start(
    name: string,
    command: { cmd: string; args: readonly string[] } & StartOptions,
  ): Started;
  /** Ends one process (and its descendants): SIGTERM, then SIGKILL after `graceMs`. */
  stop(started: Started, graceMs?: number): Promise<void>;
  /** Ends every process still running. */
  stopAll(): Promise<void>;
}

async function drain(
  stream: ReadableStream<Uint8Array>,
  tail: string[],
  listeners: ReadonlySet<(line: string) => void>,
): Promise<void> {
  let buffer = "";
  try {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      buffer += text;
      let newline;
      while ((newline = buffer.indexOf("\n")) !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        tail.push(line);
        if (tail.length > LINE_TAIL) tail.shift();
        for (const listener of listeners) listener(line);
      }
    }
  } catch {
    // The process went away mid-read; what was read is kept.
  }
  if (buffer !== "") tail.push(buffer);
}

/**
 * Reads a /proc file through `cat`: Deno 2 lets only `--allow-all` read
 * /proc, and the benchmark keeps its permissions spelled out. "" when absent.
 */
export async function readProcFile(path: string): Promise<string> {
  try {
    const output = await new Deno.Command("cat", {
      args: [path],
      stdout: "piped",
      stderr: "null",
    }).output();
    return output.success ? new TextDecoder().decode(output.stdout) : "";
  } catch {
    return "";
  }
}

/** Pids of the live descendants of `pid`, deepest last (read from /proc). */
export async function descendantsOf(pid: number): Promise<number[]> {
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const current = queue.shift() as number;
    const text = await readProcFile(
      `/proc/${current}/task/${current}/children`,
    );
    for (const child of text.trim().split(/\s+/).filter((s) => s !== "")) {
      found.push(Number(child));
      queue.push(Number(child));
    }
  }
  return found;
}

function signal(pid: number, name: Deno.Signal): void {
  try {
    Deno.kill(pid, name);
  } catch {
    // Already gone.
  }
}

/** Creates an empty group. */
export function createProcessGroup(): ProcessGroup {
  const running = new Set<Started>();

  async function stop(started: Started, graceMs = 3000): Promise<void> {
    if (!running.has(started)) return;
    const descendants = await descendantsOf(started.pid);
    signal(started.pid, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), graceMs);
    });
    const late = await Promise.race([
      started.status.then(() => false),
      timedOut,
    ]);
    clearTimeout(timer);
    if (late) {
      signal(started.pid, "SIGKILL");
      await started.status;
    }
    // Children that outlived their parent (nginx workers after a SIGKILL) are
    // ended by the pids read before the parent was signalled.
    for (const pid of descendants) signal(pid, "SIGKILL");
    running.delete(started);
  }

  return {
    start(name, command) {
      const child = new Deno.Command(command.cmd, {
        args: [...command.args],
        ...(command.cwd === undefined ? {} : { cwd: command.cwd }),
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const tail: string[] = [];
      const listeners = new Set<(line: string) => void>();
      void drain(child.stdout, tail, listeners);
      void drain(child.stderr, tail, listeners);
      const started: Started = {
        name,
        pid: child.pid,
        child,
        tail,
        status: child.status,
        waitForLine: (parse, timeoutMs) =>
          waitForLine(started, listeners, { parse, timeoutMs }),
      };
      running.add(started);
      void child.status.then(() => running.delete(started));
      return started;
    },
    stop,
    async stopAll() {
      await Promise.all([...running].map((started) => stop(started)));
    },
  };
}

function waitForLine<T>(
  started: Started,
  listeners: Set<(line: string) => void>,
  options: {
    readonly parse: (line: string) => T | undefined;
    readonly timeoutMs: number;
  },
): Promise<T> {
  const { promise, resolve, reject } = Promise.withResolvers<T>();
  const seen = (line: string): void => {
    const value = options.parse(line);
    if (value !== undefined) finish(() => resolve(value));
  };
  const timer = setTimeout(
    () =>
      finish(() =>
        reject(failure(started, `did not start within ${options.timeoutMs} ms`))
      ),
    options.timeoutMs,
  );
  function finish(settle: () => void): void {
    clearTimeout(timer);
    listeners.delete(seen);
    settle();
  }
  listeners.add(seen);
  // Lines already written (the process may be faster than the caller).
  for (const line of started.tail) seen(line);
  void started.status.then((status) =>
    finish(() =>
      reject(
        failure(started, `exited with code ${status.code} before it was ready`),
      )
    )
  );
  return promise;
}

/**
 * Ends every process of `group` and removes `tempDir` (recursively; one
 * already gone is fine). What a benchmark run does on success, on error and
 * on Ctrl-C, where `Deno.exit` skips its `finally`.
 */
export async function stopAllAndRemove(
  group: ProcessGroup,
  tempDir: string,
): Promise<void> {
  await group.stopAll();
  await Deno.remove(tempDir, { recursive: true }).catch(() => {});
}

/** An error naming the process, with its last output lines. */
export function failure(started: Started, what: string): Error {
  const tail = started.tail.slice(-10).join("\n");
  return new Error(
    `Process "${started.name}" (pid ${started.pid}) ${what}${
      tail ? `:\n${tail}` : ""
    }`,
  );
}

/** Runs a process to its end (killed after `timeoutS`) and returns its output lines; throws on a non-zero exit. */
export async function runToEnd(
  group: ProcessGroup,
  name: string,
  command: {
    readonly cmd: string;
    readonly args: readonly string[];
    readonly timeoutS: number;
  },
): Promise<string> {
  const started = group.start(name, command);
  const timer = setTimeout(
    () => void group.stop(started),
    command.timeoutS * 1000,
  );
  const status = await started.status;
  clearTimeout(timer);
  // The output pumps may still hold the last lines.
  await new Promise((resolve) => setTimeout(resolve, 20));
  if (!status.success) {
    throw failure(started, `exited with code ${status.code}`);
  }
  return started.tail.join("\n");
}

/** A free loopback TCP port (bound then released; another process could take it in between). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/**
 * `main.ts` and the flags every benchmarked sidecar gets: its port, the
 * decoder's, loopback only, plain HTTP; `flags` add to them. Run from the
 * repository root so deno.json (its "unstable" list) applies; `main` is the
 * path of `main.ts` when not.
 */
export function sidecarArgs(
  port: number,
  decoderPort: number,
  flags: readonly string[],
  main = "main.ts",
): string[] {
  return [
    main,
    `-port=${port}`,
    `-model-server-port=${decoderPort}`,
    "-listen-host=127.0.0.1",
    "-secure-proxy=false",
    // A port of its own for each run: the default 9090 may be taken.
    ...(flags.some((flag) => flag.includes("metrics-port"))
      ? []
      : [`-metrics-port=${freePort()}`]),
    ...flags,
  ];
}

/**
 * `deno run` with the sidecar's permissions and V8 settings (those of
 * `deno task start` and the executable) and `args`: a script and its
 * arguments, e.g. {@linkcode sidecarArgs}. `v8Flags` replaces the shipped
 * V8 settings ("" runs without any); `runtimeFlags` go before the script
 * (e.g. `--cpu-prof`).
 */
export function sidecarCommand(
  args: readonly string[],
  v8Flags: string = SIDECAR_V8_FLAGS,
  runtimeFlags: readonly string[] = [],
): { cmd: string; args: string[] } {
  return {
    cmd: Deno.execPath(),
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      ...(v8Flags === "" ? [] : [`--v8-flags=${v8Flags}`]),
      ...runtimeFlags,
      ...args,
    ],
  };
}

/**
 * Starts a fixed-answer upstream (`fast_upstream.ts`) as `role`; `chunks`,
 * `intervalMs` and `stepMs` are passed on when given. Resolves once it
 * printed its port.
 */
export async function startFastUpstream(
  group: ProcessGroup,
  role: "prefill" | "decode",
  options: {
    readonly chunks?: number;
    readonly intervalMs?: number;
    readonly stepMs?: number;
  } = {},
): Promise<{ process: Started; port: number }> {
  const process = group.start(`fast ${role}`, {
    cmd: Deno.execPath(),
    args: [
      "run",
      "--allow-net",
      new URL("./fast_upstream.ts", import.meta.url).pathname,
      "--role",
      role,
      ...(options.chunks === undefined
        ? []
        : ["--chunks", String(options.chunks)]),
      ...(options.intervalMs === undefined
        ? []
        : ["--interval-ms", String(options.intervalMs)]),
      ...(options.stepMs === undefined
        ? []
        : ["--step-ms", String(options.stepMs)]),
    ],
  });
  const port = await process.waitForLine(parsePortLine, 30_000);
  return { process, port };
}

/** The port of a `{"port":N}` line, as the bench's own servers print it once listening. */
export function parsePortLine(line: string): number | undefined {
  try {
    const port = (JSON.parse(line) as { port?: unknown }).port;
    return typeof port === "number" ? port : undefined;
  } catch {
    return undefined;
  }
}

/** The last line of `output` that starts with "{", parsed; throws naming `what` when there is none. */
export function lastJsonLine<T>(output: string, what: string): T {
  const line = output.split("\n").findLast((l) => l.startsWith("{"));
  if (line === undefined) {
    throw new Error(`${what} printed no result:\n${output}`);
  }
  return JSON.parse(line) as T;
}

/** Waits until `url` answers (any status); throws after `timeoutMs`. */
export async function waitForHttp(
  url: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await response.body?.cancel();
      return;
    } catch (error) {
      if (performance.now() > deadline) {
        throw new Error(
          `Nothing answered at "${url}" within ${timeoutMs} ms: ${error}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, 100 on Linux). */
export async function clockTicksPerSecond(): Promise<number> {
  try {
    const output = await new Deno.Command("getconf", {
      args: ["CLK_TCK"],
      stdout: "piped",
    }).output();
    const value = Number(new TextDecoder().decode(output.stdout).trim());
    return Number.isFinite(value) && value > 0 ? value : 100;
  } catch {
    return 100;
  }
}

/** CPU seconds (user + system, all threads) `pid` used so far; 0 when it is gone. */
export async function cpuSeconds(
  pid: number,
  ticksPerSecond: number,
): Promise<number> {
  const text = await readProcFile(`/proc/${pid}/stat`);
  if (text === "") return 0;
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / ticksPerSecond;
}

/** The sum of what `seconds` resolves with for each of `pids`. */
async function sumOver(
  pids: readonly number[],
  seconds: (pid: number) => Promise<number>,
): Promise<number> {
  const times = await Promise.all(pids.map(seconds));
  return times.reduce((sum, t) => sum + t, 0);
}

/** CPU seconds of `pid` and all its descendants. */
async function treeCpuSeconds(
  pid: number,
  ticksPerSecond: number,
): Promise<number> {
  return await sumOver(
    [pid, ...await descendantsOf(pid)],
    (p) => cpuSeconds(p, ticksPerSecond),
  );
}

/** CPU seconds of each of `pids` with all its descendants, summed. */
export async function cpuSecondsOf(
  pids: readonly number[],
  ticksPerSecond: number,
): Promise<number> {
  return await sumOver(pids, (pid) => treeCpuSeconds(pid, ticksPerSecond));
}

/** Peak and current resident memory of `pid` in MiB, from /proc/<pid>/status. */
export async function memoryMiB(
  pid: number,
): Promise<{ peak: number; current: number }> {
  const text = await readProcFile(`/proc/${pid}/status`);
  const kib = (key: string): number =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
  return { peak: kib("VmHWM") / 1024, current: kib("VmRSS") / 1024 };
}
