/**
 * Runs the mock vLLM server standalone, e.g. as the prefiller and decoder of
 * a demo: `deno task mock --port 8200 --name decoder`. Log lines go to
 * stderr in vLLM's format; SIGINT/SIGTERM close it cleanly.
 *
 * `--kv-connector` picks the one KV protocol the engine speaks, as vLLM's
 * `--kv-transfer-config` does (a real engine does not guess it from
 * requests). Two processes P/D pair, e.g. SGLang:
 * `--kv-connector sglang --kv-role kv_producer --port 8100` and
 * `--kv-connector sglang --kv-role kv_consumer --port 8200`, with the
 * sidecar's bootstrap port set to the prefiller's side-channel port (8100).
 * LMCache or shared storage across processes: give the decoder
 * `--kv-store-url http://127.0.0.1:8100` (the prefiller's side channel).
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  createMockVllm,
  KV_CONNECTOR_NAMES,
  KV_ROLES,
  type MockVllmOptions,
} from "./mock_vllm/mod.ts";

/** `--help` text. */
export const USAGE =
  `Usage: deno run --allow-net --allow-env [--allow-read] scripts/mock_vllm.ts [flags]

Mock vLLM server (OpenAI, Anthropic Messages and generate APIs, plus the P/D KV
hand-off of every llm-d connector) for tests and demos.

Flags:
  --port N                       port to listen on (default 8000; 0 = ephemeral)
  --host HOST                    address to bind (default 127.0.0.1)
  --name NAME                    label for log lines, e.g. prefiller or decoder (default vllm)
  --model NAME                   served model (default Qwen/Qwen3-0.6B)
  --engine-id ID                 NIXL/Mooncake engine id (default a random uuid)
  --kv-connector NAME            KV protocol spoken: nixlv2 | nixl | lmcache | sglang |
                                 shared-storage | mooncake | offloading (default nixlv2)
  --kv-role ROLE                 kv_producer | kv_consumer | kv_both (default kv_both); sglang:
                                 prefill / decode server; lmcache, shared-storage: consumers
                                 do not store
  --kv-store-url URL             side channel of the mock whose KV store lmcache and
                                 shared-storage use (default: this mock's own)
  --kv-wait-timeout-ms MS        how long one side of a concurrent exchange (sglang,
                                 mooncake, offloading) waits for the other (default 10000)
  --data-parallel-size N         ranks X-Data-Parallel-Rank may name; mooncake /query lists
                                 one engine id per rank (default 1)
  --ttft-ms MS                   time to first token (default 0)
  --inter-token-ms MS            inter-token latency (default 0)
  --kv-transfer-ms MS            replaces TTFT on a decode that pulled KV (default 0)
  --kv-lease-ms MS               how long a prefiller keeps issued blocks (default 30000)
  --kv-load-failure-policy P     fail | recompute (default fail)
  --failure-rate R               0..1, probability of an injected error (default 0)
  --failure-status N             status of injected errors (default 503)
  --output-tokens N              natural length of the canned reply (default 12)
  --enable-request-id-headers    echo X-Request-Id response headers
  --enable-prompt-tokens-details report usage.prompt_tokens_details
  --side-channel-host HOST       host advertised as remote_host (env VLLM_NIXL_SIDE_CHANNEL_HOST)
  --side-channel-port N          serve the KV side channel on its own port (env
                                 VLLM_NIXL_SIDE_CHANNEL_PORT); it is also the SGLang and
                                 Mooncake bootstrap port and the offloading P2P port
  --tls-cert FILE --tls-key FILE serve HTTPS (needs --allow-read)
  -h, --help                     show this help

Runtime knobs can also be changed with POST /admin/config (latencies, failure
injection, kvLeaseMs, kvLoadFailurePolicy, kvWaitTimeoutMs, ...).
`;

/** Bad command-line input; the CLI prints it and exits 2. */
export class UsageError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** What the command line asks for. */
export interface CliRequest {
  readonly help: boolean;
  readonly options: MockVllmOptions;
  readonly tlsFiles?: { readonly cert: string; readonly key: string };
}

const NUMBER_FLAGS = {
  "port": "port",
  "ttft-ms": "ttftMs",
  "inter-token-ms": "interTokenMs",
  "kv-transfer-ms": "kvTransferMs",
  "kv-lease-ms": "kvLeaseMs",
  "failure-rate": "failureRate",
  "failure-status": "failureStatus",
  "output-tokens": "outputTokens",
  "side-channel-port": "sideChannelPort",
  "kv-wait-timeout-ms": "kvWaitTimeoutMs",
  "data-parallel-size": "dataParallelSize",
} as const;

const STRING_FLAGS = {
  "host": "hostname",
  "name": "name",
  "model": "model",
  "engine-id": "engineId",
  "side-channel-host": "sideChannelHost",
  "kv-store-url": "kvStoreUrl",
} as const;

/** Flags whose value must be one of a fixed list. */
const CHOICE_FLAGS = {
  "kv-load-failure-policy": {
    key: "kvLoadFailurePolicy",
    choices: ["fail", "recompute"],
  },
  "kv-connector": { key: "kvConnector", choices: KV_CONNECTOR_NAMES },
  "kv-role": { key: "kvRole", choices: KV_ROLES },
} as const;

type FlagValues = Record<string, string | boolean | undefined>;

