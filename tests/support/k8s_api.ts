/**
 * @module
 * A local server speaking the slice of the Kubernetes API the sidecar uses,
 * over real HTTPS with its own CA and a generated kubeconfig: list with label
 * and field selectors, watch with ADDED/MODIFIED/DELETED, bookmarks, 410 Gone
 * (as an HTTP status or an ERROR event), watches closed or broken on demand,
 * 403 for a resource the service account may not read, and list answers
 * replaced by hostile ones (padded to any size, trickled forever, or any
 * text). It shares no code with src/: a misreading of the API cannot agree
 * with itself.
 *
 * Served with `node:https`, not `Deno.serve`: Deno 2.9.6 crashes (SIGSEGV)
 * when a `Deno.serve` TLS server shuts down a connection whose client is
 * `node:tls` (undici, used by client-node) in the same process.
 */

import { makeCa, makeServerCert } from "./certs.ts";
import { createWaiters } from "./deadline.ts";
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";

/** A Kubernetes object as JSON. */
export type KubeObject = Record<string, unknown> & {
  metadata: Record<string, unknown> & { name: string; namespace: string };
};

type Resource = "inferencepools" | "pods";

interface HistoryEvent {
  readonly rv: number;
  readonly resource: Resource;
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  readonly object: KubeObject;
  readonly previous: KubeObject | undefined;
}

interface OpenWatch {
  readonly resource: Resource;
  readonly namespace: string;
  readonly matches: (object: KubeObject) => boolean;
  readonly bookmarks: boolean;
  readonly response: ServerResponse;
}

/** One request the API received. */
export interface ApiRequest {
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly watch: boolean;
}

/** A list answer padded to a size, in place of the true one. */
export interface PaddedAnswer {
  /** 200 pads the true list (items as they are); another status pads a `Status`'s message. */
  readonly status: number;
  /** Size of the whole body, in bytes. */
  readonly bytes: number;
  /** `"length"` declares the size in `Content-Length`; `"chunked"` declares none. */
  readonly framing: "length" | "chunked";
}

/**
 * A list answer that starts its body, then sends one space every
 * `trickleEveryMs`, and never ends: a list with 200 (the default), a
 * `Status` with another status.
 */
export interface TrickledAnswer {
  readonly trickleEveryMs: number;
  readonly status?: number;
}

/** A 200 list answer of exactly `text` (with its `Content-Length`), JSON or not. */
export interface TextAnswer {
  readonly text: string;
}

/** An answer to a list in place of the true one. */
export type ListAnswer = PaddedAnswer | TrickledAnswer | TextAnswer;

/** How a replaced answer ended. */
export interface ReplacedOutcome {
  /** Whether all of it was handed to the socket: false when the client closed the connection first. */
  readonly complete: boolean;
}

/** The running fake API. */
export interface FakeKubeApi extends AsyncDisposable {
  /** Path of a kubeconfig naming this server, its CA and a token. */
  readonly kubeconfigPath: string;
  readonly port: number;
  /** Requests received, in order. */
  readonly requests: ApiRequest[];
  /** Creates or replaces an object; returns its new resource version. */
  put(resource: Resource, object: KubeObject): number;
  /** Deletes an object by name. */
  remove(resource: Resource, namespace: string, name: string): void;
  /** Answers 403 to every list and watch of `resource` while true. */
  forbid(resource: Resource, forbidden: boolean): void;
  /** Sends a BOOKMARK at the current resource version to watches that asked for them. */
  bookmark(): void;
  /**
   * Forgets history up to now: a watch from an older version gets 410, as an
   * ERROR event in the stream (`"event"`) or as the HTTP status (`"status"`).
   */
  compact(mode: "event" | "status"): void;
  /** Ends every open watch cleanly; `broken: true` resets the sockets instead. */
  closeWatches(options?: { readonly broken?: boolean }): void;
  /** Adds `items` as they are (malformed ones too) to every later list of `resource`. */
  addRawListItems(resource: Resource, items: readonly unknown[]): void;
  /** Writes `event` as it is (malformed ones too) to the open watches of `resource`. */
  sendRawEvent(resource: Resource, event: unknown): void;
  /** Writes `text` unframed (no newline) to the open watches of `resource`. */
  writeToWatches(resource: Resource, text: string): void;
  /** Answers the next `count` lists of `resource` (1 unless told) with `answer` instead. */
  replaceLists(resource: Resource, answer: ListAnswer, count?: number): void;
  /** Resolves with the outcomes of the replaced answers once `count` of them ended; rejects after `timeoutMs`. */
  waitForReplaced(
    count: number,
    timeoutMs?: number,
  ): Promise<ReplacedOutcome[]>;
  /** Number of watches currently open for `resource`. */
  openWatches(resource: Resource): number;
  /** Resolves when `predicate` holds for a request received (now or later); rejects after `timeoutMs`. */
  waitForRequest(
    predicate: (request: ApiRequest) => boolean,
    timeoutMs?: number,
  ): Promise<ApiRequest>;
}

