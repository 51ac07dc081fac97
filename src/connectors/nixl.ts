/**
 * @module
 * The first NIXL protocol (`nixl`, the original sidecar's v1, deprecated):
 * the handshake travels in top-level fields instead of `kv_transfer_params`.
 * Prefill gets `do_remote_decode: true`; its answer's top-level `remote_*`
 * fields go to the decoder with `do_remote_prefill: true` (base spec §3.3).
 */

import type { Config } from "../config.ts";
import { buildDecodeBody, buildPrefillBody } from "../protocol/bodies.ts";
import {
  FIELD_DO_REMOTE_DECODE,
  FIELD_DO_REMOTE_PREFILL,
  NIXL_V1_REMOTE_FIELDS,
} from "../protocol/fields.ts";
import { rawMember } from "../protocol/json_object.ts";
import { parsePrefillReply, sendDecode, sendPrefill } from "./_shared.ts";
import type { Connector, PdContext } from "./types.ts";

async function run(ctx: PdContext): Promise<Response> {
  ctx.log.debug("running NIXL protocol V1");
  const prefillBody = buildPrefillBody(ctx.request, {
    api: ctx.api,
    nonStreaming: true,
    extra: { [FIELD_DO_REMOTE_DECODE]: "true" },
  });
  const reply = parsePrefillReply(ctx, await sendPrefill(ctx, prefillBody));
  const set: Record<string, string> = { [FIELD_DO_REMOTE_PREFILL]: "true" };
  for (const field of NIXL_V1_REMOTE_FIELDS) {
    const value = rawMember(reply, field);
    if (value === undefined) {
      ctx.log.warn(`missing '${field}' field in prefiller response`);
    }
    set[field] = value ?? "null";
  }
  ctx.log.debug("received prefiller response", set);
  // A client's own do_remote_decode would make the decoder act as a prefiller.
  const decodeBody = buildDecodeBody(ctx.request, {
    set,
    remove: [FIELD_DO_REMOTE_DECODE],
  });
  return sendDecode(ctx, decodeBody);
}

/** Builds the legacy `nixl` (v1) connector. */
export function createNixl(_config: Config): Connector {
  return { name: "nixl", pullsKvSource: false, run };
}
