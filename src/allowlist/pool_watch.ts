/**
 * @module
 * Follows one InferencePool and the pods it selects through the Kubernetes
 * API with client-node's `ListWatch` (list, then watch from the list's
 * resource version; bookmarks; 410 Gone relists; a closed watch reconnects).
 * What the Go sidecar got wrong is fixed here: the target ports count, only
 * ready pods that are not terminating are members, a new selector's pods are
 * listed before the old ones are dropped (the set never shrinks while the
 * pool is unchanged), and start-up without RBAC fails after a bounded wait.
 *
 * The requests themselves go through `undici.request` with client-node's
 * credentials and TLS settings (its `RequestContext`): under Deno 2.9.6 the
 * body of undici's `fetch`, which client-node's own `Watch` uses, never ends
 * when the connection drops or the request is aborted, so a watch cut by the
 * network or by client-node's inactivity timeout would hang forever and the
 * allowlist would silently go stale.
 *
 * Imported lazily by `main.ts`, only when `-enable-ssrf-protection` is on:
 * client-node reads the whole environment when it loads.
 */

import {
  HttpMethod,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  RequestContext,
  Watch,
} from "@kubernetes/client-node";
import { request as undiciRequest } from "undici";
import {
  declaredLength,
  readBodyPrefix,
  readBodyWithin,
} from "../body_limit.ts";
import type { Logger } from "../log.ts";
import type { HeaderLookup } from "../upstream/headers.ts";
import { type IpAddress, parseIpLiteral } from "./address.ts";
import type { PoolMembers } from "./allowlist.ts";
import {
  formatLabelSelector,
  parsePoolSpec,
  POOL_VERSIONS,
  type PoolGroup,
  type PoolSpec,
  servingPodAddresses,
} from "./pool_spec.ts";

/** The pool to follow. */
export interface PoolReference {
  readonly namespace: string;
  readonly name: string;
  readonly group: PoolGroup;
}

/** Options of `startPoolWatch`. */
export interface PoolWatchOptions {
  readonly kubeConfig: KubeConfig;
  readonly pool: PoolReference;
  readonly log: Logger;
  /** How long start-up waits for the first complete view before failing. */
  readonly syncTimeoutMs: number;
  /** Delay before retrying a failed list or watch, doubled per failure up to `maxRetryMs`. */
  readonly minRetryMs?: number;
  readonly maxRetryMs?: number;
  /** Called after each recomputation of the members (tests wait on it). */
  readonly onRebuild?: () => void;
  /** Replaces client-node's wait before reconnecting a watch (1 s doubling to 30 s; tests shorten it). */
  readonly reconnectDelay?: (ms: number) => Promise<void>;
  /**
   * A watch silent this long is reopened from its resource version (client-node's
   * 30 s). It is also how a dropped connection is noticed: under Deno 2.9.6
   * undici's `fetch`, which client-node's `Watch` uses, never reports a peer
   * that closed mid-stream. Bookmarks keep a quiet watch from tripping it often.
   */
  readonly watchTimeoutMs?: number;
  /**
   * How long one list request may take, its whole body read included
   * (`LIST_TIMEOUT_MS`; tests shorten it): an answer that trickles in far
   * below `MAX_LIST_BYTES` fails here instead of holding the list forever.
   */
  readonly listTimeoutMs?: number;
}

/** A running pool watch. */
export interface PoolWatch extends PoolMembers {
  /** Member addresses and target ports as last computed, for logs and tests. */
  snapshot(): { readonly addresses: string[]; readonly ports: number[] };
  /** Stops every list and watch. */
  stop(): void;
}

/** A Kubernetes API answer other than 2xx. */
export class KubeApiError extends Error {
  /** HTTP status of the answer. */
  readonly statusCode: number;

  /** Wraps a failed answer; `detail` is the API's `Status.message` when there is one. */
  constructor(statusCode: number, detail: string) {
    super(detail === "" ? `status ${statusCode}` : `${statusCode}: ${detail}`);
    this.name = "KubeApiError";
    this.statusCode = statusCode;
  }
}

/** A status and message out of whatever client-node or the list threw. */
export function describeKubeError(error: unknown): string {
  if (error instanceof KubeApiError) return error.message;
  if (error instanceof Error) {
    const status = statusOf(error);
    const cause = error.cause instanceof Error
      ? `: ${error.cause.message}`
      : "";
    return status === undefined
      ? `${error.message}${cause}`
      : `${status} ${error.message}`;
  }
  return String(error);
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof status === "number" ? status : undefined;
}

