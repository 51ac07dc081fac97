// deno-lint-ignore-file no-console -- a terminal demo: printing is its job
/**
 * @module
 * `deno task demo`: a real P/D exchange a newcomer can watch. Starts a mock
 * vLLM prefiller and decoder and the sidecar (the real `main.ts`, as its own
 * process) on free loopback ports, sends one non-streaming and one streaming
 * request with the prefiller header, then prints what each process saw.
 * `--connector NAME` runs that KV connector (the mocks speak it too);
 * `--keep-running` leaves everything up for curl until Ctrl-C.
 */

import { parseArgs } from "node:util";
import { freePort, sidecarArgs, sidecarCommand } from "./bench/processes.ts";
import {
  createKvStore,
  createMockVllm,
  KV_CONNECTOR_NAMES,
  type KvConnectorName,
  type MockVllm,
} from "./mock_vllm/mod.ts";

interface TraceLine {
  readonly at: number;
  readonly who: string;
  readonly text: string;
}

const trace: TraceLine[] = [];
// After the scripted requests, lines are printed as they come (--keep-running).
let live = false;
const started = performance.now();
const color = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
const PALETTE: Record<string, string> = {
  client: "36",
  sidecar: "35",
  prefiller: "33",
  decoder: "32",
};

function paint(code: string, text: string): string {
  return color ? `\x1b[${code}m${text}\x1b[0m` : text;
}

function record(
  who: string,
  text: string,
  at: number = performance.now() - started,
): void {
  const line = { at, who, text };
  if (live) printLine(line);
  else trace.push(line);
}

function printLine(line: TraceLine): void {
  const who = paint(PALETTE[line.who] ?? "0", line.who.padEnd(9));
  console.log(
    `${paint("2", `${line.at.toFixed(0).padStart(5)} ms`)} ${who} ${line.text}`,
  );
}

/** A mock's log line without its "(name) " prefix, which the trace shows in its own column. */
function withoutName(text: string): string {
  return text.replace(/^\([^)]*\) /, "");
}

function heading(text: string): void {
  console.log(`\n${paint("1", `== ${text}`)}`);
}

/**
 * A sidecar log line for the trace, placed at the time it was logged: the
 * sidecar writes its lines below warn in batches up to 50 ms late, so the
 * time it arrived would put it after what it caused.
 */
function recordSidecar(text: string): void {
  try {
    const { level, ts, logger: _logger, msg, ...fields } = JSON.parse(text);
    const logged = typeof ts === "number"
      ? ts * 1000 - performance.timeOrigin - started
      : undefined;
    record("sidecar", `${level} ${msg} ${JSON.stringify(fields)}`, logged);
  } catch {
    record("sidecar", text);
  }
}

/**
 * The sidecar's flags for `connector`: the prefiller's side channel is its
 * SGLang and Mooncake bootstrap server and its P2P listener.
 */
function connectorFlags(
  connector: KvConnectorName,
  prefiller: MockVllm,
): string[] {
  const sideChannel = prefiller.sideChannelPort;
  return [
    `-kv-connector=${connector}`,
    ...(connector === "mooncake"
      ? [`-mooncake-bootstrap-port=${sideChannel}`]
      : []),
    ...(connector === "offloading"
      ? [`-p2p-connector-port=${sideChannel}`]
      : []),
  ];
}

