/**
 * @module
 * A decode without prefill that pulls the prompt's cached prefix from a peer
 * (`x-kv-cache-source-host-port` with no prefiller; delta §3.7): the
 * decoder's `kv_transfer_params` becomes `{"remote_kv_source": {…}}`, unless
 * the peer is this very listener, whose engine has the prefix already.
 */

import { type Config, listenPort } from "../config.ts";
import { buildDecodeBody } from "../protocol/bodies.ts";
import { FIELD_KV_TRANSFER_PARAMS } from "../protocol/fields.ts";
import type { GenerationRequest } from "../protocol/request.ts";
import { joinHostPort, type UpstreamTarget } from "../upstream/target.ts";
import { buildP2pPeer, KEY_REMOTE_KV_SOURCE } from "./_p2p.ts";

/** `POD_IP:port` of this listener, normalised as targets are; undefined without POD_IP. */
function selfHostPort(config: Config): string | undefined {
  if (config.podIp === "") return undefined;
  const host = config.podIp.toLowerCase();
  return joinHostPort(host, listenPort(config));
}

/**
 * The decode body for a pull from `source`: the client's bytes when the
 * source is this listener, else the client's body with `kv_transfer_params`
 * replaced by the pull block (a client's own keys would not describe it).
 */
export function buildSourceDecodeBody(
  config: Config,
  request: GenerationRequest,
  source: UpstreamTarget,
): string {
  if (source.hostPort === selfHostPort(config)) return request.text;
  const block = buildP2pPeer(config, source, crypto.randomUUID());
  return buildDecodeBody(request, {
    set: { [FIELD_KV_TRANSFER_PARAMS]: `{"${KEY_REMOTE_KV_SOURCE}":${block}}` },
  });
}
