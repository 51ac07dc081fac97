/**
 * @module
 * What the benchmark needs from the machine, found or installed before any
 * row runs: nginx (the reference proxy), wrk (the load generator; autocannon
 * through npx otherwise), and Python with FastAPI, httpx and uvicorn (to run
 * vLLM's example P/D proxy). What is missing is installed with apt-get when
 * the bench runs as root on a Debian-like system, unless told not to; what
 * still is missing afterwards is named, with the rows it costs. Also raises
 * the soft limit on open files, which 2,000-connection rows need.
 */

import { readProcFile } from "./processes.ts";

/** A tool the bench looks for, with the rows it takes away when missing. */
export type ToolName = "nginx" | "wrk" | "python";

/** Debian packages per tool. uvloop is what vLLM's own `uvicorn[standard]` runs on. */
export const APT_PACKAGES: Readonly<Record<ToolName, readonly string[]>> = {
  nginx: ["nginx"],
  wrk: ["wrk"],
  python: [
    "python3-fastapi",
    "python3-httpx",
    "python3-uvicorn",
    "python3-uvloop",
  ],
};

/** What each tool's absence costs, for the report. */
export const MISSING_COSTS: Readonly<Record<ToolName, string>> = {
  nginx:
    "nginx: no nginx rows, so the burst and streaming targets (2, 3) cannot be judged",
  wrk:
    "wrk: autocannon (npx) generates the load instead; its whole-millisecond latencies blur the c=1 targets",
  python:
    "Python FastAPI/httpx/uvicorn: no toy_proxy_server.py row, so target 4 cannot be judged",
};

/** Python modules the toy proxy imports. */
const PYTHON_CHECK =
  "import sys, fastapi, httpx, uvicorn; print(sys.version.split()[0], fastapi.__version__, httpx.__version__, uvicorn.__version__)";

/** The system's Python first: apt installs its packages there, not into a pyenv or venv one. */
const PYTHON_CANDIDATES = ["/usr/bin/python3", "python3"];

/** What was found on the machine. */
export interface Tools {
  /** nginx's version, e.g. "1.22.1". */
  readonly nginx?: string;
  readonly wrk?: string;
  readonly python?: {
    readonly command: string;
    /** "3.11.2, fastapi 0.92.0, httpx 0.23.3, uvicorn 0.17.6". */
    readonly versions: string;
  };
}

/** What `ensureTools` did. */
export interface ToolSetup {
  readonly tools: Tools;
  /** Packages installed by this run. */
  readonly installed: readonly string[];
  /** Why tools are still missing: one line per tool, with the rows it costs. */
  readonly missing: readonly string[];
}

