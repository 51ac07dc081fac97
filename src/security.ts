/**
 * @module
 * Builds what SSRF protection and upstream TLS need from the configuration:
 * the allowlist (the static entries, and the InferencePool followed through
 * the Kubernetes API when `-enable-ssrf-protection` is on) and the upstream
 * client's per-stage TLS options with the `-ca-cert` bundle.
 */

import {
  type Allowlist,
  createAllowlist,
  describeEntries,
  type PoolMembers,
} from "./allowlist/allowlist.ts";
import type { KubeEnvironment } from "./allowlist/kube_config.ts";
import { createResolver } from "./allowlist/resolve.ts";
import { parseStaticEntry } from "./allowlist/static_list.ts";
import { type Config, stageTlsOf } from "./config.ts";
import { errorMessage } from "./errors.ts";
import { TLS_STAGES } from "./flag_table.ts";
import type { Logger } from "./log.ts";
import type {
  StageTls,
  UpstreamClientOptions,
  UpstreamStage,
} from "./upstream/client.ts";

/** The running allowlist; `stop` ends its Kubernetes watches. */
export interface RunningAllowlist {
  readonly allowlist: Allowlist;
  stop(): void;
}

/** Options of `startAllowlist`. */
export interface StartAllowlistOptions {
  readonly env: KubeEnvironment;
  readonly log: Logger;
}

/**
 * Starts the allowlist the configuration asks for. With the pool, resolves
 * once the pool and its pods were read; rejects (naming the RBAC when the API
 * refused) after `-allowlist-sync-timeout`.
 */
export async function startAllowlist(
  config: Config,
  options: StartAllowlistOptions,
): Promise<RunningAllowlist> {
  const log = options.log.child({ logger: "allowlist-validator" });
  const entries = config.allowedPrefillers.map(parseStaticEntry);
  let pool: (PoolMembers & { stop(): void }) | undefined;
  if (config.ssrfProtection && config.inferencePool !== undefined) {
    // Loaded only here: client-node reads the whole environment when it loads.
    const [{ loadKubeConfig }, { startPoolWatch }] = await Promise.all([
      import("./allowlist/kube_config.ts"),
      import("./allowlist/pool_watch.ts"),
    ]);
    const loaded = loadKubeConfig(options.env);
    const ref = config.inferencePool;
    const namespace = ref.namespace !== ""
      ? ref.namespace
      : loaded.namespace ?? "default";
    log.info("SSRF protection: connecting to the Kubernetes API", {
      source: loaded.source,
      server: loaded.config.getCurrentCluster()?.server,
      pool: `${namespace}/${ref.name}`,
    });
    pool = await startPoolWatch({
      kubeConfig: loaded.config,
      pool: { namespace, name: ref.name, group: ref.group },
      log,
      syncTimeoutMs: config.allowlistSyncTimeoutMs,
    });
  }
  const allowlist = createAllowlist({
    entries,
    pool,
    resolver: createResolver(),
  });
  if (allowlist.enabled) {
    log.info("SSRF protection enabled", {
      pool: pool !== undefined,
      allowed_prefillers: describeEntries(entries),
    });
  }
  return { allowlist, stop: () => pool?.stop() };
}

const PEM_CERTIFICATE =
  /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Reads `-ca-cert`: a PEM file of one or more CA certificates. Throws naming
 * the file when it holds none or one does not parse (Deno would accept the
 * garbage silently and trust nothing extra).
 */
export async function loadCaCertificates(path: string): Promise<string[]> {
  if (path === "") return [];
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(
      `Cannot read CA certificates from "${path}": ${errorMessage(error)}`,
      { cause: error },
    );
  }
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  // Loaded only with -ca-cert: node's crypto module costs memory otherwise.
  const { X509Certificate } = await import("node:crypto");
  if (blocks.length === 0) {
    throw new Error(`No PEM certificate found in CA file "${path}"`);
  }
  blocks.forEach((block, index) => {
    try {
      new X509Certificate(block);
    } catch (error) {
      throw new Error(
        `Certificate ${index + 1} in CA file "${path}" does not parse: ${
          errorMessage(error)
        }`,
        { cause: error },
      );
    }
  });
  return [blocks.join("\n")];
}

/**
 * The upstream clients' options `config` sets: per-stage TLS (`-enable-tls`,
 * `-tls-insecure-skip-verify`, `-ca-cert`'s `caCerts`), `-connect-timeout`
 * and `-max-idle-conns-per-host`.
 */
export function upstreamClientOptions(
  config: Pick<
    Config,
    | "tlsStages"
    | "insecureSkipVerifyStages"
    | "connectTimeout"
    | "maxIdleConnsPerHost"
  >,
  caCerts: readonly string[],
): UpstreamClientOptions {
  const stages: Partial<Record<UpstreamStage, StageTls>> = {};
  for (const stage of TLS_STAGES) {
    stages[stage] = stageTlsOf(config, stage);
  }
  return {
    stages,
    caCerts,
    connectTimeoutMs: config.connectTimeout,
    maxIdlePerHost: config.maxIdleConnsPerHost,
  };
}
