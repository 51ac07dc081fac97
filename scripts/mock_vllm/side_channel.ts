/**
 * HTTP handler of the prefiller's KV side channel (`POST /_mock/nixl/pull`),
 * a stand-in for NIXL's ZMQ handshake plus RDMA read (see kv_registry.ts).
 *
 * @module
 */

import { jsonResponse } from "./errors.ts";
import type { Knobs } from "./knobs.ts";
import { KV_PULL_PATH, type KvRegistry } from "./kv_registry.ts";
import type { MockLogger } from "./log.ts";
import { parseJsonBody } from "./parse_request.ts";
import type { KvPullServed } from "./types.ts";

/** What the side channel reads and records. */
export interface SideChannelContext {
  readonly knobs: Knobs;
  readonly registry: KvRegistry;
  readonly logger: MockLogger;
  readonly kvPulls: KvPullServed[];
}

/** True for a request the side channel serves. */
export function isKvPull(request: Request, pathname: string): boolean {
  return request.method === "POST" && pathname === KV_PULL_PATH;
}

/** Handler of a dedicated side-channel listener: pulls, or FastAPI's 404. */
export function handleSideChannel(
  request: Request,
  ctx: SideChannelContext,
): Promise<Response> | Response {
  return isKvPull(request, new URL(request.url).pathname)
    ? servePull(request, ctx)
    : jsonResponse({ detail: "Not Found" }, 404);
}

/** Judges one pull against the registry, records and logs it. */
export async function servePull(
  request: Request,
  ctx: SideChannelContext,
): Promise<Response> {
  const parsed = parseJsonBody(await request.text().catch(() => ""));
  const answer = ctx.registry.serve(parsed.ok ? parsed.value : undefined, {
    engineId: ctx.knobs.engineId,
    leaseMs: ctx.knobs.kvLeaseMs,
  });
  const id = String(answer.remoteRequestId);
  const served: KvPullServed = answer.reason === undefined
    ? { remoteRequestId: answer.remoteRequestId, status: answer.status }
    : {
      remoteRequestId: answer.remoteRequestId,
      status: answer.status,
      reason: answer.reason,
    };
  ctx.kvPulls.push(served);
  if (answer.reason === undefined) {
    ctx.logger.write(
      "DEBUG",
      "nixl_connector.py:1177",
      `Remote engine read the KV blocks of request ${id}`,
    );
  } else {
    ctx.logger.write(
      "WARNING",
      "nixl_connector.py:1190",
      `Refused KV pull for request ${id}: ${answer.reason}`,
    );
  }
  return jsonResponse(answer.body, answer.status);
}
