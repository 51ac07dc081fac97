/**
 * @module
 * SGLang's PD disaggregation (`sglang`): prefill and decode get the same body
 * at once, with the prefiller's bootstrap server and a room id on which the
 * two meet; the decoder answers the client (base spec §3.6, delta §3.4,
 * vllm-wire.md §3.8).
 */

import type { Config } from "../config.ts";
import { buildDecodeBody } from "../protocol/bodies.ts";
import {
  FIELD_BOOTSTRAP_HOST,
  FIELD_BOOTSTRAP_PORT,
  FIELD_BOOTSTRAP_ROOM,
} from "../protocol/fields.ts";
import { runConcurrentLegs } from "./_concurrent.ts";
import type { Connector, PdContext } from "./types.ts";

const ROOM_MASK = (1n << 63n) - 1n;

/**
 * A random room in [0, 2^63-1], the range SGLang accepts; SGLang's own
 * router draws it the same way. Collisions are as likely as two random
 * 63-bit numbers meeting, unlike the Go sidecar's clock-plus-0..999 value
 * that concurrent requests could share.
 */
export function newBootstrapRoom(): string {
  const [random = 0n] = crypto.getRandomValues(new BigUint64Array(1));
  return (random & ROOM_MASK).toString();
}

async function run(config: Config, ctx: PdContext): Promise<Response> {
  ctx.log.debug("running SGLang protocol");
  // The host alone, IPv6 without brackets, as SGLang's router takes it from
  // the prefill URL (Go before 7a5eb8c2 sent "[" for IPv6 and "http" for
  // an http:// value); the admitted address with SSRF protection on, so
  // the decoder dials what was checked.
  const bootstrap = {
    [FIELD_BOOTSTRAP_HOST]: JSON.stringify(ctx.prefiller.host),
    [FIELD_BOOTSTRAP_PORT]: String(config.sglangBootstrapPort),
    [FIELD_BOOTSTRAP_ROOM]: newBootstrapRoom(),
  };
  ctx.log.debug("SGLang bootstrap", bootstrap);
  const body = buildDecodeBody(ctx.request, { set: bootstrap });
  return await runConcurrentLegs(ctx, { prefillBody: body, decodeBody: body });
}

/** Builds the `sglang` connector. */
export function createSglang(config: Config): Connector {
  return {
    name: "sglang",
    pullsKvSource: false,
    run: (ctx) => run(config, ctx),
  };
}
