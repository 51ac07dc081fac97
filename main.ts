/**
 * @module
 * Composition root of the P/D routing sidecar: the only place that reads the
 * command line and environment, opens the listener, installs signal handlers
 * and exits.
 */

import {
  type Config,
  ConfigError,
  describeConfig,
  type Env,
  ENV_VARS,
  parseCommandLine,
  type ResolvedConfig,
} from "./src/config.ts";
import { errorMessage } from "./src/errors.ts";
import { isTraceContextInjected } from "./src/tracing.ts";
import { readProcTable } from "./src/peer_watch.ts";
import { PROGRAM } from "./src/usage.ts";
import {
  buildLoopbackNoProxy,
  NO_PROXY_ENV_VARS,
  PROXY_ENV_VARS,
} from "./src/proxy_env.ts";
import { createLogger, flushLogOutput, type Logger } from "./src/log.ts";
import {
  type Listener,
  startListener,
  type StopOptions,
} from "./src/listener.ts";
import { type MetricsRegistry, renderAggregate } from "./src/metrics.ts";
import { type Exposition, serveMetrics } from "./src/metrics_server.ts";
import { answerSnapshots } from "./src/metrics_threads.ts";
import {
  type FromListener,
  type ListenerThread,
  startListenerThreads,
  type ToListener,
} from "./src/listener_threads.ts";
import {
  generateSelfSignedCertificate,
  loadCertificate,
  type TlsCertificate,
} from "./src/tls.ts";
// SSRF protection and upstream TLS (issue 11).
import {
  loadCaCertificates,
  type RunningAllowlist,
  startAllowlist,
} from "./src/security.ts";

/**
 * The allowlist and the CA bundle (read from `-ca-cert` unless `caCerts` is
 * given), or why not.
 */
async function startSecurity(
  config: Config,
  env: Env,
  log: Logger,
  caCerts?: readonly string[],
): Promise<
  | { allowlist: RunningAllowlist; caCerts: readonly string[] }
  | { failed: string }
> {
  try {
    caCerts ??= await loadCaCertificates(config.caCertPath);
    const allowlist = await startAllowlist(config, { env, log });
    return { allowlist, caCerts };
  } catch (error) {
    return { failed: errorMessage(error) };
  }
}

/**
 * Exit codes of a stop: 0 when every request in flight finished, 1 when
 * -shutdown-grace passed first or a listener thread failed, and 128 + the signal's number when a
 * second signal cut the drain short (the shell's convention: 130 for
 * SIGINT, 143 for SIGTERM).
 */
const EXIT_FAILED = 1;
const SIGNAL_NUMBERS = { SIGINT: 2, SIGTERM: 15 } as const;
const encoder = new TextEncoder();

function print(
  stream: { writeSync(p: Uint8Array): number },
  text: string,
): void {
  const bytes = encoder.encode(text.endsWith("\n") ? text : `${text}\n`);
  let written = 0;
  while (written < bytes.length) {
    written += stream.writeSync(bytes.subarray(written));
  }
}

async function loadTls(
  config: Config,
  log: Logger,
): Promise<TlsCertificate | undefined> {
  if (!config.secureProxy) return undefined;
  if (config.certPath !== "") return await loadCertificate(config.certPath);
  log.info("no -cert-path given, using a self-signed certificate");
  return await generateSelfSignedCertificate();
}

function onSignals(log: Logger, handler: () => void): void {
  let received = 0;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      received++;
      if (received > 1) {
        // A second signal means the operator does not want to wait.
        log.warn("second signal: exiting at once", { signal });
        Deno.exit(128 + SIGNAL_NUMBERS[signal]);
      }
      log.info("signal received: draining", { signal });
      handler();
    });
  }
}

/** The parts of a worker's global scope a listener thread uses. */
interface ListenerScope {
  onmessage: ((event: MessageEvent<ToListener>) => void) | null;
  postMessage(message: FromListener): void;
}