/** How long one list request may take, body included. */
const LIST_TIMEOUT_MS = 30_000;

/**
 * Largest list answer read. A pod is a few KiB (tens with managed fields), so
 * a pool of thousands fits; past it the list fails as any failed request
 * does, instead of holding whatever the API server, or a proxy in front of
 * it, keeps sending.
 */
export const MAX_LIST_BYTES = 64 * 1024 * 1024;

/** Most of an error answer read: a `Status` is a few hundred bytes, and only its message is logged. */
const MAX_ERROR_BODY_BYTES = 4 * 1024;

type Answer = Awaited<ReturnType<typeof undiciRequest>>;

/** A request to the API with the configuration's credentials and TLS settings. */
async function openRequest(
  kubeConfig: KubeConfig,
  path: string,
  query: Readonly<Record<string, string | number | boolean | undefined>>,
  signal: AbortSignal,
): Promise<Answer> {
  const server = kubeConfig.getCurrentCluster()?.server;
  if (server === undefined) throw new Error("No current Kubernetes cluster");
  const url = new URL(server + path);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) url.searchParams.set(key, String(value));
  }
  const context = new RequestContext(url.toString(), HttpMethod.GET);
  await kubeConfig.applySecurityAuthentication(context);
  const dispatcher = context.getDispatcher();
  return await undiciRequest(url, {
    method: "GET",
    headers: context.getHeaders(),
    ...(dispatcher === undefined ? {} : { dispatcher }),
    signal,
  });
}

/**
 * The answer's body as a stream for the shared bounded readers; cancelled
 * after a read, it ends the request. Not node's `Readable.toWeb`: under Deno
 * 2.9.6 it enqueues after a cancel and throws where nothing catches it.
 */
function bodyStream(answer: Answer): ReadableStream<Uint8Array> {
  return ReadableStream.from<Uint8Array>(answer.body);
}

/** undici's header record, read as the shared header helpers read `Headers`. */
function headerLookup(headers: Answer["headers"]): HeaderLookup {
  return {
    get(name) {
      const value = headers[name];
      if (value === undefined) return null;
      return Array.isArray(value) ? value.join(", ") : value;
    },
  };
}

const utf8 = new TextDecoder();

async function failure(answer: Answer): Promise<KubeApiError> {
  const prefix = await readBodyPrefix(bodyStream(answer), MAX_ERROR_BODY_BYTES)
    .catch(() => undefined);
  const text = prefix === undefined ? "" : utf8.decode(prefix);
  const body = safeJson(text);
  const message = typeof body === "object" && body !== null &&
      "message" in body
    ? String(body.message)
    : text.slice(0, 200);
  return new KubeApiError(answer.statusCode, message);
}

/**
 * The list answer's text, at most `MAX_LIST_BYTES`: a declared length over
 * it is refused before a byte is read, a chunked answer where it passes.
 */
async function readListText(answer: Answer, path: string): Promise<string> {
  const tooLarge = () =>
    new Error(
      `The Kubernetes API answered ${path} with a list larger than ` +
        `${MAX_LIST_BYTES} bytes, the most the sidecar reads`,
    );
  const length = declaredLength(headerLookup(answer.headers));
  if (length !== undefined && length > MAX_LIST_BYTES) {
    // Destroyed, the body ends its request unread; a stream cancelled
    // before its first read would not end it.
    answer.body.destroy();
    throw tooLarge();
  }
  const bytes = await readBodyWithin(bodyStream(answer), MAX_LIST_BYTES);
  if (bytes === undefined) throw tooLarge();
  return utf8.decode(bytes);
}

/**
 * Lists a collection within `timeoutMs`, head and body: the signal aborts
 * undici's request, which destroys a body still being read. Not through
 * client-node's generated API classes: they would add 4 MB to the bundle
 * for two GET requests.
 */
async function listObjects(
  kubeConfig: KubeConfig,
  path: string,
  query: Readonly<Record<string, string>>,
  timeoutMs: number,
): Promise<KubernetesListObject<KubernetesObject>> {
  const signal = AbortSignal.timeout(timeoutMs);
  let text: string;
  try {
    const answer = await openRequest(kubeConfig, path, query, signal);
    if (answer.statusCode !== 200) throw await failure(answer);
    text = await readListText(answer, path);
  } catch (error) {
    // An error status keeps its own error (a 403's RBAC hint), even when
    // reading its body outlasted the bound.
    if (!signal.aborted || error instanceof KubeApiError) throw error;
    throw new Error(
      `The Kubernetes API did not answer ${path} in full within ${timeoutMs} ms`,
      { cause: error },
    );
  }
  const body = safeJson(text);
  if (body === undefined) {
    throw new Error(
      `The Kubernetes API answered ${path} with a body that is not JSON`,
    );
  }
  if (
    typeof body !== "object" || body === null || !("items" in body) ||
    !Array.isArray(body.items)
  ) {
    throw new Error(`The Kubernetes API answered ${path} without a list`);
  }
  // An item that is not an object with metadata would throw inside
  // client-node's cache, where nothing catches it and the process ends.
  return {
    ...body,
    items: body.items.filter(isKubernetesObject),
  } as KubernetesListObject<KubernetesObject>;
}

