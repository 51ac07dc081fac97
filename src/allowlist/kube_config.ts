/**
 * @module
 * Finds the Kubernetes API the way client-go's loaders do: `KUBECONFIG`
 * (a list of files, merged), else the pod's service account (in cluster),
 * else `~/.kube/config`. Unlike client-node's `loadFromDefault`, which falls
 * back to `http://localhost:8080`, finding nothing is an error.
 */

import { existsSync } from "node:fs";
import { KubeConfig } from "@kubernetes/client-node";

/** The environment variables the lookup reads. */
export interface KubeEnvironment {
  readonly KUBECONFIG?: string | undefined;
  readonly KUBERNETES_SERVICE_HOST?: string | undefined;
  readonly KUBERNETES_SERVICE_PORT?: string | undefined;
  readonly HOME?: string | undefined;
}

/** Where the in-cluster token is mounted (client-go's `rest.InClusterConfig`). */
export const SERVICE_ACCOUNT_TOKEN =
  "/var/run/secrets/kubernetes.io/serviceaccount/token";

/** A loaded configuration and where it came from, for the start-up log. */
export interface LoadedKubeConfig {
  readonly config: KubeConfig;
  readonly source: string;
  /** The current context's namespace (in cluster: the pod's), if any. */
  readonly namespace: string | undefined;
}

function loadFiles(paths: readonly string[]): KubeConfig {
  const [first, ...rest] = paths;
  const config = new KubeConfig();
  if (first === undefined) return config;
  config.loadFromFile(first);
  for (const path of rest) {
    const other = new KubeConfig();
    other.loadFromFile(path);
    config.mergeConfig(other);
  }
  return config;
}

function withNamespace(config: KubeConfig, source: string): LoadedKubeConfig {
  const context = config.getContextObject(config.getCurrentContext());
  if (config.getCurrentCluster() === null) {
    throw new Error(`${source} has no current cluster`);
  }
  const namespace = context?.namespace?.trim();
  return {
    config,
    source,
    namespace: namespace === undefined || namespace === ""
      ? undefined
      : namespace,
  };
}

/** Loads the API's address and credentials; throws saying what was looked for. */
export function loadKubeConfig(env: KubeEnvironment): LoadedKubeConfig {
  const files = (env.KUBECONFIG ?? "").split(":").filter((path) => path !== "");
  if (files.length > 0) {
    return withNamespace(loadFiles(files), `KUBECONFIG "${env.KUBECONFIG}"`);
  }
  if (
    (env.KUBERNETES_SERVICE_HOST ?? "") !== "" &&
    existsSync(SERVICE_ACCOUNT_TOKEN)
  ) {
    const config = new KubeConfig();
    config.loadFromCluster();
    return withNamespace(config, "the pod's service account");
  }
  const home = env.HOME === undefined ? undefined : `${env.HOME}/.kube/config`;
  if (home !== undefined && existsSync(home)) {
    return withNamespace(loadFiles([home]), `"${home}"`);
  }
  throw new Error(
    "Cannot find the Kubernetes API: KUBECONFIG is not set, there is no in-cluster " +
      `service account (${SERVICE_ACCOUNT_TOKEN} with KUBERNETES_SERVICE_HOST) and no ~/.kube/config`,
  );
}