const TOKEN = "test-service-account-token";

/** The fake API's CA and its serving pair, as tests/support/certs.ts makes them. */
async function makeCertificates(): Promise<
  { ca: string; cert: string; key: string }
> {
  const ca = await makeCa("fake-kube-ca");
  const leaf = await makeServerCert(ca, "kube-apiserver");
  return { ca: ca.cert, ...leaf };
}

/** Label selector query syntax, evaluated independently of src/. */
function selectorMatcher(
  text: string,
): (labels: Record<string, string>) => boolean {
  const terms: ((labels: Record<string, string>) => boolean)[] = [];
  // Split on commas outside parentheses.
  const parts = text.match(/[^,(]+(?:\([^)]*\))?/g) ?? [];
  for (const raw of parts) {
    const part = raw.trim();
    if (part === "") continue;
    let match = /^(\S+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part);
    if (match) {
      const [, key = "", op, list = ""] = match;
      const values = list.split(",").map((value) => value.trim());
      terms.push((labels) =>
        op === "in"
          ? key in labels && values.includes(labels[key] ?? "")
          : !(key in labels) || !values.includes(labels[key] ?? "")
      );
      continue;
    }
    match = /^(\S+?)\s*(!=|==|=)\s*(\S*)$/.exec(part);
    if (match) {
      const [, key = "", op, value = ""] = match;
      terms.push((labels) =>
        op === "!=" ? labels[key] !== value : labels[key] === value
      );
      continue;
    }
    if (part.startsWith("!")) {
      const key = part.slice(1);
      terms.push((labels) => !(key in labels));
      continue;
    }
    terms.push((labels) => part in labels);
  }
  return (labels) => terms.every((term) => term(labels));
}

const FILL = new TextEncoder().encode("x".repeat(1024 * 1024));

/**
 * Writes `object` as JSON with its `field` (moved last) a string of "x"
 * making the body `answer.bytes` long, honouring backpressure so a client
 * that stops reading stops the writes.
 */
async function sendPadded(
  res: ServerResponse,
  answer: PaddedAnswer,
  padded: { readonly object: Record<string, unknown>; readonly field: string },
): Promise<ReplacedOutcome> {
  const { [padded.field]: _replaced, ...rest } = padded.object;
  const text = JSON.stringify({ ...rest, [padded.field]: "" });
  const encoder = new TextEncoder();
  const head = encoder.encode(text.slice(0, -2));
  const tail = encoder.encode(text.slice(-2));
  let fill = answer.bytes - head.byteLength - tail.byteLength;
  let closed = false;
  const close = new Promise<void>((resolve) =>
    res.once("close", () => {
      closed = true;
      resolve();
    })
  );
  const write = async (chunk: Uint8Array) => {
    if (res.write(chunk)) return;
    await Promise.race([
      new Promise((resolve) => res.once("drain", resolve)),
      close,
    ]);
  };
  res.writeHead(answer.status, {
    "content-type": "application/json",
    ...(answer.framing === "length"
      ? { "content-length": String(answer.bytes) }
      : {}),
  });
  await write(head);
  while (fill > 0 && !closed) {
    const size = Math.min(fill, FILL.byteLength);
    await write(FILL.subarray(0, size));
    fill -= size;
  }
  if (closed) return { complete: false };
  const finished = new Promise<boolean>((resolve) => {
    res.once("finish", () => resolve(true));
    res.once("close", () => resolve(res.writableFinished));
  });
  res.end(tail);
  return { complete: await finished };
}

/**
 * Starts a list (or a `Status`) and writes a space every `everyMs` until the
 * client closes the connection: far below any size bound, only a time bound
 * ends it.
 */