/** An object with a `metadata` map, what client-node's cache can key. */
function isKubernetesObject(value: unknown): value is KubernetesObject {
  return typeof value === "object" && value !== null &&
    "metadata" in value && typeof value.metadata === "object" &&
    value.metadata !== null;
}

/** Longest watch event line read; a pod object is a few KiB. */
const MAX_WATCH_LINE_CHARS = 16 * 1024 * 1024;

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** client-node's default: a watch silent this long is reopened. */
const WATCH_TIMEOUT_MS = 30_000;

/**
 * client-node's `Watch` contract (events to `callback`, `done` exactly once,
 * `TimeoutError` after a silent spell, 410 as `statusCode`) over
 * `undici.request`, and stoppable: `stop()` also ends a watch still opening.
 */
class RequestWatch extends Watch {
  #stopped = false;
  readonly #onWatch: () => void;
  readonly #timeoutMs: number;
  readonly #open = new Set<AbortController>();

  constructor(
    config: KubeConfig,
    onWatch: () => void,
    timeoutMs: number | undefined,
  ) {
    super(config);
    this.#onWatch = onWatch;
    this.#timeoutMs = timeoutMs ?? WATCH_TIMEOUT_MS;
  }

  stop(): void {
    this.#stopped = true;
    for (const controller of this.#open) controller.abort();
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    // deno-lint-ignore no-explicit-any -- client-node's own callback type
    callback: (phase: string, apiObj: any, watchObj?: any) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    // ListWatch opens its watch only after it has stored a list's items.
    this.#onWatch();
    const controller = new AbortController();
    let finished = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = (error: unknown) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.#open.delete(controller);
      controller.abort();
      done(error);
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(
        () => finish(new DOMException("The watch was silent", "TimeoutError")),
        this.#timeoutMs,
      );
    };
    if (this.#stopped) {
      finish(new DOMException("stopped", "AbortError"));
      return controller;
    }
    this.#open.add(controller);
    arm();
    try {
      const answer = await openRequest(
        this.config,
        path,
        { ...queryParams, watch: "true" },
        controller.signal,
      );
      if (answer.statusCode !== 200) {
        finish(await failure(answer));
        return controller;
      }
      arm();
      let pending = "";
      answer.body.setEncoding("utf8");
      answer.body.on("data", (chunk: string) => {
        if (finished) return;
        arm();
        // Split only when the chunk ends a line, and bound a line that never
        // ends: re-splitting the whole buffer on every chunk was quadratic.
        if (!chunk.includes("\n")) {
          pending += chunk;
          if (pending.length > MAX_WATCH_LINE_CHARS) {
            finish(new Error("watch event longer than 16 MiB"));
          }
          return;
        }
        const lines = (pending + chunk).split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) {
          const event = safeJson(line);
          // As with a list item: client-node's cache throws, uncaught, on an
          // object it cannot key; an ERROR event carries a Status instead.
          if (
            typeof event === "object" && event !== null && "type" in event &&
            "object" in event &&
            (event.type === "ERROR"
              ? typeof event.object === "object" &&
                event.object !== null
              : isKubernetesObject(event.object))
          ) {
            callback(String(event.type), event.object, event);
          }
        }
      });
      answer.body.on("end", () => finish(null));
      answer.body.on("error", (error: unknown) => finish(error));
    } catch (error) {
      finish(error);
    }
    return controller;
  }
}

interface InformerSpec<T extends KubernetesObject> {
  readonly what: string;
  readonly kubeConfig: KubeConfig;
  /** API path of the collection; the query asks for bookmarks, which `ListWatch` does not. */
  readonly path: string;
  readonly list: () => Promise<KubernetesListObject<T>>;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  readonly onChange: () => void;
  readonly log: Logger;
  readonly minRetryMs: number;
  readonly maxRetryMs: number;
  readonly delay: ((ms: number) => Promise<void>) | undefined;
  readonly watchTimeoutMs: number | undefined;
}

