/**
 * The mock's KV side channel: one plain-HTTP surface for every protocol's
 * engine-to-engine traffic (NIXL pulls, SGLang bootstrap joins, Mooncake's
 * `/query` and transfer reads, P2P reads, the shared KV store). It shares
 * the API port unless a port of its own is asked for, so the same number is
 * the NIXL side-channel port, the SGLang and Mooncake bootstrap port and the
 * OffloadingConnector P2P port of that engine.
 *
 * Side-channel requests are not API requests: they are recorded in
 * `kvPulls`, never in `requests`.
 *
 * @module
 */

import { jsonResponse } from "./errors.ts";
import type { KvConnector, SideChannelAnswer } from "./kv_connector.ts";
import { type LocalKvStore, serveKvStore } from "./kv_store.ts";
import type { KvPullServed } from "./types.ts";

/** What the side channel serves and records. */
export interface SideChannelContext {
  readonly connector: KvConnector;
  readonly localStore: LocalKvStore;
  readonly kvPulls: KvPullServed[];
}

/** Handler of a dedicated side-channel listener: a side-channel path, or FastAPI's 404. */
export function handleSideChannel(
  request: Request,
  ctx: SideChannelContext,
): Promise<Response> | Response {
  return tryServeSideChannel(request, new URL(request.url).pathname, ctx) ??
    jsonResponse({ detail: "Not Found" }, 404);
}

/** Serves `path` when it is a side-channel path of this mock, else returns undefined. */
export function tryServeSideChannel(
  request: Request,
  path: string,
  ctx: SideChannelContext,
): Promise<Response> | undefined {
  const answer = ctx.connector.serveSideChannel(request, path) ??
    serveKvStore(request, path, ctx.localStore);
  if (answer === undefined) return undefined;
  return answer.then(
    (served) => record(ctx, path, served),
    // The peer went away mid-wait (its request was aborted); nobody reads this.
    () => jsonResponse({ reason: "peer went away" }, 499),
  );
}

function record(
  ctx: SideChannelContext,
  path: string,
  answer: SideChannelAnswer,
): Response {
  ctx.kvPulls.push(
    answer.reason === undefined
      ? { path, remoteRequestId: answer.key, status: answer.status }
      : {
        path,
        remoteRequestId: answer.key,
        status: answer.status,
        reason: answer.reason,
      },
  );
  return jsonResponse(answer.body, answer.status);
}