function sendTrickled(
  res: ServerResponse,
  answer: TrickledAnswer,
): Promise<ReplacedOutcome> {
  const status = answer.status ?? 200;
  res.writeHead(status, { "content-type": "application/json" });
  res.write(
    status === 200
      ? '{"kind":"List","apiVersion":"v1","metadata":{},"items":['
      : `{"kind":"Status","apiVersion":"v1","status":"Failure","code":${status},"message":"`,
  );
  const timer = setInterval(() => res.write(" "), answer.trickleEveryMs);
  return new Promise((resolve) =>
    res.once("close", () => {
      clearInterval(timer);
      resolve({ complete: false });
    })
  );
}

/** Writes `answer.text` whole as a 200. */
function sendText(
  res: ServerResponse,
  answer: TextAnswer,
): Promise<ReplacedOutcome> {
  const finished = new Promise<ReplacedOutcome>((resolve) => {
    res.once("finish", () => resolve({ complete: true }));
    res.once("close", () => resolve({ complete: res.writableFinished }));
  });
  const body = new TextEncoder().encode(answer.text);
  res.writeHead(200, {
    "content-type": "application/json",
    "content-length": String(body.byteLength),
  });
  res.end(body);
  return finished;
}

/** Sends a replacing answer to a list whose true answer is `list`. */
function sendReplaced(
  res: ServerResponse,
  answer: ListAnswer,
  list: Record<string, unknown>,
  status: (code: number) => Record<string, unknown>,
): Promise<ReplacedOutcome> {
  if ("trickleEveryMs" in answer) return sendTrickled(res, answer);
  if ("text" in answer) return sendText(res, answer);
  return sendPadded(
    res,
    answer,
    answer.status === 200
      ? { object: list, field: "padding" }
      : { object: status(answer.status), field: "message" },
  );
}

function labelsOf(object: KubeObject): Record<string, string> {
  const labels = object.metadata.labels;
  return typeof labels === "object" && labels !== null
    ? labels as Record<string, string>
    : {};
}