interface RunningInformer<T extends KubernetesObject> {
  readonly informer: ListWatch<T>;
  /** Resolves once the first list's objects are in the informer's cache. */
  readonly synced: Promise<void>;
  lastError(): unknown;
  stop(): void;
}

/**
 * Starts a `ListWatch` that restarts itself after errors: client-node's
 * stops for good on anything but a 410 or a timeout.
 */
function startInformer<T extends KubernetesObject>(
  spec: InformerSpec<T>,
): RunningInformer<T> {
  let stopped = false;
  let failures = 0;
  let lastError: unknown;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const synced = Promise.withResolvers<void>();
  let listed = false;
  const watch = new RequestWatch(spec.kubeConfig, () => {
    if (listed) synced.resolve();
  }, spec.watchTimeoutMs);
  const list = async () => {
    if (stopped) throw new Error("stopped");
    const result = await spec.list();
    // A list that ends after stop() must not open a watch.
    if (stopped) throw new Error("stopped");
    failures = 0;
    lastError = undefined;
    listed = true;
    return result;
  };
  const informer = new ListWatch<T>(
    `${spec.path}?allowWatchBookmarks=true`,
    watch,
    list,
    false,
    spec.labelSelector,
    spec.fieldSelector,
    spec.delay === undefined ? undefined : { delayFn: spec.delay },
  );
  informer.on("add", spec.onChange);
  informer.on("update", spec.onChange);
  informer.on("delete", spec.onChange);
  // A rejected start (client-node's list and watch run in it) takes the same
  // retry as an error event instead of ending the process unhandled.
  const start = () => void informer.start().catch(onError);
  informer.on("error", onError);
  function onError(error: unknown): void {
    if (stopped) return;
    lastError = error;
    failures++;
    const delay = Math.min(
      spec.minRetryMs * 2 ** Math.min(failures - 1, 20),
      spec.maxRetryMs,
    );
    spec.log.warn(`Kubernetes API request for ${spec.what} failed, retrying`, {
      error: describeKubeError(error),
      retry_ms: delay,
    });
    timer = setTimeout(() => {
      timer = undefined;
      if (!stopped) start();
    }, delay);
  }
  start();
  return {
    informer,
    synced: synced.promise,
    lastError: () => lastError,
    stop() {
      stopped = true;
      clearTimeout(timer);
      watch.stop();
      void informer.stop();
    },
  };
}

function rbacHint(pool: PoolReference, namespace: string): string {
  return ` The sidecar's service account needs get, list and watch on ` +
    `"inferencepools" (group "${pool.group}") and "pods" in namespace "${namespace}".`;
}

/**
 * Starts following the pool; resolves once the pool was listed and, if it
 * exists, its pods too. Rejects after `syncTimeoutMs` with the last API
 * error (a 403 names the RBAC the sidecar lacks).
 */
