/**
 * @module
 * vLLM OffloadingConnector's P2P tier (llm-d `offloading`, and `nixlv2` with
 * `-enable-p2p-pull`): which port a peer's P2P listener has, and the
 * `remote_kv_source` block that asks an engine to pull cached prefix KV from
 * a peer (delta §3.6, §3.7).
 */

import type { Config } from "../config.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import type { PdContext } from "./types.ts";

/** Key of the cached-prefix pull block inside `kv_transfer_params`. */
export const KEY_REMOTE_KV_SOURCE = "remote_kv_source";

/** The settings the P2P port depends on. */
export type P2pSettings = Pick<
  Config,
  "port" | "dataParallelSize" | "p2pConnectorPort"
>;

/**
 * The P2P port of the engine behind `target`. Under data parallelism every
 * pod has the same layout: the sidecar of rank r listens on `port + r` and its
 * engine's P2P tier on `p2p-connector-port + r`, so the rank is read from the
 * target's port; a port outside this layout means rank 0.
 */
export function p2pPortFor(
  settings: P2pSettings,
  target: UpstreamTarget,
): number {
  const base = settings.p2pConnectorPort;
  if (settings.dataParallelSize <= 1) return base;
  const rank = target.port - settings.port;
  return rank >= 0 && rank < settings.dataParallelSize ? base + rank : base;
}

/** The P2P address block of `target` under a fresh `kv_request_id`, as JSON. */
export function buildP2pPeer(
  settings: P2pSettings,
  target: UpstreamTarget,
  kvRequestId: string,
): string {
  return JSON.stringify({
    kv_request_id: kvRequestId,
    remote_host: target.host,
    remote_port: p2pPortFor(settings, target),
  });
}

/**
 * The `remote_kv_source` block for the prefill leg, as JSON, or undefined
 * when there is no source or it is the prefiller itself (which has the
 * prefix already). Compared as normalised `host:port`: another rank on the
 * same pod is another engine (Go compared hosts until `1026043d`).
 */
export function kvSourceBlock(
  settings: P2pSettings,
  ctx: PdContext,
): string | undefined {
  const source = ctx.kvSource;
  if (source === undefined) return undefined;
  if (source.hostPort === ctx.prefiller.hostPort) {
    ctx.log.debug("KV cache source is the prefiller: no pull");
    return undefined;
  }
  return buildP2pPeer(settings, source, crypto.randomUUID());
}
