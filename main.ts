/**
 * @module
 * Composition root of the P/D routing sidecar: the only place that reads the
 * command line and environment, opens the listener, installs signal handlers
 * and exits.
 */

import { createApp } from "./src/app.ts";
import {
  type Config,
  ConfigError,
  describeConfig,
  parseCommandLine,
  PREFILLER_SAMPLING_ENV,
} from "./src/config.ts";
import { isConnectorImplemented } from "./src/connectors/mod.ts";
import { createLogger, type Logger } from "./src/log.ts";
import { serveAppWithFallback, shutdownGracefully } from "./src/server.ts";
import {
  generateSelfSignedCertificate,
  loadCertificate,
  type TlsCertificate,
} from "./src/tls.ts";
import { createUpstreamClient } from "./src/upstream/client.ts";

const PROGRAM = "llm-d-routing-sidecar";
const SHUTDOWN_DEADLINE_MS = 60_000;
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

function onSignals(handler: () => void): void {
  let received = 0;
  const listener = () => {
    received++;
    // A second signal means the operator does not want to wait.
    if (received > 1) Deno.exit(1);
    handler();
  };
  Deno.addSignalListener("SIGINT", listener);
  Deno.addSignalListener("SIGTERM", listener);
}

async function run(
  config: Config,
  warnings: readonly string[],
): Promise<number> {
  const log = createLogger({
    verbosity: config.verbosity,
    name: `proxy server on port ${config.port}`,
  });
  for (const warning of warnings) log.warn(warning);
  log.info("Proxy configuration", { config: describeConfig(config) });
  if (!isConnectorImplemented(config.connector)) {
    log.warn(
      `connector "${config.connector}" is not supported yet: P/D requests will be answered 501`,
    );
  }
  let tls: TlsCertificate | undefined;
  try {
    tls = await loadTls(config, log);
  } catch (error) {
    log.error(error instanceof Error ? error.message : String(error));
    return 1;
  }
  const upstream = createUpstreamClient();
  const app = createApp({ config, log, upstream });
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = serveAppWithFallback(app, {
      hostname: config.listenHost,
      port: config.port,
      tls,
      log,
    });
  } catch (error) {
    log.error(
      `Cannot listen on port ${config.port}: ${
        error instanceof Error ? error.message : error
      }`,
    );
    upstream.close();
    return 1;
  }
  let clean = true;
  onSignals(() => {
    shutdownGracefully(server, { deadlineMs: SHUTDOWN_DEADLINE_MS, log }).then(
      (ok) => {
        clean = ok;
        if (!ok) Deno.exit(1);
      },
    );
  });
  await server.finished;
  upstream.close();
  return clean ? 0 : 1;
}

/** Runs the sidecar with `args`; resolves with the process exit code. */
export async function main(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
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
  return await run(commandLine.config, commandLine.warnings);
}

if (import.meta.main) {
  const env = {
    [PREFILLER_SAMPLING_ENV]: Deno.env.get(PREFILLER_SAMPLING_ENV),
  };
  Deno.exit(await main(Deno.args, env));
}
