/**
 * A stand-in for vLLM's encoder-cache (EC) connectors, which let an encoder
 * instance run the multimodal encoder and hand its outputs to the prefill
 * and decode instances (E/P/D disaggregation):
 *
 * - `ec-example` (vLLM's ECExampleConnector): the producer writes each
 *   item's encoder output to a shared store, keyed by the item's hash; the
 *   consumer reads it from there. No handshake in the HTTP bodies.
 * - `ec-nixl`: the producer keeps the output and answers
 *   `ec_transfer_params: {<mm_hash>: {engine_id, peer_host, peer_port,
 *   mm_hash}}`; the consumer must be sent an entry for every item it sees.
 *
 * A consumer that meets an item whose encoder output it cannot load answers
 * 500, so a sidecar that skips, mis-routes or mis-merges the encoder stage
 * fails a test instead of passing silently. Items are what vLLM's chat
 * parser calls multimodal: `image_url`, `video_url`, `audio_url` (by URL)
 * and `input_audio` (by data) parts of a message's `content` array.
 *
 * @module
 */

import { VllmError } from "./errors.ts";

/** EC connectors the mock speaks. */
export const EC_CONNECTOR_NAMES = ["ec-example", "ec-nixl"] as const;
/** One of {@linkcode EC_CONNECTOR_NAMES}. */
export type EcConnectorName = typeof EC_CONNECTOR_NAMES[number];
/** vLLM's `ec_role`: the encoder instance produces, prefill and decode instances consume. */
export type EcRole = "ec_producer" | "ec_consumer";

/** Encoder outputs by item hash: ECExampleConnector's shared directory, or the producer's memory. */
export interface EcStore {
  /** Hashes of the items whose encoder output is stored. */
  readonly hashes: Set<string>;
}

/** Creates an empty store; give producer and consumers the same one to share it. */
export function createEcStore(): EcStore {
  return { hashes: new Set() };
}

/** What the EC connector did for one request. */
export interface EcTransferRecord {
  readonly connector: EcConnectorName;
  readonly role: EcRole;
  /** Hashes of the request's multimodal items, in order of appearance. */
  readonly items: readonly string[];
  /** Consumer: hashes whose output was loaded; producer: hashes encoded. */
  readonly loaded: readonly string[];
  /** Consumer: hashes it could not load (the request then fails). */
  readonly missing: readonly string[];
}

/** The EC side of one engine. */
export interface EcEngine {
  readonly name: EcConnectorName;
  readonly role: EcRole;
  /**
   * Runs the connector for a request body: a producer encodes and returns
   * the `ec_transfer_params` to answer with (ec-nixl) or undefined; a
   * consumer loads every item or throws a 500.
   */
  handle(body: Readonly<Record<string, unknown>>): {
    readonly record: EcTransferRecord | undefined;
    readonly params: Record<string, unknown> | undefined;
  };
}

/** Where a producer says its outputs can be pulled from. */
export interface EcPeer {
  readonly engineId: string;
  readonly host: string;
  readonly port: number;
}

const URL_TYPES = ["image_url", "video_url", "audio_url"];

/** FNV-1a, hex: stable across processes, which is all a mock hash needs. */
function hashText(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The hash of one content part, or undefined when it is not multimodal. */
function itemHash(part: unknown): string | undefined {
  if (!isObject(part) || typeof part.type !== "string") return undefined;
  const inner = part[part.type];
  if (URL_TYPES.includes(part.type)) {
    const url = isObject(inner) ? inner.url : undefined;
    return typeof url === "string" ? hashText(`url:${url}`) : undefined;
  }
  if (part.type === "input_audio" && isObject(inner)) {
    return hashText(`audio:${String(inner.format)}:${String(inner.data)}`);
  }
  return undefined;
}

/** Distinct hashes of the multimodal items in a chat body's messages. */
export function multimodalHashes(
  body: Readonly<Record<string, unknown>>,
): string[] {
  const hashes: string[] = [];
  const messages = Array.isArray(body.messages) ? body.messages : [];
  for (const message of messages) {
    const content = isObject(message) ? message.content : undefined;
    if (!Array.isArray(content)) continue;
    for (const part of content) {
      const hash = itemHash(part);
      if (hash !== undefined && !hashes.includes(hash)) hashes.push(hash);
    }
  }
  return hashes;
}

/** The ec-nixl entry the consumer accepts for `hash`: the producer's own answer. */
function isUsableEntry(entry: unknown, hash: string): boolean {
  return isObject(entry) && entry.mm_hash === hash &&
    typeof entry.engine_id === "string" &&
    typeof entry.peer_host === "string" &&
    typeof entry.peer_port === "number";
}

/** Creates the EC side of an engine. */
export function createEcEngine(options: {
  readonly name: EcConnectorName;
  readonly role: EcRole;
  readonly store: EcStore;
  readonly peer: () => EcPeer;
}): EcEngine {
  const { name, role, store } = options;
  function produce(items: readonly string[]) {
    for (const hash of items) store.hashes.add(hash);
    const record = { connector: name, role, items, loaded: items, missing: [] };
    if (name !== "ec-nixl") return { record, params: undefined };
    const { engineId, host, port } = options.peer();
    const params: Record<string, unknown> = {};
    for (const hash of items) {
      params[hash] = {
        engine_id: engineId,
        mm_hash: hash,
        peer_host: host,
        peer_port: port,
      };
    }
    return { record, params };
  }
  function consume(
    body: Readonly<Record<string, unknown>>,
    items: readonly string[],
  ) {
    const sent = body.ec_transfer_params;
    const loadable = (hash: string) =>
      store.hashes.has(hash) &&
      (name !== "ec-nixl" ||
        (isObject(sent) && isUsableEntry(sent[hash], hash)));
    const loaded = items.filter(loadable);
    const missing = items.filter((hash) => !loadable(hash));
    return {
      record: { connector: name, role, items, loaded, missing },
      params: undefined,
    };
  }
  return {
    name,
    role,
    handle(body) {
      const items = multimodalHashes(body);
      if (items.length === 0) return { record: undefined, params: undefined };
      return role === "ec_producer" ? produce(items) : consume(body, items);
    },
  };
}

/** The error a consumer answers when an item's encoder output cannot be loaded. */
export function missingEncoderOutput(record: EcTransferRecord): VllmError {
  return new VllmError(
    500,
    `Encoder cache miss (${record.connector}): no encoder output for mm_hash ${
      record.missing.join(", ")
    }`,
  );
}
