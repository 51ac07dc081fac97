/**
 * @module
 * vLLM's own example P/D proxy, `toy_proxy_server.py` from its NIXL
 * integration tests: FastAPI on uvicorn with httpx clients, the yardstick of
 * target 4. It is not part of this repository: the bench downloads it at a
 * pinned commit (or takes a local copy, `--toy-proxy=FILE`) and runs it with
 * the system's Python through `toy_proxy/launch.py`. When it cannot be had,
 * `toy_proxy/equivalent.py`, a proxy of the same design written for this
 * bench, runs instead, and its row says so.
 */

import {
  failure,
  freePort,
  type ProcessGroup,
  type Started,
  waitForHttp,
} from "./processes.ts";

/** The vLLM commit the bench runs `toy_proxy_server.py` from. */
export const TOY_PROXY_COMMIT = "030ea52effcb05071543c8c42b8f0145e94cee43";
const TOY_PROXY_PATH =
  "tests/v1/kv_connector/nixl_integration/toy_proxy_server.py";
/** Where the pinned file is fetched from. */
export const TOY_PROXY_URL =
  `https://raw.githubusercontent.com/vllm-project/vllm/${TOY_PROXY_COMMIT}/${TOY_PROXY_PATH}`;

const HERE = new URL("./toy_proxy/", import.meta.url).pathname;

/** Which program will run as the toy proxy. */
export type ToyProxySource =
  | { readonly kind: "vllm"; readonly file: string; readonly origin: string }
  | { readonly kind: "equivalent"; readonly why: string };

/** The row label of a source. */
export function toyProxyLabel(source: ToyProxySource): string {
  return source.kind === "vllm"
    ? "vLLM toy_proxy_server.py P/D"
    : "equivalent of toy_proxy_server.py P/D";
}

/** What the file must hold to be run by `launch.py`. */
function looksLikeToyProxy(text: string): boolean {
  return /^def parse_args\(/m.test(text) && /^app = FastAPI\(/m.test(text) &&
    /^async def lifespan\(/m.test(text);
}

/**
 * Finds the toy proxy: `localFile` when given, else the pinned file from
 * GitHub saved into `tempDir`; the equivalent when neither works.
 */
export async function obtainToyProxy(
  options: { readonly tempDir: string; readonly localFile?: string },
): Promise<ToyProxySource> {
  let text: string;
  let origin: string;
  try {
    if (options.localFile !== undefined) {
      text = await Deno.readTextFile(options.localFile);
      origin = options.localFile;
    } else {
      const response = await fetch(TOY_PROXY_URL, {
        signal: AbortSignal.timeout(15_000),
      });
      if (!response.ok) {
        await response.body?.cancel();
        throw new Error(`GitHub answered ${response.status}`);
      }
      text = await response.text();
      origin = `vllm-project/vllm@${TOY_PROXY_COMMIT.slice(0, 12)}`;
    }
  } catch (error) {
    const what = options.localFile ?? TOY_PROXY_URL;
    return {
      kind: "equivalent",
      why: `cannot read "${what}": ${
        error instanceof Error ? error.message : error
      }`,
    };
  }
  if (!looksLikeToyProxy(text)) {
    return {
      kind: "equivalent",
      why: `"${origin}" is not the toy proxy this bench knows how to run`,
    };
  }
  const file = `${options.tempDir}/toy_proxy_server.py`;
  await Deno.writeTextFile(file, text);
  return { kind: "vllm", file, origin };
}

/** The command line starting `source` on `port` in front of the two upstreams. */
export function toyProxyArgs(
  source: ToyProxySource,
  ports: {
    readonly port: number;
    readonly prefill: number;
    readonly decode: number;
  },
): string[] {
  if (source.kind === "equivalent") {
    return [
      `${HERE}equivalent.py`,
      "--port",
      String(ports.port),
      "--prefiller-port",
      String(ports.prefill),
      "--decoder-port",
      String(ports.decode),
    ];
  }
  return [
    `${HERE}launch.py`,
    source.file,
    "--port",
    String(ports.port),
    "--prefiller-host",
    "127.0.0.1",
    "--prefiller-port",
    String(ports.prefill),
    "--decoder-host",
    "127.0.0.1",
    "--decoder-port",
    String(ports.decode),
  ];
}

/** Starts the toy proxy with `python` and waits until it answers. */
export async function startToyProxy(
  group: ProcessGroup,
  options: {
    readonly python: string;
    readonly source: ToyProxySource;
    readonly prefill: number;
    readonly decode: number;
  },
): Promise<{ process: Started; port: number }> {
  const port = freePort();
  const process = group.start("toy proxy", {
    cmd: options.python,
    args: toyProxyArgs(options.source, { ...options, port }),
  });
  try {
    await Promise.race([
      waitForHttp(`http://127.0.0.1:${port}/healthcheck`, 30_000),
      process.status.then(() => {
        throw failure(process, "exited before it was listening");
      }),
    ]);
  } catch (error) {
    await group.stop(process);
    throw error;
  }
  return { process, port };
}