function listenerLog(config: Config, index: number): Logger {
  const log = createLogger({
    verbosity: config.verbosity,
    name: `proxy server on port ${config.port}`,
  });
  return config.workers > 1 ? log.child({ listener: index }) : log;
}

/** Body of a listener thread (`-workers` > 1): serve until told to stop. */
function runListenerThread(scope: ListenerScope): void {
  let listener: Listener | undefined;
  // The main thread may terminate this one on any answer (a stop, or another
  // thread failing to start), and a terminated thread fires no `unload`.
  const answer = (message: FromListener): void => {
    flushLogOutput();
    scope.postMessage(message);
  };
  scope.onmessage = async ({ data }) => {
    if (data.kind === "start") {
      try {
        const log = listenerLog(data.config, data.index);
        // Each thread follows the pool itself (issue 11): an allowlist cannot cross threads.
        const security = await startSecurity(
          data.config,
          data.env,
          log,
          data.caCerts,
        );
        if ("failed" in security) throw new Error(security.failed);
        const started = startListener({
          config: data.config,
          tls: data.tls,
          log,
          allowlist: security.allowlist.allowlist,
          caCerts: security.caCerts,
        });
        if (data.metricsPort && started.metrics) {
          answerSnapshots(data.metricsPort, started.metrics);
        }
        listener = {
          metrics: started.metrics,
          stop: (deadlineMs) =>
            started.stop(deadlineMs).finally(() => security.allowlist.stop()),
        };
        answer({ kind: "listening" });
      } catch (error) {
        answer({ kind: "failed", message: errorMessage(error) });
      }
      return;
    }
    const clean = listener ? await listener.stop(data.options) : true;
    const metrics = await listener?.metrics?.snapshot();
    answer({ kind: "stopped", clean, metrics });
  };
}

/** What a scrape answers: this thread's registry, merged with the other threads' when there are some. */
function metricsCollector(
  own: MetricsRegistry,
  threads: readonly ListenerThread[],
): () => Promise<Exposition> {
  return async () => {
    if (threads.length === 0) {
      return { contentType: own.contentType, text: await own.render() };
    }
    const snapshots = await Promise.all([
      own.snapshot(),
      ...threads.map((thread) => thread.snapshot()),
    ]);
    return {
      contentType: own.contentType,
      text: await renderAggregate(
        snapshots.filter((snapshot) => snapshot !== undefined),
      ),
    };
  };
}