/** Parses flags (and the two NIXL side-channel env vars) into mock options; throws {@linkcode UsageError}. */
export function parseCliArgs(
  args: readonly string[],
  env: (name: string) => string | undefined,
): CliRequest {
  const values = readFlags(args);
  const options: Record<string, unknown> = {
    port: 8000,
    ...sideChannelEnv(env),
  };
  for (const [flag, key] of Object.entries(NUMBER_FLAGS)) {
    const value = values[flag];
    if (typeof value === "string") {
      options[key] = parseNumber(`--${flag}`, value);
    }
  }
  for (const [flag, key] of Object.entries(STRING_FLAGS)) {
    const value = values[flag];
    if (typeof value === "string") options[key] = value;
  }
  for (const [flag, { key, choices }] of Object.entries(CHOICE_FLAGS)) {
    const value = values[flag];
    if (value === undefined) continue;
    if (!(choices as readonly unknown[]).includes(value)) {
      throw new UsageError(
        `Invalid --${flag} "${value}": expected ${
          choices.map((c) => `"${c}"`).join(", ")
        }`,
      );
    }
    options[key] = value;
  }
  const ranks = options.dataParallelSize;
  if (ranks !== undefined && !(Number.isInteger(ranks) && Number(ranks) >= 1)) {
    throw new UsageError(
      `Invalid --data-parallel-size "${
        values["data-parallel-size"]
      }": expected an integer >= 1`,
    );
  }
  if (values["enable-request-id-headers"] === true) {
    options.enableRequestIdHeaders = true;
  }
  if (values["enable-prompt-tokens-details"] === true) {
    options.promptTokensDetails = true;
  }
  const tlsFiles = readTlsFiles(values);
  return {
    help: values.help === true,
    options: options as MockVllmOptions,
    ...(tlsFiles ? { tlsFiles } : {}),
  };
}

function readFlags(args: readonly string[]): FlagValues {
  const stringFlags = [
    ...Object.keys(NUMBER_FLAGS),
    ...Object.keys(STRING_FLAGS),
    ...Object.keys(CHOICE_FLAGS),
    "tls-cert",
    "tls-key",
  ];
  try {
    return parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: false,
      options: {
        ...Object.fromEntries(
          stringFlags.map((flag) => [flag, { type: "string" as const }]),
        ),
        "enable-request-id-headers": { type: "boolean" },
        "enable-prompt-tokens-details": { type: "boolean" },
        "help": { type: "boolean", short: "h" },
      },
    }).values;
  } catch (error) {
    throw new UsageError(
      error instanceof Error ? error.message : String(error),
    );
  }
}

/** vLLM's NIXL side-channel variables, as defaults the flags override. */
function sideChannelEnv(
  env: (name: string) => string | undefined,
): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  const host = env("VLLM_NIXL_SIDE_CHANNEL_HOST");
  const port = env("VLLM_NIXL_SIDE_CHANNEL_PORT");
  if (host) options.sideChannelHost = host;
  if (port) {
    options.sideChannelPort = parseNumber("VLLM_NIXL_SIDE_CHANNEL_PORT", port);
  }
  return options;
}

function readTlsFiles(
  values: FlagValues,
): { cert: string; key: string } | undefined {
  const cert = values["tls-cert"];
  const key = values["tls-key"];
  if (typeof cert === "string" && typeof key === "string") return { cert, key };
  if (cert !== undefined || key !== undefined) {
    throw new UsageError(
      "Flags --tls-cert and --tls-key must be given together",
    );
  }
  return undefined;
}

function parseNumber(flag: string, value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) {
    throw new UsageError(`Invalid ${flag} "${value}": expected a number`);
  }
  return n;
}

function printError(line: string): void {
  // deno-lint-ignore no-console
  console.error(line);
}

/** Runs the CLI until SIGINT/SIGTERM; returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  let request: CliRequest;
  try {
    request = parseCliArgs(args, (name) => Deno.env.get(name));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    printError(`mock_vllm: ${error.message}\nRun with --help for usage.`);
    return 2;
  }
  if (request.help) {
    await Deno.stdout.write(new TextEncoder().encode(USAGE));
    return 0;
  }
  const options: MockVllmOptions = { ...request.options, log: printError };
  try {
    if (request.tlsFiles) {
      options.tls = {
        cert: await Deno.readTextFile(request.tlsFiles.cert),
        key: await Deno.readTextFile(request.tlsFiles.key),
      };
    }
    const mock = await createMockVllm(options);
    const { promise: stopped, resolve } = Promise.withResolvers<void>();
    const stop = () => void mock.close().then(resolve);
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
    await stopped;
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // Out-of-range knob values are bad input too: name the flag and exit 2.
    const flag = flagForKey(error);
    if (flag !== undefined) {
      printError(`mock_vllm: Invalid ${flag}: ${message}`);
      return 2;
    }
    printError(`mock_vllm: Cannot start the mock vLLM server: ${message}`);
    return 1;
  }
}

function flagForKey(error: unknown): string | undefined {
  if (
    !(error instanceof Error) || !("key" in error) ||
    typeof error.key !== "string"
  ) return undefined;
  const flags: Record<string, string> = {
    ...NUMBER_FLAGS,
    ...STRING_FLAGS,
    ...Object.fromEntries(
      Object.entries(CHOICE_FLAGS).map(([flag, { key }]) => [flag, key]),
    ),
  };
  const flag = Object.entries(flags).find(([, key]) => key === error.key)?.[0];
  return flag === undefined ? undefined : `--${flag}`;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