/** Starts the fake API on 127.0.0.1 and writes its kubeconfig to a temp file. */
export async function startFakeKubeApi(): Promise<FakeKubeApi> {
  const { ca, cert, key } = await makeCertificates();
  const store = new Map<string, KubeObject>();
  const history: HistoryEvent[] = [];
  const watches = new Set<OpenWatch>();
  const forbidden = new Set<Resource>();
  const requests: ApiRequest[] = [];
  const requested = createWaiters();
  const replacements = new Map<
    Resource,
    { readonly answer: ListAnswer; left: number }
  >();
  const replacedOutcomes: ReplacedOutcome[] = [];
  let rv = 100;
  let compactedAt = 0;
  let compactMode: "event" | "status" = "event";

  const storeKey = (resource: Resource, namespace: string, name: string) =>
    `${resource}/${namespace}/${name}`;

  const rawItems = new Map<Resource, unknown[]>();
  function writeToWatches(resource: Resource, text: string): void {
    for (const watch of watches) {
      if (watch.resource === resource) watch.response.write(text);
    }
  }
  function send(watch: OpenWatch, type: string, object: unknown): void {
    watch.response.write(`${JSON.stringify({ type, object })}\n`);
  }

  function deliver(watch: OpenWatch, event: HistoryEvent): void {
    if (watch.resource !== event.resource) return;
    if (event.object.metadata.namespace !== watch.namespace) return;
    const now = event.type !== "DELETED" && watch.matches(event.object);
    const before = event.previous !== undefined &&
      watch.matches(event.previous);
    if (event.type === "DELETED") {
      if (before || watch.matches(event.object)) {
        send(watch, "DELETED", event.object);
      }
    } else if (now && before) send(watch, "MODIFIED", event.object);
    else if (now) send(watch, "ADDED", event.object);
    else if (before) send(watch, "DELETED", event.object);
  }

  function record(event: HistoryEvent): void {
    history.push(event);
    for (const watch of watches) deliver(watch, event);
  }

  function status(
    code: number,
    reason: string,
    message: string,
  ): Record<string, unknown> {
    return {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message,
      reason,
      code,
    };
  }

  function respondJson(res: ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  }

  function route(
    url: URL,
  ): { resource: Resource; namespace: string } | undefined {
    const pools =
      /^\/apis\/inference\.networking\.(?:x-)?k8s\.io\/v1(?:alpha2)?\/namespaces\/([^/]+)\/inferencepools$/
        .exec(url.pathname);
    if (pools?.[1]) return { resource: "inferencepools", namespace: pools[1] };
    const pods = /^\/api\/v1\/namespaces\/([^/]+)\/pods$/.exec(url.pathname);
    if (pods?.[1]) return { resource: "pods", namespace: pods[1] };
    return undefined;
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "https://127.0.0.1");
    const query = Object.fromEntries(url.searchParams);
    const isWatch = query.watch === "true" || query.watch === "1";
    const request = { path: url.pathname, query, watch: isWatch };
    requests.push(request);
    requested.notify();
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      respondJson(res, 401, status(401, "Unauthorized", "Unauthorized"));
      return;
    }
    const target = route(url);
    if (target === undefined) {
      respondJson(
        res,
        404,
        status(
          404,
          "NotFound",
          "the server could not find the requested resource",
        ),
      );
      return;
    }
    const { resource, namespace } = target;
    if (forbidden.has(resource)) {
      respondJson(
        res,
        403,
        status(
          403,
          "Forbidden",
          `${resource} is forbidden: User "system:serviceaccount:${namespace}:sidecar" cannot ${
            isWatch ? "watch" : "list"
          } resource "${resource}" in the namespace "${namespace}"`,
        ),
      );
      return;
    }
    const labelMatch = selectorMatcher(query.labelSelector ?? "");
    const nameSelector = /^metadata\.name=(.*)$/.exec(
      query.fieldSelector ?? "",
    );
    const matches = (object: KubeObject) =>
      labelMatch(labelsOf(object)) &&
      (nameSelector === null || object.metadata.name === nameSelector[1]);
    if (!isWatch) {
      const items = [...store.entries()]
        .filter(([storeName, object]) =>
          storeName.startsWith(`${resource}/${namespace}/`) && matches(object)
        )
        .map(([, object]): unknown => object);
      const list = {
        kind: "List",
        apiVersion: "v1",
        metadata: { resourceVersion: String(rv) },
        items: [...items, ...(rawItems.get(resource) ?? [])],
      };
      const replacement = replacements.get(resource);
      if (replacement !== undefined && replacement.left > 0) {
        replacement.left--;
        void sendReplaced(
          res,
          replacement.answer,
          list,
          (code) => status(code, "InternalError", ""),
        ).then((outcome) => {
          replacedOutcomes.push(outcome);
          requested.notify();
        });
        return;
      }
      respondJson(res, 200, list);
      return;
    }
    const from = Number(query.resourceVersion ?? "0");
    if (from < compactedAt) {
      const gone = status(
        410,
        "Expired",
        `too old resource version: ${from} (${compactedAt})`,
      );
      if (compactMode === "status") {
        respondJson(res, 410, gone);
      } else {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(`${JSON.stringify({ type: "ERROR", object: gone })}\n`);
      }
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    // The API server answers a watch at once; node would wait for the first event.
    res.flushHeaders();
    const watch: OpenWatch = {
      resource,
      namespace,
      matches,
      bookmarks: query.allowWatchBookmarks === "true",
      response: res,
    };
    watches.add(watch);
    res.on("close", () => watches.delete(watch));
    for (const event of history) {
      if (event.rv > from) deliver(watch, event);
    }
  }

  const server = https.createServer({ cert, key }, handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null
    ? address.port
    : 0;
  const dir = await Deno.makeTempDir({ prefix: "fake-kube-" });
  const kubeconfigPath = `${dir}/kubeconfig`;
  await Deno.writeTextFile(
    kubeconfigPath,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: fake",
      "  cluster:",
      `    server: https://127.0.0.1:${port}`,
      `    certificate-authority-data: ${btoa(ca)}`,
      "users:",
      "- name: sidecar",
      "  user:",
      `    token: ${TOKEN}`,
      "contexts:",
      "- name: fake",
      "  context: {cluster: fake, user: sidecar, namespace: llm-d}",
      "current-context: fake",
      "",
    ].join("\n"),
  );

  return {
    kubeconfigPath,
    port,
    requests,
    put(resource, object) {
      rv++;
      const k = storeKey(
        resource,
        object.metadata.namespace,
        object.metadata.name,
      );
      const previous = store.get(k);
      const stored: KubeObject = {
        ...object,
        metadata: { ...object.metadata, resourceVersion: String(rv) },
      };
      store.set(k, stored);
      record({
        rv,
        resource,
        type: previous === undefined ? "ADDED" : "MODIFIED",
        object: stored,
        previous,
      });
      return rv;
    },
    remove(resource, namespace, name) {
      const k = storeKey(resource, namespace, name);
      const previous = store.get(k);
      if (previous === undefined) return;
      rv++;
      store.delete(k);
      const object: KubeObject = {
        ...previous,
        metadata: { ...previous.metadata, resourceVersion: String(rv) },
      };
      record({ rv, resource, type: "DELETED", object, previous });
    },
    forbid(resource, value) {
      if (value) forbidden.add(resource);
      else forbidden.delete(resource);
    },
    bookmark() {
      for (const watch of watches) {
        if (!watch.bookmarks) continue;
        send(watch, "BOOKMARK", {
          kind: watch.resource === "pods" ? "Pod" : "InferencePool",
          apiVersion: "v1",
          metadata: { resourceVersion: String(rv) },
        });
      }
    },
    compact(mode) {
      compactMode = mode;
      rv++;
      compactedAt = rv;
    },
    closeWatches(options = {}) {
      for (const watch of [...watches]) {
        watches.delete(watch);
        if (options.broken) watch.response.destroy();
        else watch.response.end();
      }
    },
    addRawListItems(resource, items) {
      rawItems.set(resource, [...(rawItems.get(resource) ?? []), ...items]);
    },
    sendRawEvent(resource, event) {
      writeToWatches(resource, `${JSON.stringify(event)}\n`);
    },
    writeToWatches,
    replaceLists(resource, answer, count = 1) {
      replacements.set(resource, { answer, left: count });
    },
    waitForReplaced: (count, timeoutMs = 10_000) =>
      requested.until(
        () => replacedOutcomes.length >= count && [...replacedOutcomes],
        `${count} replaced list answer(s) to end`,
        { ms: timeoutMs, detail: () => `${replacedOutcomes.length} ended` },
      ),
    openWatches: (resource) =>
      [...watches].filter((watch) => watch.resource === resource).length,
    waitForRequest: (predicate, timeoutMs = 10_000) =>
      requested.until(
        () => requests.find(predicate),
        `a Kubernetes API request where ${predicate}`,
        { ms: timeoutMs },
      ),
    async [Symbol.asyncDispose]() {
      for (const watch of watches) watch.response.destroy();
      watches.clear();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** An InferencePool object of group `inference.networking.k8s.io/v1`. */
export function poolV1(
  name: string,
  namespace: string,
  spec: {
    readonly matchLabels?: Record<string, string>;
    readonly matchExpressions?: unknown[];
    readonly ports: readonly number[];
  },
): KubeObject {
  return {
    apiVersion: "inference.networking.k8s.io/v1",
    kind: "InferencePool",
    metadata: { name, namespace },
    spec: {
      selector: {
        ...(spec.matchLabels ? { matchLabels: spec.matchLabels } : {}),
        ...(spec.matchExpressions
          ? { matchExpressions: spec.matchExpressions }
          : {}),
      },
      targetPorts: spec.ports.map((number) => ({ number })),
      endpointPickerRef: { name: "epp", port: { number: 9002 } },
    },
  };
}

/** An InferencePool object of group `inference.networking.x-k8s.io/v1alpha2`. */
export function poolV1alpha2(
  name: string,
  namespace: string,
  selector: Record<string, string>,
  port: number,
): KubeObject {
  return {
    apiVersion: "inference.networking.x-k8s.io/v1alpha2",
    kind: "InferencePool",
    metadata: { name, namespace },
    spec: {
      selector,
      targetPortNumber: port,
      extensionRef: { name: "epp" },
    },
  };
}

/** A pod object with an IP; ready unless said otherwise. */
export function pod(
  name: string,
  namespace: string,
  options: {
    readonly ip: string;
    readonly labels: Record<string, string>;
    readonly ready?: boolean;
    readonly terminating?: boolean;
  },
): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace,
      labels: options.labels,
      ...(options.terminating
        ? { deletionTimestamp: "2026-01-01T00:00:00Z" }
        : {}),
    },
    spec: { containers: [{ name: "vllm", image: "vllm" }] },
    status: {
      phase: "Running",
      podIP: options.ip,
      podIPs: [{ ip: options.ip }],
      conditions: [
        { type: "Ready", status: options.ready === false ? "False" : "True" },
      ],
    },
  };
}
