/**
 * @module
 * The Web Worker side of `shards.ts`: runs one shard of the stream
 * client and posts its raw samples back.
 */

import { collectStreams, type StreamShardJob } from "./stream_client.ts";

interface WorkerScope {
  onmessage: ((event: MessageEvent<StreamShardJob>) => void) | null;
  postMessage(message: unknown): void;
}

const scope = globalThis as unknown as WorkerScope;

scope.onmessage = async (event) => {
  const job = event.data;
  scope.postMessage(await collectStreams(job.plan, job.shard));
};
