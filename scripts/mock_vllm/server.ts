/**
 * Lifecycle of a mock: build its state, bind the listener(s), hand out the
 * {@linkcode MockVllm} handle, and shut down in the right order.
 *
 * @module
 */

import {
  ALL_KNOB_KEYS,
  buildDefaultKnobs,
  type Knobs,
  parseKnobPatch,
  RESTART_KEYS,
} from "./knobs.ts";
import { formatHostPort } from "./kv_pull.ts";
import { createKvRegistry } from "./kv_registry.ts";
import { createLogger } from "./log.ts";
import { createMetrics } from "./metrics.ts";
import { createRecorder } from "./recorder.ts";
import {
  handleRequest,
  type MockState,
  reportServerError,
  shuttingDown,
} from "./request_handler.ts";
import { handleSideChannel } from "./side_channel.ts";
import type { MockVllm, MockVllmOptions } from "./types.ts";

/** Where a mock listens and what it advertises. */
interface Binding {
  readonly hostname: string;
  readonly url: string;
  readonly port: number;
  readonly sideChannelPort: number;
  readonly servers: readonly Deno.HttpServer<Deno.NetAddr>[];
}

/** Starts a mock vLLM server; close it with `close()` or `await using`. */
export async function createMockVllm(
  options: MockVllmOptions = {},
): Promise<MockVllm> {
  const {
    hostname = "127.0.0.1",
    port = 0,
    tls,
    sideChannelPort,
    ...knobOptions
  } = options;
  const knobs: Knobs = {
    ...buildDefaultKnobs(),
    ...parseKnobPatch(knobOptions, ALL_KNOB_KEYS),
  };
  const advertised = { port: 0 };
  const state = createState(knobs, () => ({
    host: knobs.sideChannelHost ?? reachableHost(hostname),
    port: advertised.port,
  }));
  const binding = await bind(state, { hostname, port, tls, sideChannelPort });
  advertised.port = binding.sideChannelPort;
  logStartup(state, binding);
  return buildHandle(state, binding);
}

function createState(
  knobs: Knobs,
  sideChannel: () => { readonly host: string; readonly port: number },
): MockState {
  const logger = createLogger(knobs);
  const metrics = createMetrics();
  const registry = createKvRegistry();
  return {
    knobs,
    logger,
    recorder: createRecorder(),
    engine: { knobs, logger, metrics, registry, sideChannel },
    ops: {
      knobs,
      metrics,
      health: { healthy: true },
      startedAt: Math.floor(Date.now() / 1000),
    },
    sideChannel: { knobs, registry, logger, kvPulls: [] },
    inFlight: new Set(),
    sharesSideChannel: true,
    closing: false,
  };
}

interface BindOptions {
  readonly hostname: string;
  readonly port: number;
  readonly tls: { cert: string; key: string } | undefined;
  readonly sideChannelPort: number | undefined;
}

/**
 * Binds the API listener and, when asked or when the API speaks TLS, a
 * plain-HTTP side-channel listener (real NIXL also has its own port; the
 * mock's decoders always pull over plain HTTP).
 */
async function bind(state: MockState, options: BindOptions): Promise<Binding> {
  const { hostname, tls } = options;
  const onError = (error: unknown) => reportServerError(state.logger, error);
  const api = Deno.serve(
    {
      hostname,
      port: options.port,
      onListen() {},
      onError,
      ...(tls ? { cert: tls.cert, key: tls.key } : {}),
    },
    (request, info) => handleRequest(state, request, info),
  );
  const servers = [api];
  if (options.sideChannelPort !== undefined || tls !== undefined) {
    try {
      servers.push(Deno.serve(
        {
          hostname,
          port: options.sideChannelPort ?? 0,
          onListen() {},
          onError,
        },
        (request) => handleSideChannel(request, state.sideChannel),
      ));
    } catch (error) {
      await api.shutdown();
      throw error;
    }
    state.sharesSideChannel = false;
  }
  const port = api.addr.port;
  return {
    hostname,
    url: `${tls ? "https" : "http"}://${
      formatHostPort(reachableHost(hostname), port)
    }`,
    port,
    sideChannelPort: servers[1]?.addr.port ?? port,
    servers,
  };
}

function logStartup(state: MockState, binding: Binding): void {
  const { host } = state.engine.sideChannel();
  state.logger.write(
    "INFO",
    "api_server.py:1880",
    `Starting vLLM API server 0 on ${binding.url}`,
  );
  state.logger.write(
    "INFO",
    "mock_vllm.py:1",
    `Mock vLLM serving model ${
      JSON.stringify(state.knobs.model)
    }, engine_id=${state.knobs.engineId}, ` +
      `KV side channel on ${formatHostPort(host, binding.sideChannelPort)}`,
  );
}

function buildHandle(state: MockState, binding: Binding): MockVllm {
  let closed: Promise<void> | undefined;
  const close = () => (closed ??= shutdown(state, binding));
  return {
    get name() {
      return state.knobs.name;
    },
    url: binding.url,
    hostname: binding.hostname,
    port: binding.port,
    sideChannelPort: binding.sideChannelPort,
    get engineId() {
      return state.knobs.engineId;
    },
    requests: state.recorder.requests,
    kvPulls: state.sideChannel.kvPulls,
    logs: state.logger.lines,
    nextRequest: (predicate) => state.recorder.next(predicate),
    setConfig(patch) {
      for (const key of RESTART_KEYS) {
        if ((patch as Record<string, unknown>)[key] !== undefined) {
          throw new TypeError(
            `Cannot change "${key}" of a running mock vLLM; create a new one instead`,
          );
        }
      }
      Object.assign(state.knobs, parseKnobPatch(patch, ALL_KNOB_KEYS));
    },
    setHealthy(healthy) {
      state.ops.health.healthy = healthy;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function shutdown(state: MockState, binding: Binding): Promise<void> {
  state.closing = true;
  state.logger.write(
    "INFO",
    "launcher.py:80",
    "Shutting down FastAPI HTTP server.",
  );
  // Deno's shutdown waits for in-flight responses, so end the slow ones first.
  for (const controller of state.inFlight) controller.abort(shuttingDown());
  await Promise.all(binding.servers.map((server) => server.shutdown()));
}

/** A host clients can dial for a bind address (wildcards become loopback). */
function reachableHost(hostname: string): string {
  if (hostname === "0.0.0.0") return "127.0.0.1";
  if (hostname === "::" || hostname === "[::]") return "::1";
  return hostname;
}
