/**
 * @module
 * The listener threads of `-workers` > 1, seen from the main thread: started
 * one by one, watched for an uncaught error (the Go sidecar's listeners share
 * an errgroup, so one failing stops them all), stopped within the grace, and
 * asked for their metrics on a scrape.
 */

import type { Config, Env } from "./config.ts";
import type { StopOptions } from "./listener.ts";
import type { MetricSnapshot } from "./metrics.ts";
import { createSnapshotClient } from "./metrics_threads.ts";
import { settleWithin } from "./settle_within.ts";
import type { TlsCertificate } from "./tls.ts";

/** What a listener thread is started with. */
export interface ListenerStart {
  readonly config: Config;
  readonly tls: TlsCertificate | undefined;
  readonly env: Env;
  /** The `-ca-cert` bundle as the main thread read it: one read, the same trust in every thread. */
  readonly caCerts: readonly string[];
}

/** Messages from the main thread to a listener thread. */
export type ToListener =
  | ListenerStart & {
    readonly kind: "start";
    readonly index: number;
    /** Where the main thread asks for this thread's metrics (with `-metrics-port`). */
    readonly metricsPort: MessagePort | undefined;
  }
  | { readonly kind: "stop"; readonly options: StopOptions };

/** Messages from a listener thread to the main thread. */
export type FromListener =
  | { readonly kind: "listening" }
  | { readonly kind: "failed"; readonly message: string }
  | {
    readonly kind: "stopped";
    readonly clean: boolean;
    /** Its metrics as it stopped, so a scrape during the others' drain still counts them. */
    readonly metrics: MetricSnapshot | undefined;
  };

/** A started listener thread. */
export interface ListenerThread {
  /** Its metrics, or undefined when it has none (`-metrics-port=0`, or it failed). */
  snapshot(): Promise<MetricSnapshot | undefined>;
  /** Stops it within `options.graceMs` (and a little more); resolves whether all its requests finished. */
  stop(options: StopOptions): Promise<boolean>;
}

/** Options of {@linkcode startListenerThreads}. */
export interface ListenerThreadsOptions extends ListenerStart {
  /** The module each thread runs (main.ts, which knows it is a thread). */
  readonly entry: string | URL;
  /** Called once per thread that throws after it started; the thread is gone by then. */
  readonly onFailure: (index: number, message: string) => void;
}

/**
 * How long past its grace a stopping thread may take to answer: its stop is
 * bounded by the grace itself, so a thread later than this is stuck.
 */
const STOP_ANSWER_SLACK_MS = 1_000;

/** One thread, the answer it is awaited for, and whether it died. */
function spawn(
  entry: string | URL,
  index: number,
  onFailure: (message: string) => void,
) {
  const worker = new Worker(entry, {
    type: "module",
    name: `listener-${index}`,
  });
  let waiting: ((reply: FromListener | undefined) => void) | undefined;
  let failure: string | undefined;
  worker.onmessage = ({ data }: MessageEvent<FromListener>) => {
    const answer = waiting;
    waiting = undefined;
    answer?.(data);
  };
  worker.onerror = (event) => {
    // Handled here: unhandled, it would end the process with no drain.
    event.preventDefault();
    if (failure !== undefined) return;
    failure = event.message;
    worker.terminate();
    const answer = waiting;
    waiting = undefined;
    answer?.(undefined);
    onFailure(failure);
  };
  return {
    worker,
    get failure(): string | undefined {
      return failure;
    },
    /** The thread's answer to `message`, or undefined when it died first. */
    exchange(
      message: ToListener,
      transfer: Transferable[] = [],
    ): Promise<FromListener | undefined> {
      if (failure !== undefined) return Promise.resolve(undefined);
      const { promise, resolve } = Promise.withResolvers<
        FromListener | undefined
      >();
      waiting = resolve;
      worker.postMessage(message, transfer);
      return promise;
    },
  };
}

/**
 * Starts `config.workers` - 1 listener threads, each serving every rank on
 * the shared ports; throws, with none left running, when one cannot start.
 */
export async function startListenerThreads(
  options: ListenerThreadsOptions,
): Promise<ListenerThread[]> {
  const { config } = options;
  const threads: ListenerThread[] = [];
  const ends: (() => void)[] = [];
  for (let index = 1; index < config.workers; index++) {
    let started = false;
    const channel = config.metricsPort > 0 ? new MessageChannel() : undefined;
    const snapshots = channel && createSnapshotClient(channel.port1);
    const thread = spawn(options.entry, index, (message) => {
      // A scrape waiting on the dead thread is answered at once, not at its timeout.
      snapshots?.close();
      if (started) options.onFailure(index, message);
    });
    const stopped = () => {
      snapshots?.close();
      thread.worker.terminate();
    };
    ends.push(stopped);
    // A stopped thread's last metrics: the main thread serves scrapes until
    // every listener has drained, and a thread that drained first (its
    // requests done) must not take its counts away or stall the scrape.
    let last: MetricSnapshot | undefined;
    let stoppedAlready = false;
    threads.push({
      async snapshot() {
        if (!snapshots || thread.failure !== undefined) return undefined;
        // A thread stopped without a last answer (stuck) is skipped.
        if (stoppedAlready) return last;
        try {
          return await snapshots.request();
        } catch (error) {
          // Stopped while asked: its stop answered with its last metrics.
          if (last !== undefined) return last;
          // It died while asked: skipped, as a failed thread is.
          if (thread.failure !== undefined) return undefined;
          throw error;
        }
      },
      async stop(stop) {
        const reply = await settleWithin(
          thread.exchange({ kind: "stop", options: stop }),
          stop.graceMs + STOP_ANSWER_SLACK_MS,
        );
        if (reply?.kind === "stopped") last = reply.metrics;
        stoppedAlready = true;
        stopped();
        return reply?.kind === "stopped" && reply.clean;
      },
    });
    const reply = await thread.exchange({
      kind: "start",
      config,
      tls: options.tls,
      index,
      env: options.env,
      caCerts: options.caCerts,
      metricsPort: channel?.port2,
    }, channel ? [channel.port2] : []);
    if (reply?.kind !== "listening") {
      for (const end of ends) end();
      throw new Error(
        reply?.kind === "failed"
          ? reply.message
          : `listener thread ${index} did not start: ${
            thread.failure ?? "no answer"
          }`,
      );
    }
    started = true;
  }
  return threads;
}
