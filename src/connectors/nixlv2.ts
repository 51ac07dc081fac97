/**
 * @module
 * vLLM's NixlConnector protocol (llm-d `nixlv2`): prefill asks the remote
 * vLLM to keep the KV blocks for a remote decode; the `kv_transfer_params` it
 * answers with tell the local decoder where to pull them from.
 */

import type { Config } from "../config.ts";
import { FIELD_KV_TRANSFER_PARAMS } from "../protocol/fields.ts";
import { buildDecodeBody, buildPrefillBody } from "../protocol/bodies.ts";
import { rawMember } from "../protocol/json_object.ts";
import { KEY_REMOTE_KV_SOURCE, kvSourceBlock } from "./_p2p.ts";
import { cachedTokensPlaceOf } from "../protocol/api.ts";
import {
  handsOverCachedTokens,
  prefillCachedTokens,
  streamCarriesUsage,
} from "../protocol/cached_tokens.ts";
import { withPrefillCachedTokens } from "./_cached_tokens.ts";
import { parsePrefillReply, sendDecode, sendPrefill } from "./_shared.ts";
import type { Connector, PdContext } from "./types.ts";

/** What the prefill leg sends: only `do_remote_decode` matters to vLLM (vllm-wire.md §2.1). */
const PREFILL_KV_TRANSFER_PARAMS_JSON = JSON.stringify({
  do_remote_decode: true,
  do_remote_prefill: false,
  remote_engine_id: null,
  remote_block_ids: null,
  remote_host: null,
  remote_port: null,
});

/** The prefill's `kv_transfer_params`, with a P2P pull from the KV source when there is one. */
function prefillParams(config: Config, ctx: PdContext): string {
  const source = config.enableP2pPull ? kvSourceBlock(config, ctx) : undefined;
  if (source === undefined) return PREFILL_KV_TRANSFER_PARAMS_JSON;
  return `${
    PREFILL_KV_TRANSFER_PARAMS_JSON.slice(0, -1)
  },"${KEY_REMOTE_KV_SOURCE}":${source}}`;
}

async function run(config: Config, ctx: PdContext): Promise<Response> {
  // ctx.log already names the prefiller on every line.
  ctx.log.debug("running NIXL protocol V2");
  const prefillBody = buildPrefillBody(ctx.request, {
    api: ctx.api,
    nonStreaming: true,
    extra: { [FIELD_KV_TRANSFER_PARAMS]: prefillParams(config, ctx) },
  });
  const reply = parsePrefillReply(
    ctx,
    await sendPrefill(ctx, prefillBody),
  );
  let params = rawMember(reply, FIELD_KV_TRANSFER_PARAMS);
  if (params === undefined) {
    // The decoder then prefills locally; the Go sidecar does the same.
    ctx.log.warn("missing 'kv_transfer_params' field in prefiller response");
    params = "null";
  } else {
    ctx.log.trace("prefiller kv_transfer_params", {
      kv_transfer_params: params,
    });
  }
  const decodeBody = buildDecodeBody(ctx.request, {
    set: { [FIELD_KV_TRANSFER_PARAMS]: params },
  });
  const decode = await sendDecode(ctx, decodeBody);
  // The client must read the prefiller's count, not the decoder's, which
  // counts the transferred prompt as cached: on APIs that report one, unless
  // the prefiller handed its count over in `kv_transfer_params` (vLLM PR
  // #54222 and later), so the decoder already reports it.
  const place = cachedTokensPlaceOf(ctx.api);
  if (place === undefined || handsOverCachedTokens(params)) return decode;
  return await withPrefillCachedTokens(decode, {
    cached: prefillCachedTokens(reply, place),
    place,
    streamCarriesUsage: streamCarriesUsage(ctx.request.scanned, place),
    decoder: ctx.decoder,
  });
}

/** Builds the `nixlv2` connector, the default. */
export function createNixlv2(config: Config): Connector {
  return {
    name: "nixlv2",
    pullsKvSource: config.enableP2pPull,
    run: (ctx) => run(config, ctx),
  };
}