async function run(resolved: ResolvedConfig, env: Env): Promise<number> {
  const { config, warnings } = resolved;
  const log = listenerLog(config, 0);
  for (const warning of warnings) log.warn(warning);
  log.info("Proxy configuration", { config: describeConfig(config) });
  if (config.tracing && !isTraceContextInjected()) {
    log.warn(
      "-tracing makes spans, but nothing exports them: run with OTEL_DENO=true (Deno's OpenTelemetry) to send them",
    );
  }
  if (config.watchClientConnections) {
    try {
      await readProcTable("tcp");
    } catch (error) {
      log.error(
        `-watch-client-connections needs /proc/net/tcp (Linux), which Deno opens only with --allow-all: ${
          errorMessage(error)
        }`,
      );
      return 1;
    }
  }
  // Installed before listening, so a signal during start-up drains too
  // instead of killing the process with the runtime's default action.
  const signalled = Promise.withResolvers<void>();
  onSignals(log, () => signalled.resolve());
  // A listener thread that throws takes the sidecar down, as one failing
  // listener stops all of Go's: drained, so no request is cut, then exit 1.
  let threadFailed = false;
  const onThreadFailure = (index: number, message: string) => {
    log.error(
      `Listener thread ${index} failed, stopping the sidecar: ${message}`,
    );
    threadFailed = true;
    signalled.resolve();
  };
  let tls: TlsCertificate | undefined;
  try {
    tls = await loadTls(config, log);
  } catch (error) {
    log.error(errorMessage(error));
    return 1;
  }
  // SSRF allowlist and upstream CA bundle (issue 11): ready before listening.
  const security = await startSecurity(config, env, log);
  if ("failed" in security) {
    log.error(security.failed);
    return 1;
  }
  let listener: Listener;
  let workers: ListenerThread[];
  try {
    listener = startListener({
      config,
      tls,
      log,
      allowlist: security.allowlist.allowlist,
      caCerts: security.caCerts,
    });
  } catch (error) {
    log.error(errorMessage(error));
    security.allowlist.stop();
    return 1;
  }
  try {
    workers = await startListenerThreads({
      config,
      tls,
      env,
      caCerts: security.caCerts,
      entry: import.meta.url,
      onFailure: onThreadFailure,
    });
  } catch (error) {
    log.error(`Cannot start listener threads: ${errorMessage(error)}`);
    await listener.stop({ graceMs: 0 });
    security.allowlist.stop();
    return 1;
  }
  let metricsServer: Deno.HttpServer | undefined;
  if (listener.metrics) {
    try {
      metricsServer = serveMetrics({
        hostname: config.listenHost,
        port: config.metricsPort,
        log,
        collect: metricsCollector(listener.metrics, workers),
      });
    } catch (error) {
      if (resolved.sources.metricsPort.kind === "default") {
        // The Go sidecar opens no metrics port unless asked, so its arguments
        // must still start where another container of the pod holds ours.
        log.warn(
          `${
            errorMessage(error)
          }: running without metrics; -metrics-port chooses another port, 0 none`,
        );
      } else {
        log.error(errorMessage(error));
        await Promise.all([
          listener.stop({ graceMs: 0 }),
          ...workers.map((worker) => worker.stop({ graceMs: 0 })),
        ]);
        security.allowlist.stop();
        return 1;
      }
    }
  }
  const stop: StopOptions = {
    graceMs: config.shutdownGrace,
    drainDelayMs: config.shutdownDrainDelay,
  };
  await signalled.promise;
  const stopped = await Promise.all([
    listener.stop(stop),
    ...workers.map((worker) => worker.stop(stop)),
  ]);
  // Scraped until the listeners are gone, so a drain shows in the metrics.
  await metricsServer?.shutdown();
  security.allowlist.stop();
  return stopped.every(Boolean) && !threadFailed ? 0 : EXIT_FAILED;
}

/** Runs the sidecar with `args`; resolves with the process exit code. */
export async function main(
  args: readonly string[],
  env: Env,
): Promise<number> {
  let commandLine;
  try {
    commandLine = parseCommandLine(args, env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    print(Deno.stderr, `${error.message}\nRun "${PROGRAM} -help" for usage.`);
    return error.exitCode;
  }
  if (commandLine.kind === "help") {
    print(Deno.stdout, commandLine.usage);
    return 0;
  }
  if (commandLine.kind === "print-config") {
    for (const warning of commandLine.warnings) {
      print(Deno.stderr, `Warning: ${warning}`);
    }
    print(Deno.stdout, commandLine.text);
    return 0;
  }
  return await run(commandLine, env);
}

if ("WorkerGlobalScope" in globalThis) {
  // A listener thread: import.meta.main is true in workers too.
  runListenerThread(globalThis as unknown as ListenerScope);
} else if (import.meta.main) {
  keepLoopbackOffProxy();
  // Only the variables the sidecar knows: its configuration reads no other.
  const env = Object.fromEntries(
    ENV_VARS.map((name) => [name, Deno.env.get(name)]),
  );
  Deno.exit(await main(Deno.args, env));
}

/**
 * With a proxy in the environment, adds loopback to NO_PROXY before any HTTP
 * client exists (listener threads share the process environment): the decoder
 * is reached directly, as Go's transports reach it.
 */
function keepLoopbackOffProxy(): void {
  const names = [...PROXY_ENV_VARS, ...NO_PROXY_ENV_VARS];
  const noProxy = buildLoopbackNoProxy(
    Object.fromEntries(names.map((name) => [name, Deno.env.get(name)])),
  );
  if (noProxy === undefined) return;
  for (const name of NO_PROXY_ENV_VARS) Deno.env.set(name, noProxy);
}
