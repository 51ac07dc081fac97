/**
 * @module
 * LMCache (`lmcache`, the original sidecar's, deprecated): the prefiller
 * computes the prompt and LMCache's shared backend carries the KV, so the
 * decoder gets the client's request unchanged once the prefill is done
 * (base spec §3.4, vllm-wire.md §3.2).
 */

import type { Config } from "../config.ts";
import { buildPrefillBody } from "../protocol/bodies.ts";
import { runPrefill, sendDecode } from "./_shared.ts";
import type { Connector, PdContext } from "./types.ts";

async function run(ctx: PdContext): Promise<Response> {
  ctx.log.debug("running LMCache protocol");
  await runPrefill(
    ctx,
    buildPrefillBody(ctx.request, { api: ctx.api, nonStreaming: true }),
  );
  return await sendDecode(ctx, ctx.request.text);
}

/** Builds the `lmcache` connector. */
export function createLmcache(_config: Config): Connector {
  return { name: "lmcache", pullsKvSource: false, run };
}
