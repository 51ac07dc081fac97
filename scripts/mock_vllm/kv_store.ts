/**
 * A store of prompt KV keyed by a hash of the prompt: LMCache's shared
 * backend, the ExampleConnector's shared directory, and each engine's own
 * prefix cache (what an OffloadingConnector P2P source serves).
 *
 * Two mocks in one process share a store by being given the same
 * {@linkcode createKvStore} object. Mocks in different processes share one
 * over HTTP: every mock serves its store on its side channel
 * (`GET`/`POST /_mock/kv_store/<hash>`), and {@linkcode createRemoteKvStore}
 * is a client of another mock's.
 *
 * @module
 */

import type { SideChannelAnswer } from "./kv_connector.ts";
import {
  readPeerRequest,
  refusal,
  tokensAnswer,
} from "./side_channel_answers.ts";
import { KV_STORE_PATH_PREFIX } from "./kv_wire.ts";
import { callPeer, countOf, refusalOf } from "./peer.ts";

/** Result of a store call; `ok: false` means the store could not be asked. */
export type StoreResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: string };

/** Prompt KV kept by prompt hash. */
export interface KvStore {
  /** Where the store lives, for log lines. */
  readonly location: string;
  /** Cached tokens of the prompt whose hash is `key` (undefined: not cached). */
  lookup(
    key: string,
    signal: AbortSignal,
  ): Promise<StoreResult<number | undefined>>;
  /** Stores `numTokens` of KV for the prompt whose hash is `key`. */
  save(
    key: string,
    numTokens: number,
    signal: AbortSignal,
  ): Promise<StoreResult<void>>;
}

/** A store held in this process; give the same one to several mocks to share it. */
export interface LocalKvStore extends KvStore {
  /** Synchronous read, for the side channel that serves this store. */
  get(key: string): number | undefined;
  /** Synchronous write, for the side channel that serves this store. */
  set(key: string, numTokens: number): void;
}

/** Prompts kept before the oldest are forgotten. */
const CAPACITY = 10_000;

/** Creates an empty in-process store. */
export function createKvStore(): LocalKvStore {
  const entries = new Map<string, number>();
  const set = (key: string, numTokens: number) => {
    entries.delete(key);
    entries.set(key, Math.max(numTokens, entries.get(key) ?? 0));
    if (entries.size > CAPACITY) {
      entries.delete(entries.keys().next().value as string);
    }
  };
  return {
    location: "in-process store",
    get: (key) => entries.get(key),
    set,
    lookup: (key) => Promise.resolve({ ok: true, value: entries.get(key) }),
    save(key, numTokens) {
      set(key, numTokens);
      return Promise.resolve({ ok: true, value: undefined });
    },
  };
}

/** A client of the store another mock serves at `baseUrl` (its side channel). */
export function createRemoteKvStore(baseUrl: string): KvStore {
  const base = baseUrl.replace(/\/+$/, "");
  const url = (key: string) => `${base}${KV_STORE_PATH_PREFIX}${key}`;
  return {
    location: base,
    async lookup(key, signal) {
      const answer = await callPeer(url(key), undefined, signal);
      if (!answer.ok) return answer;
      if (answer.status === 404) return { ok: true, value: undefined };
      if (answer.status !== 200) {
        return { ok: false, reason: refusalOf(answer) };
      }
      return { ok: true, value: countOf(answer.body, "num_tokens") };
    },
    async save(key, numTokens, signal) {
      const answer = await callPeer(
        url(key),
        { num_tokens: numTokens },
        signal,
      );
      if (!answer.ok) return answer;
      return answer.status === 200
        ? { ok: true, value: undefined }
        : { ok: false, reason: refusalOf(answer) };
    },
  };
}

/** Hex SHA-256 of a prompt key, the store's key (like vLLM's block hashes, it names content, not requests). */
export async function hashPrompt(promptKey: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(promptKey),
  );
  return Array.from(
    new Uint8Array(digest),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** Serves `GET`/`POST <prefix><hash>` for `store`, or undefined for other paths. */
export function serveKvStore(
  request: Request,
  path: string,
  store: LocalKvStore,
): Promise<SideChannelAnswer> | undefined {
  if (!path.startsWith(KV_STORE_PATH_PREFIX)) return undefined;
  const key = path.slice(KV_STORE_PATH_PREFIX.length);
  if (!/^[0-9a-f]{64}$/.test(key)) {
    return Promise.resolve(refusal(400, "invalid prompt hash", key));
  }
  if (request.method === "GET") {
    const numTokens = store.get(key);
    return Promise.resolve(
      numTokens === undefined
        ? refusal(404, "prompt not in store", key)
        : tokensAnswer(numTokens, key),
    );
  }
  if (request.method !== "POST") {
    return Promise.resolve(refusal(405, "method not allowed", key));
  }
  return request.text().then((text) => {
    const numTokens = readPeerRequest(text).num_tokens;
    if (!Number.isInteger(numTokens) || (numTokens as number) < 1) {
      return refusal(400, "num_tokens must be an integer >= 1", key);
    }
    store.set(key, numTokens as number);
    return tokensAnswer(numTokens as number, key);
  });
}
