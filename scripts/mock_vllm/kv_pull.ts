/**
 * Decoder side of the mock NIXL transfer: checks `kv_transfer_params` the way
 * vLLM's NIXL connector does and "pulls" the blocks from the prefiller named
 * in them through its HTTP side channel (see kv_registry.ts).
 *
 * @module
 */

import { KV_PULL_PATH } from "./kv_registry.ts";
import { isRecord } from "./parse_request.ts";

/** Where and what to pull, as received (values stay `unknown`: a proxy must copy them verbatim). */
export interface PullTarget {
  readonly remoteEngineId: unknown;
  readonly remoteRequestId: unknown;
  readonly remoteHost: unknown;
  readonly remotePort: unknown;
  readonly remoteBlockIds: unknown;
  readonly numBlocks: number;
}

/** Result of checking `kv_transfer_params` of a `do_remote_prefill` request. */
export type KvParamsCheck =
  | { readonly ok: true; readonly target: PullTarget }
  | {
    readonly ok: false;
    readonly target: PullTarget;
    readonly reason: string;
  };

/** Result of one pull. */
export type PullResult =
  | {
    readonly ok: true;
    readonly numTokens: number;
    readonly numBlocks: number;
  }
  | { readonly ok: false; readonly reason: string };

const REQUIRED = [
  "remote_engine_id",
  "remote_request_id",
  "remote_host",
  "remote_port",
] as const;

/**
 * vLLM needs non-empty `remote_block_ids` and all of engine id, request id,
 * host and port; otherwise it logs "Got invalid KVTransferParams" and
 * computes the prompt itself.
 */
export function checkKvParams(
  params: Readonly<Record<string, unknown>>,
): KvParamsCheck {
  const target: PullTarget = {
    remoteEngineId: params.remote_engine_id,
    remoteRequestId: params.remote_request_id,
    remoteHost: params.remote_host,
    remotePort: params.remote_port,
    remoteBlockIds: params.remote_block_ids,
    numBlocks: countBlockIds(params.remote_block_ids),
  };
  const absent: string[] = [];
  if (
    !Array.isArray(params.remote_block_ids) ||
    params.remote_block_ids.length === 0
  ) {
    absent.push("remote_block_ids");
  }
  for (const key of REQUIRED) {
    if (params[key] === undefined || params[key] === null) absent.push(key);
  }
  if (absent.length > 0) {
    return {
      ok: false,
      target,
      reason: `invalid kv_transfer_params: missing ${absent.join(", ")}`,
    };
  }
  return { ok: true, target };
}

/** Number of block ids in a flat (`[1, 2]`) or per-group (`[[1, 2]]`) list. */
export function countBlockIds(blockIds: unknown): number {
  if (!Array.isArray(blockIds)) return 0;
  return blockIds.reduce<number>(
    (n, item) => n + (Array.isArray(item) ? item.length : 1),
    0,
  );
}

/** `host:port` for a URL, with IPv6 literals bracketed. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[")
    ? `[${host}]:${port}`
    : `${host}:${port}`;
}

/** Pulls the target's blocks; rejects only when `signal` aborts. */
export async function pullKv(
  target: PullTarget,
  signal: AbortSignal,
): Promise<PullResult> {
  const port = typeof target.remotePort === "string"
    ? Number(target.remotePort)
    : target.remotePort;
  if (
    typeof target.remoteHost !== "string" || target.remoteHost === "" ||
    !isPort(port)
  ) {
    return {
      ok: false,
      reason: `invalid remote address ${JSON.stringify(target.remoteHost)}:${
        JSON.stringify(target.remotePort)
      }`,
    };
  }
  const address = formatHostPort(target.remoteHost, port);
  let response: Response;
  try {
    response = await fetch(`http://${address}${KV_PULL_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        remote_engine_id: target.remoteEngineId,
        remote_request_id: target.remoteRequestId,
        remote_block_ids: target.remoteBlockIds,
      }),
      signal,
    });
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    return {
      ok: false,
      reason: `cannot reach remote engine at ${address}: ${messageOf(error)}`,
    };
  }
  const answer: unknown = await response.json().catch(() => undefined);
  if (response.status !== 200) {
    const reason = isRecord(answer) && typeof answer.reason === "string"
      ? answer.reason
      : `HTTP ${response.status}`;
    return { ok: false, reason };
  }
  const numTokens = isRecord(answer) && Number.isInteger(answer.num_tokens)
    ? answer.num_tokens as number
    : 0;
  const numBlocks = isRecord(answer) && Number.isInteger(answer.num_blocks)
    ? answer.num_blocks as number
    : 0;
  return { ok: true, numTokens, numBlocks };
}

function isPort(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) > 0 &&
    (value as number) < 65_536;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