export async function startPoolWatch(
  options: PoolWatchOptions,
): Promise<PoolWatch> {
  const { kubeConfig, pool, log } = options;
  const { namespace, name, group } = pool;
  const version = POOL_VERSIONS[group];
  const minRetryMs = options.minRetryMs ?? 1_000;
  const maxRetryMs = options.maxRetryMs ?? 30_000;
  const listTimeoutMs = options.listTimeoutMs ?? LIST_TIMEOUT_MS;

  let spec: PoolSpec | undefined;
  let ports = new Set<number>();
  let members = new Set<string>();
  let pods: RunningInformer<KubernetesObject> | undefined;
  let podsKey = "";
  let pending:
    | {
      readonly key: string;
      readonly running: RunningInformer<KubernetesObject>;
    }
    | undefined;
  let poolSynced = false;
  let recomputeQueued = false;
  const ready = Promise.withResolvers<void>();

  function recompute(): void {
    recomputeQueued = false;
    const next = new Set<string>();
    if (spec !== undefined && pods !== undefined) {
      for (const pod of pods.informer.list(namespace)) {
        for (const ip of servingPodAddresses(pod, spec.selector)) {
          const address = parseIpLiteral(ip);
          if (address !== undefined) next.add(address.text);
        }
      }
    }
    const nextPorts = new Set(spec?.targetPorts ?? []);
    const changed = next.size !== members.size ||
      [...next].some((address) => !members.has(address)) ||
      nextPorts.size !== ports.size ||
      [...nextPorts].some((port) => !ports.has(port));
    members = next;
    ports = nextPorts;
    if (changed) {
      log.info("rebuilt allowlist", {
        targetCount: next.size,
        targets: [...next],
        ports: [...nextPorts],
      });
    }
    if (poolSynced && (spec === undefined || pods !== undefined)) {
      ready.resolve();
    }
    options.onRebuild?.();
  }

  // Coalesced: a relist fires one callback per object, synchronously.
  function scheduleRecompute(): void {
    if (recomputeQueued) return;
    recomputeQueued = true;
    queueMicrotask(recompute);
  }

  function stopPods(): void {
    pending?.running.stop();
    pods?.stop();
    pending = undefined;
    pods = undefined;
    podsKey = "";
  }

  function watchPods(next: PoolSpec): void {
    const key = formatLabelSelector(next.selector);
    if (key === podsKey && pending === undefined) return;
    if (key === pending?.key) return;
    pending?.running.stop();
    const podsPath = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`;
    const running: RunningInformer<KubernetesObject> = startInformer({
      what: `pods "${key}" in namespace "${namespace}"`,
      kubeConfig,
      path: podsPath,
      list: () =>
        listObjects(
          kubeConfig,
          podsPath,
          { labelSelector: key },
          listTimeoutMs,
        ),
      labelSelector: key,
      onChange: () => {
        if (pods === running) scheduleRecompute();
      },
      log,
      minRetryMs,
      maxRetryMs,
      delay: options.reconnectDelay,
      watchTimeoutMs: options.watchTimeoutMs,
    });
    pending = { key, running };
    // Make before break: the old pods stay members until the new list is in.
    void running.synced.then(() => {
      if (pending?.running !== running) return;
      pods?.stop();
      pods = running;
      podsKey = key;
      pending = undefined;
      recompute();
    });
  }

  function onPoolChange(): void {
    const object = poolInformer.informer.get(name, namespace);
    if (object === undefined) {
      if (spec !== undefined) {
        log.info("InferencePool deleted: every target is denied", {
          pool: `${namespace}/${name}`,
        });
      }
      spec = undefined;
      stopPods();
      scheduleRecompute();
      return;
    }
    let next: PoolSpec;
    try {
      next = parsePoolSpec(object, group);
    } catch (error) {
      // As the Go sidecar (NEXT): a bad update keeps the previous view.
      log.error("failed to extract selector from InferencePool", {
        pool: `${namespace}/${name}`,
        error: error instanceof Error ? error.message : String(error),
      });
      scheduleRecompute();
      return;
    }
    spec = next;
    watchPods(next);
    scheduleRecompute();
  }

  const poolsPath = `/apis/${group}/${version}/namespaces/${
    encodeURIComponent(namespace)
  }/inferencepools`;
  const poolInformer = startInformer<KubernetesObject>({
    what: `InferencePool "${namespace}/${name}"`,
    kubeConfig,
    path: poolsPath,
    list: () =>
      listObjects(kubeConfig, poolsPath, {
        fieldSelector: `metadata.name=${name}`,
      }, listTimeoutMs),
    fieldSelector: `metadata.name=${name}`,
    onChange: onPoolChange,
    log,
    minRetryMs,
    maxRetryMs,
    delay: options.reconnectDelay,
    watchTimeoutMs: options.watchTimeoutMs,
  });
  void poolInformer.synced.then(() => {
    poolSynced = true;
    onPoolChange();
    if (spec === undefined) {
      log.warn(
        "InferencePool not found or unusable: every target is denied until it is",
        { pool: `${namespace}/${name}`, group, version },
      );
    }
  });

  function stop(): void {
    stopPods();
    poolInformer.stop();
  }

  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = pending?.running.lastError() ?? poolInformer.lastError();
      const status = statusOf(error);
      const hint = status === 401 || status === 403
        ? rbacHint(pool, namespace)
        : "";
      const detail = error === undefined
        ? "no answer from the Kubernetes API"
        : `last error: ${describeKubeError(error)}`;
      reject(
        new Error(
          `Cannot start SSRF protection: InferencePool "${namespace}/${name}" ` +
            `(${group}/${version}) and its pods could not be read within ` +
            `${options.syncTimeoutMs} ms (${detail}).${hint}`,
        ),
      );
    }, options.syncTimeoutMs);
  });
  try {
    await Promise.race([ready.promise, timeout]);
  } catch (error) {
    stop();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  log.info("SSRF protection: following InferencePool", {
    pool: `${namespace}/${name}`,
    group,
    version,
  });
  return {
    has(address: IpAddress, port: number) {
      return ports.has(port) && members.has(address.text);
    },
    hasAddress: (address: IpAddress) => members.has(address.text),
    snapshot: () => ({ addresses: [...members], ports: [...ports] }),
    stop,
  };
}
