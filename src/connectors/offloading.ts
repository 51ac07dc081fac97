/**
 * @module
 * vLLM's OffloadingConnector with its P2P tier (llm-d `offloading`): the
 * prefiller keeps the KV under a `kv_request_id` and the decoder pulls it
 * from the prefiller's P2P listener; both legs run at once (delta §3.6).
 */

import type { Config } from "../config.ts";
import { buildDecodeBody, buildPrefillBody } from "../protocol/bodies.ts";
import { FIELD_KV_TRANSFER_PARAMS } from "../protocol/fields.ts";
import { runConcurrentLegs } from "./_concurrent.ts";
import { buildP2pPeer, KEY_REMOTE_KV_SOURCE, kvSourceBlock } from "./_p2p.ts";
import type { Connector, PdContext } from "./types.ts";

/** Role keys since llm-d-router `b25dd663`; engines ignore the older `decode`/`prefill`/`p2p`. */
const KEY_REMOTE_DECODER = "remote_decoder";
const KEY_REMOTE_PREFILLER = "remote_prefiller";

async function run(config: Config, ctx: PdContext): Promise<Response> {
  const kvRequestId = crypto.randomUUID();
  ctx.log.debug("running P2P protocol", { kv_request_id: kvRequestId });
  const source = kvSourceBlock(config, ctx);
  const prefillParams = `{"${KEY_REMOTE_DECODER}":${
    JSON.stringify({ kv_request_id: kvRequestId })
  }${source === undefined ? "" : `,"${KEY_REMOTE_KV_SOURCE}":${source}`}}`;
  const decodeParams = `{"${KEY_REMOTE_PREFILLER}":${
    buildP2pPeer(config, ctx.prefiller, kvRequestId)
  }}`;
  return await runConcurrentLegs(ctx, {
    prefillBody: buildPrefillBody(ctx.request, {
      api: ctx.api,
      nonStreaming: true,
      extra: { [FIELD_KV_TRANSFER_PARAMS]: prefillParams },
    }),
    decodeBody: buildDecodeBody(ctx.request, {
      set: { [FIELD_KV_TRANSFER_PARAMS]: decodeParams },
    }),
  });
}

/** Builds the `offloading` connector. */
export function createOffloading(config: Config): Connector {
  return {
    name: "offloading",
    pullsKvSource: true,
    run: (ctx) => run(config, ctx),
  };
}