async function output(
  cmd: string,
  args: readonly string[],
): Promise<{ ok: boolean; text: string }> {
  try {
    const result = await new Deno.Command(cmd, {
      args: [...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    return {
      ok: result.success,
      text: decoder.decode(result.stdout) + decoder.decode(result.stderr),
    };
  } catch {
    return { ok: false, text: "" };
  }
}

/** Looks for each tool; nothing is installed. */
export async function findTools(): Promise<Tools> {
  const nginx = /nginx\/(\S+)/.exec((await output("nginx", ["-v"])).text)?.[1];
  const wrk = /wrk (\S+)/.exec((await output("wrk", ["--version"])).text)
    ?.[1];
  let python: Tools["python"];
  for (const command of PYTHON_CANDIDATES) {
    const found = await output(command, ["-c", PYTHON_CHECK]);
    const [version, fastapi, httpx, uvicorn] = found.text.trim().split(" ");
    if (found.ok && uvicorn !== undefined) {
      python = {
        command,
        versions:
          `${version}, fastapi ${fastapi}, httpx ${httpx}, uvicorn ${uvicorn}`,
      };
      break;
    }
  }
  return {
    ...(nginx === undefined ? {} : { nginx }),
    ...(wrk === undefined ? {} : { wrk }),
    ...(python === undefined ? {} : { python }),
  };
}

/** The tools `tools` lacks. */
export function missingTools(tools: Tools): ToolName[] {
  return (["nginx", "wrk", "python"] as const).filter((name) =>
    tools[name] === undefined
  );
}

/** The apt packages that would provide `missing`. */
export function packagesFor(missing: readonly ToolName[]): string[] {
  return missing.flatMap((name) => APT_PACKAGES[name]);
}

/** Why `apt-get` cannot be used here, or undefined when it can. */
async function whyNoApt(): Promise<string | undefined> {
  if (!(await output("apt-get", ["--version"])).ok) {
    return "no apt-get on this system";
  }
  const uid = (await output("id", ["-u"])).text.trim();
  return uid === "0" ? undefined : "not running as root";
}

async function aptGet(
  args: readonly string[],
  timeoutS: number,
): Promise<{ ok: boolean; text: string }> {
  const child = new Deno.Command("apt-get", {
    args: [...args],
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already ended.
    }
  }, timeoutS * 1000);
  const result = await child.output();
  clearTimeout(timer);
  const decoder = new TextDecoder();
  return {
    ok: result.success,
    text: decoder.decode(result.stdout) + decoder.decode(result.stderr),
  };
}

/**
 * Finds the tools and installs the missing ones with apt-get when `install`
 * and allowed here (`apt-get update` once, when the package lists are stale).
 * `log` reports what it does.
 */
export async function ensureTools(
  options: { readonly install: boolean; readonly log: (text: string) => void },
): Promise<ToolSetup> {
  let tools = await findTools();
  let missing = missingTools(tools);
  const installed: string[] = [];
  let why: string | undefined;
  if (missing.length > 0) {
    why = options.install ? await whyNoApt() : "--no-install";
  }
  if (missing.length > 0 && why === undefined) {
    const packages = packagesFor(missing);
    options.log(`installing with apt-get: ${packages.join(" ")}`);
    const install = ["install", "-y", "--no-install-recommends", ...packages];
    let result = await aptGet(install, 300);
    if (!result.ok) {
      options.log("apt-get install failed; running apt-get update, then again");
      await aptGet(["update"], 300);
      result = await aptGet(install, 300);
    }
    if (result.ok) installed.push(...packages);
    else why = `apt-get failed: ${result.text.trim().split("\n").at(-1)}`;
    tools = await findTools();
    missing = missingTools(tools);
  }
  return {
    tools,
    installed,
    missing: missing.map((name) =>
      `${MISSING_COSTS[name]} (${why ?? "installed, but still not found"})`
    ),
  };
}

/** Soft and hard limits on open files of `pid`, from /proc. */
export async function openFileLimits(
  pid: number,
): Promise<{ soft: number; hard: number } | undefined> {
  const text = await readProcFile(`/proc/${pid}/limits`);
  const match = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (match === null) return undefined;
  const value = (field: string | undefined) =>
    field === "unlimited" ? Infinity : Number(field);
  return { soft: value(match[1]), hard: value(match[2]) };
}

/**
 * The soft limit to ask for, or undefined when `current` already allows
 * `needed` descriptors. Never above the hard limit, which only root may raise.
 */
export function raisedSoftLimit(
  current: { readonly soft: number; readonly hard: number },
  needed: number,
): number | undefined {
  if (current.soft >= needed) return undefined;
  return Math.min(current.hard, Math.max(needed, current.soft));
}

/**
 * Raises this process's soft limit on open files to at least `needed` when
 * the hard limit allows (`prlimit`; children started later inherit it).
 * Returns a line for the report.
 */
export async function ensureOpenFiles(needed: number): Promise<string> {
  const current = await openFileLimits(Deno.pid);
  if (current === undefined) return "open files limit: unknown (no /proc)";
  const target = raisedSoftLimit(current, needed);
  const limits = `soft ${current.soft}, hard ${current.hard}`;
  if (target === undefined || target <= current.soft) {
    return current.soft >= needed
      ? `open files limit: ${limits}, enough for ${needed}`
      : `open files limit: ${limits}, below the ${needed} the 2,000-connection rows need; expect errors there`;
  }
  const hard = current.hard === Infinity ? "unlimited" : String(current.hard);
  const raised = await output("prlimit", [
    "--pid",
    String(Deno.pid),
    `--nofile=${target}:${hard}`,
  ]);
  return raised.ok
    ? `open files limit: soft raised from ${current.soft} to ${target} (hard ${hard}) for the 2,000-connection rows`
    : `open files limit: ${limits}; raising it with prlimit failed: ${raised.text.trim()}`;
}
