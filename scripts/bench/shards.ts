/**
 * @module
 * Splits the stream client over Web Workers. One Deno runtime reading a
 * few hundred sockets that turn busy in the same instant (every stream gets
 * its event in the same engine step) falls behind on its own reads: the
 * starvation the removed wire engine met past about 128 busy connections
 * (`README.md`). Each worker has its own thread and event loop and reads at
 * most `PER_SHARD` sockets; the parent merges their raw samples. Measured
 * on 500 step-synchronous streams: direct delay p50 7.5-9.4 ms in 5 workers
 * against 11.8-14.2 ms in one runtime, alternating runs.
 */

/** Sockets per worker: below the ~128 busy connections where one runtime fell behind. */
export const PER_SHARD = 100;

/** Which part of a run one worker does: every `count`-th stream or loop from `index`. */
export interface Shard {
  readonly index: number;
  readonly count: number;
}

/** How many workers `total` streams or connections take. */
export function shardCount(
  total: number,
  perShard: number = PER_SHARD,
): number {
  return Math.max(1, Math.ceil(total / perShard));
}

/**
 * The global indices shard `index` of `count` runs out of `total`: every
 * `count`-th one, so each shard's streams spread over the whole ramp.
 */
export function shardIndices(total: number, shard: Shard): number[] {
  const out: number[] = [];
  for (let i = shard.index; i < total; i += shard.count) out.push(i);
  return out;
}

/** Runs `jobs` in one worker each (`shard_worker.ts`) and resolves with what each posted back, in order. */
export async function runInWorkers<Job, Result>(
  jobs: readonly Job[],
): Promise<Result[]> {
  const url = new URL("./shard_worker.ts", import.meta.url);
  return await Promise.all(jobs.map((job) => {
    const { promise, resolve, reject } = Promise.withResolvers<Result>();
    const worker = new Worker(url, { type: "module" });
    worker.onmessage = (event: MessageEvent<Result>) => {
      worker.terminate();
      resolve(event.data);
    };
    worker.onerror = (event) => {
      event.preventDefault();
      worker.terminate();
      reject(new Error(`A bench client worker failed: ${event.message}`));
    };
    worker.postMessage(job);
    return promise;
  }));
}
