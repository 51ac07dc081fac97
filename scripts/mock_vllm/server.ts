/**
 * Lifecycle of a mock: build its state, bind the listener(s), hand out the
 * {@linkcode MockVllm} handle, and shut down in the right order.
 *
 * @module
 */

import { createResponsesStore } from "./responses_store.ts";
import {
  ALL_KNOB_KEYS,
  buildDefaultKnobs,
  type Knobs,
  parseKnobPatch,
  RESTART_KEYS,
} from "./knobs.ts";
import type { KvContext } from "./kv_connector.ts";
import {
  createEcEngine,
  createEcStore,
  type EcEngine,
} from "./ec_connector.ts";
import { createKvConnector } from "./kv_connectors.ts";
import {
  createKvStore,
  createRemoteKvStore,
  type LocalKvStore,
} from "./kv_store.ts";
import {
  isKvConnectorName,
  isKvRole,
  type KvConnectorName,
  type KvRole,
} from "./kv_wire.ts";
import { createLogger } from "./log.ts";
import { createMetrics } from "./metrics.ts";
import { formatHostPort } from "./peer.ts";
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

/** Options fixed when a mock starts: which KV protocol it speaks and where its KV lives. */
interface KvSetup {
  readonly kvConnector: KvConnectorName;
  readonly kvRole: KvRole;
  readonly localStore: LocalKvStore;
  readonly kvStoreUrl: string | undefined;
  readonly dataParallelSize: number;
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
    kvConnector,
    kvRole,
    kvStore,
    kvStoreUrl,
    dataParallelSize,
    ecConnector,
    ecRole = "ec_consumer",
    ecStore = createEcStore(),
    ...knobOptions
  } = options;
  const setup = parseKvSetup({
    kvConnector,
    kvRole,
    kvStore,
    kvStoreUrl,
    dataParallelSize,
  });
  const knobs: Knobs = {
    ...buildDefaultKnobs(),
    ...parseKnobPatch(knobOptions, ALL_KNOB_KEYS),
  };
  const advertised = { port: 0 };
  const sideChannel = () => ({
    host: knobs.sideChannelHost ?? reachableHost(hostname),
    port: advertised.port,
  });
  const ec = ecConnector === undefined ? undefined : createEcEngine({
    name: ecConnector,
    role: ecRole,
    store: ecStore,
    peer: () => ({ engineId: knobs.engineId, ...sideChannel() }),
  });
  const state = createState(knobs, setup, sideChannel, ec);
  const binding = await bind(state, { hostname, port, tls, sideChannelPort });
  advertised.port = binding.sideChannelPort;
  logStartup(state, binding);
  return buildHandle(state, binding);
}

/** Validates the start-only KV options; throws `TypeError` naming the option. */
function parseKvSetup(options: {
  kvConnector: unknown;
  kvRole: unknown;
  kvStore: LocalKvStore | undefined;
  kvStoreUrl: unknown;
  dataParallelSize: unknown;
}): KvSetup {
  const {
    kvConnector = "nixlv2",
    kvRole = "kv_both",
    kvStoreUrl,
    dataParallelSize = 1,
  } = options;
  if (!isKvConnectorName(kvConnector)) {
    throw new TypeError(`Unknown kvConnector ${JSON.stringify(kvConnector)}`);
  }
  if (!isKvRole(kvRole)) {
    throw new TypeError(`Unknown kvRole ${JSON.stringify(kvRole)}`);
  }
  if (
    !Number.isInteger(dataParallelSize) || (dataParallelSize as number) < 1
  ) {
    throw new TypeError(
      `Invalid dataParallelSize ${
        JSON.stringify(dataParallelSize)
      }: expected an integer >= 1`,
    );
  }
  if (kvStoreUrl !== undefined && !URL.canParse(String(kvStoreUrl))) {
    throw new TypeError(`Invalid kvStoreUrl ${JSON.stringify(kvStoreUrl)}`);
  }
  return {
    kvConnector,
    kvRole,
    localStore: options.kvStore ?? createKvStore(),
    kvStoreUrl: kvStoreUrl === undefined ? undefined : String(kvStoreUrl),
    dataParallelSize: dataParallelSize as number,
  };
}

function createState(
  knobs: Knobs,
  setup: KvSetup,
  sideChannel: () => { readonly host: string; readonly port: number },
  ec: EcEngine | undefined,
): MockState {
  const logger = createLogger(knobs);
  const metrics = createMetrics();
  const ctx: KvContext = {
    knobs,
    logger,
    metrics,
    kvRole: setup.kvRole,
    dataParallelSize: setup.dataParallelSize,
    sideChannel,
  };
  const connector = createKvConnector(setup.kvConnector, ctx, {
    localStore: setup.localStore,
    sharedStore: setup.kvStoreUrl === undefined
      ? setup.localStore
      : createRemoteKvStore(setup.kvStoreUrl),
  });
  return {
    knobs,
    logger,
    recorder: createRecorder(),
    engine: {
      knobs,
      logger,
      metrics,
      connector,
      ec,
      dataParallelSize: setup.dataParallelSize,
      responses: createResponsesStore(),
    },
    ops: {
      knobs,
      metrics,
      health: { healthy: true },
      startedAt: Math.floor(Date.now() / 1000),
    },
    sideChannel: { connector, localStore: setup.localStore, kvPulls: [] },
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
  const host = state.knobs.sideChannelHost ?? reachableHost(binding.hostname);
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
    }, kv_connector=${state.engine.connector.name}, engine_id=${state.knobs.engineId}, ` +
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
    sideChannelUrl: `http://${
      formatHostPort(reachableHost(binding.hostname), binding.sideChannelPort)
    }`,
    kvConnector: state.engine.connector.name,
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
  state.engine.connector.close();
  await Promise.all(binding.servers.map((server) => server.shutdown()));
}

/** A host clients can dial for a bind address (wildcards become loopback). */
function reachableHost(hostname: string): string {
  if (hostname === "0.0.0.0") return "127.0.0.1";
  if (hostname === "::" || hostname === "[::]") return "::1";
  return hostname;
}
