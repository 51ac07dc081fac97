/**
 * Prefiller side of the mock NIXL transfer: the blocks a prefill "computed",
 * kept for a lease, and the judgement of the pulls decoders send for them.
 *
 * Real NIXL has the decoder handshake with the prefiller over ZMQ on
 * `VLLM_NIXL_SIDE_CHANNEL_PORT` and then RDMA-read the blocks. The mock swaps
 * both for one HTTP call, `POST /_mock/nixl/pull`, so two mocks can check that
 * a decoder was handed exactly the handle a prefiller issued, once, in time.
 *
 * Expiry is a clock comparison made at pull time, so no timer is involved.
 *
 * @module
 */

import type { SideChannelAnswer } from "./kv_connector.ts";
import { refusal } from "./side_channel_answers.ts";
import { isRecord } from "./parse_request.ts";
import { BLOCK_SIZE } from "./tokens.ts";

/** How block ids travel: one list per KV-cache group (HMA-era vLLM) or one flat list (the legacy connector). */
export type BlockLayout = "groups" | "flat";

/** Blocks issued to one prefill request. */
export interface IssuedHandle {
  readonly remoteRequestId: string;
  /** As sent on the wire: `[[1, 2]]` for "groups", `[1, 2]` for "flat". */
  readonly blockIds: number[][] | number[];
  readonly numBlocks: number;
  readonly numTokens: number;
  readonly issuedAt: number;
  consumed: boolean;
}

/** What the registry needs to judge a pull. */
export interface PullJudgeContext {
  readonly engineId: string;
  readonly leaseMs: number;
}

/** Handles issued by one prefiller engine. */
export interface KvRegistry {
  /** Allocates `ceil(numTokens / 16)` fresh block ids for `remoteRequestId`. */
  issue(
    remoteRequestId: string,
    numTokens: number,
    layout: BlockLayout,
  ): IssuedHandle;
  /** Judges a decoder's pull request body and consumes the handle on success. */
  serve(pull: unknown, context: PullJudgeContext): SideChannelAnswer;
}

/** Handles kept before the oldest are forgotten (and then answer "unknown handle"). */
const CAPACITY = 10_000;

/** Creates an empty registry; `now` is injectable for tests. */
export function createKvRegistry(now: () => number = Date.now): KvRegistry {
  const handles = new Map<string, IssuedHandle>();
  let nextBlockId = 1;
  return {
    issue(remoteRequestId, numTokens, layout) {
      const count = Math.max(1, Math.ceil(numTokens / BLOCK_SIZE));
      const ids = Array.from({ length: count }, () => nextBlockId++);
      const handle: IssuedHandle = {
        remoteRequestId,
        blockIds: layout === "groups" ? [ids] : ids,
        numBlocks: count,
        numTokens,
        issuedAt: now(),
        consumed: false,
      };
      handles.delete(remoteRequestId);
      handles.set(remoteRequestId, handle);
      if (handles.size > CAPACITY) {
        handles.delete(handles.keys().next().value as string);
      }
      return handle;
    },
    serve(pull, context) {
      if (!isRecord(pull) || typeof pull.remote_request_id !== "string") {
        return refusal(
          400,
          "invalid pull request",
          isRecord(pull) ? pull.remote_request_id : undefined,
        );
      }
      const id = pull.remote_request_id;
      if (pull.remote_engine_id !== context.engineId) {
        return refusal(409, "engine id mismatch", id);
      }
      const handle = handles.get(id);
      if (handle === undefined) return refusal(404, "unknown handle", id);
      if (handle.consumed) return refusal(409, "handle already consumed", id);
      if (now() > handle.issuedAt + context.leaseMs) {
        return refusal(410, "lease expired", id);
      }
      // A proxy must copy remote_block_ids verbatim; a flattened or edited list is a bug worth failing on.
      if (
        JSON.stringify(pull.remote_block_ids) !==
          JSON.stringify(handle.blockIds)
      ) {
        return refusal(409, "block ids mismatch", id);
      }
      handle.consumed = true;
      return {
        status: 200,
        body: { num_tokens: handle.numTokens, num_blocks: handle.numBlocks },
        key: id,
      };
    },
  };
}
