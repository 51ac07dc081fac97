/**
 * @module
 * vLLM's MooncakeConnector (llm-d `mooncake`): the decoder pulls the KV from
 * the prefiller engine that the prefiller's bootstrap server names, matched
 * by a `transfer_id`; both legs run at once (delta §3.5).
 */

import type { Config } from "../config.ts";
import { buildDecodeBody, buildPrefillBody } from "../protocol/bodies.ts";
import {
  FIELD_KV_TRANSFER_PARAMS,
  HEADER_DATA_PARALLEL_RANK,
} from "../protocol/fields.ts";
import { runConcurrentLegs } from "./_concurrent.ts";
import { ensureClientPresent, withHeader } from "./_shared.ts";
import {
  BOOTSTRAP_QUERY_TIMEOUT_MS,
  createEngineCache,
  type EngineCache,
  type MooncakeEngine,
  queryBootstrap,
} from "./mooncake_bootstrap.ts";
import type { Connector, PdContext } from "./types.ts";
import { joinHostPort } from "../upstream/target.ts";

/**
 * `http://host:port` of the prefiller's bootstrap server, on the host the
 * prefiller is dialled at (the admitted address with SSRF protection on);
 * IPv6 in brackets (Go left them out).
 */
function bootstrapAddress(config: Config, ctx: PdContext): string {
  return `http://${
    joinHostPort(ctx.prefiller.host, config.mooncakeBootstrapPort)
  }`;
}

/** The prefiller's engines, from the cache or its bootstrap server. */
async function enginesOf(
  cache: EngineCache,
  server: string,
  ctx: PdContext,
): Promise<readonly MooncakeEngine[]> {
  const cached = cache.get(server);
  if (cached !== undefined) return cached;
  ctx.log.debug("querying Mooncake bootstrap server", { server });
  const engines = await queryBootstrap(ctx.upstream, server, {
    signal: ctx.signal,
    timeoutMs: BOOTSTRAP_QUERY_TIMEOUT_MS,
  }).catch((error: unknown) => {
    ensureClientPresent(ctx.signal);
    throw error;
  });
  cache.set(server, engines);
  return engines;
}

async function run(
  config: Config,
  cache: EngineCache,
  ctx: PdContext,
): Promise<Response> {
  ctx.log.debug("running Mooncake protocol");
  const server = bootstrapAddress(config, ctx);
  const engines = await enginesOf(cache, server, ctx);
  // Uniform over ranks; Go took Go's map order, which is not.
  const engine = engines[Math.floor(ctx.random() * engines.length)] ??
    engines[0];
  if (engine === undefined) throw new Error("no Mooncake engine to pick");
  const transferId = `xfer-${crypto.randomUUID()}`;
  ctx.log.debug("Mooncake transfer", {
    transfer_id: transferId,
    dp_rank: engine.dpRank,
    engine_id: engine.engineId,
  });
  const prefillParams = JSON.stringify({
    do_remote_decode: true,
    do_remote_prefill: false,
    transfer_id: transferId,
  });
  const decodeParams = JSON.stringify({
    do_remote_decode: false,
    do_remote_prefill: true,
    remote_bootstrap_addr: server,
    remote_engine_id: engine.engineId,
    transfer_id: transferId,
  });
  return await runConcurrentLegs(ctx, {
    prefillBody: buildPrefillBody(ctx.request, {
      api: ctx.api,
      nonStreaming: true,
      extra: { [FIELD_KV_TRANSFER_PARAMS]: prefillParams },
    }),
    prefillHeaders: withHeader(
      ctx.headers,
      HEADER_DATA_PARALLEL_RANK,
      engine.dpRank,
    ),
    decodeBody: buildDecodeBody(ctx.request, {
      set: { [FIELD_KV_TRANSFER_PARAMS]: decodeParams },
    }),
    onLegFailure(leg) {
      // A restarted prefiller has new engine ids; the Go cache never forgot.
      ctx.log.debug("forgetting Mooncake engines after a failed leg", {
        server,
        leg,
      });
      cache.delete(server);
    },
  });
}

/** Builds the `mooncake` connector with its own cache of prefiller engines. */
export function createMooncake(config: Config): Connector {
  const cache = createEngineCache();
  return {
    name: "mooncake",
    pullsKvSource: false,
    run: (ctx) => run(config, cache, ctx),
  };
}