async function startSidecar(
  port: number,
  mocks: { readonly prefiller: MockVllm; readonly decoder: MockVllm },
  connector: KvConnectorName,
): Promise<Deno.ChildProcess> {
  const main = new URL("../main.ts", import.meta.url).pathname;
  const { cmd, args } = sidecarCommand(
    sidecarArgs(port, mocks.decoder.port, [
      "-v=4",
      ...connectorFlags(connector, mocks.prefiller),
    ], main),
  );
  const child = new Deno.Command(cmd, {
    args,
    // sglang's bootstrap port comes from the environment, as in Go.
    env: { SGLANG_BOOTSTRAP_PORT: String(mocks.prefiller.sideChannelPort) },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream());
  const { promise: listening, resolve, reject } = Promise.withResolvers<void>();
  (async () => {
    let buffer = "";
    for await (const chunk of lines) {
      buffer += chunk;
      let newline;
      while ((newline = buffer.indexOf("\n")) !== -1) {
        const text = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        recordSidecar(text);
        if (text.includes('"msg":"starting"')) resolve();
      }
    }
    reject(
      new Error("The sidecar exited before listening; see its log lines above"),
    );
  })();
  await listening;
  return child;
}

async function sendRequests(base: string, prefiller: string): Promise<void> {
  const headers = {
    "content-type": "application/json",
    "x-prefiller-host-port": prefiller,
  };
  heading(`POST ${base}/v1/completions  (x-prefiller-host-port: ${prefiller})`);
  record("client", "POST /v1/completions (non-streaming)");
  const plain = await fetch(`${base}/v1/completions`, {
    method: "POST",
    headers,
    body: JSON.stringify({
      model: "Qwen/Qwen3-0.6B",
      prompt: "The capital of France is",
      max_tokens: 12,
    }),
  });
  const answer = await plain.json();
  record(
    "client",
    `got ${plain.status}: ${JSON.stringify(answer.choices?.[0]?.text)}`,
  );
  console.log(`${plain.status} ${JSON.stringify(answer, null, 2)}`);

  heading(`POST ${base}/v1/chat/completions  (stream: true)`);
  record("client", "POST /v1/chat/completions (streaming)");
  const stream = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers,
    body: JSON.stringify({
      model: "Qwen/Qwen3-0.6B",
      messages: [{ role: "user", content: "Say hello" }],
      max_tokens: 10,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  const decoder = new TextDecoder();
  let events = 0;
  for await (const chunk of stream.body ?? new ReadableStream()) {
    const text = decoder.decode(chunk, { stream: true });
    const at = (performance.now() - started).toFixed(0).padStart(5);
    for (const event of text.split("\n\n").filter((e) => e !== "")) {
      events++;
      console.log(`${paint("2", `${at} ms`)} ${describeEvent(event)}`);
    }
  }
  record("client", `stream finished: ${events} SSE events, ending with [DONE]`);
}

/** One SSE event in a line: what it carries, then the raw event, shortened. */
function describeEvent(event: string): string {
  const data = event.replace(/^data: /, "");
  const raw = event.length > 110 ? `${event.slice(0, 107)}...` : event;
  try {
    const chunk = JSON.parse(data);
    const delta = chunk.choices?.[0]?.delta;
    if (delta?.role) return `${paint("1", "[role]".padEnd(14))} ${raw}`;
    if (typeof delta?.content === "string") {
      return `${paint("1", JSON.stringify(delta.content).padEnd(14))} ${raw}`;
    }
    if (chunk.usage) return `${paint("1", "[usage]".padEnd(14))} ${raw}`;
  } catch {
    // [DONE] and anything else that is not JSON is shown as it came.
  }
  return `${"".padEnd(14)} ${raw}`;
}

function printTrace(): void {
  heading("What each process saw, in time order");
  for (const line of trace.toSorted((a, b) => a.at - b.at)) printLine(line);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "keep-running": { type: "boolean" },
      connector: { type: "string", default: "nixlv2" },
    },
  });
  const connector = KV_CONNECTOR_NAMES.find((name) =>
    name === values.connector
  );
  if (connector === undefined) {
    console.error(
      `Unknown --connector "${values.connector}": expected one of ${
        KV_CONNECTOR_NAMES.join(", ")
      }`,
    );
    return 2;
  }
  // Connectors whose KV travels through a shared store (lmcache,
  // shared-storage) find it here; the others ignore it.
  const kvStore = createKvStore();
  await using prefiller = await createMockVllm({
    name: "prefiller",
    ttftMs: 120,
    kvConnector: connector,
    kvRole: "kv_producer",
    kvStore,
    log: (text) => record("prefiller", withoutName(text)),
  });
  await using decoder = await createMockVllm({
    name: "decoder",
    kvTransferMs: 40,
    interTokenMs: 25,
    kvConnector: connector,
    kvRole: "kv_consumer",
    kvStore,
    log: (text) => record("decoder", withoutName(text)),
  });
  const port = freePort();
  const sidecar = await startSidecar(
    port,
    { prefiller, decoder },
    connector,
  );
  const base = `http://127.0.0.1:${port}`;
  console.log(
    `prefiller (mock vLLM) ${prefiller.url}\ndecoder   (mock vLLM) ${decoder.url}\nsidecar               ${base}`,
  );
  try {
    await sendRequests(base, `127.0.0.1:${prefiller.port}`);
    printTrace();
    if (values["keep-running"]) {
      heading("Still running; try it yourself (Ctrl-C to stop):");
      console.log(
        `curl -s ${base}/v1/completions -H 'content-type: application/json' \\\n` +
          `  -H 'x-prefiller-host-port: 127.0.0.1:${prefiller.port}' \\\n` +
          `  -d '{"model":"Qwen/Qwen3-0.6B","prompt":"Hello","max_tokens":8}'`,
      );
      live = true;
      const { promise, resolve } = Promise.withResolvers<void>();
      Deno.addSignalListener("SIGINT", resolve);
      await promise;
    }
  } finally {
    sidecar.kill("SIGTERM");
    await sidecar.status;
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
