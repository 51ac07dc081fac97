/**
 * @module
 * The E/P/D encoder stage (`-ec-connector`, base §3.7, delta §3.8): every
 * multimodal item of a chat request is sent, alone, to one of the encoders
 * `x-encoder-hosts-ports` names, concurrently; with `ec-nixl` the encoders'
 * `ec_transfer_params` are merged into the request the prefill and decode
 * then get. The first failure cancels the other encoder requests, as do
 * the client leaving and `-encoder-timeout` passing (the Go sidecar bounds
 * none of them: an encoder that accepts and never answers held the request
 * as long as the client waited).
 */

import { startDeadline } from "../deadline.ts";
import type { EcConnectorName } from "../config.ts";
import { errorMessage, ProxyError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { buildPrefillBody } from "../protocol/bodies.ts";
import {
  FIELD_CACHE_HIT_THRESHOLD,
  FIELD_EC_TRANSFER_PARAMS,
  FIELD_MESSAGES,
  HEADER_ENCODER_HOSTS_PORTS,
  HEADER_REQUEST_ID,
  PATH_CHAT_COMPLETIONS,
} from "../protocol/fields.ts";
import {
  editObject,
  rawMember,
  type ScannedObject,
  scanObject,
} from "../protocol/json_object.ts";
import {
  type GenerationRequest,
  isJsonObject,
  type JsonObject,
  type ParsedGenerationRequest,
  scanJsonObject,
} from "../protocol/request.ts";
import {
  type UpstreamClient,
  UpstreamError,
  type WholeResponse,
} from "../upstream/client.ts";
import type { HeaderList, HeaderLookup } from "../upstream/headers.ts";
import { upstreamStatusError } from "../upstream/status_error.ts";
import {
  parseTarget,
  type TargetKind,
  type UpstreamTarget,
} from "../upstream/target.ts";

/** Content-part types vLLM's chat parser hands to the multimodal encoder. */
const URL_ITEM_TYPES = ["image_url", "video_url", "audio_url"] as const;
const AUDIO_ITEM_TYPE = "input_audio";

/** Most encoder targets read from one header: a bound on untrusted input. */
const MAX_ENCODERS = 64;

/** One multimodal content part, as the client sent it. */
export interface MultimodalItem {
  /** The part as JSON text, sent to the encoder verbatim. */
  readonly json: string;
  /** What makes two parts the same input: the URL, or the audio's data and format. */
  readonly key: string;
}

/**
 * The encoders `x-encoder-hosts-ports` names: one header value split on
 * commas, or several values, each trimmed; empty entries are skipped and a
 * malformed one is the client's 400, as for the prefill header.
 */
export function selectEncoderTargets(
  headers: HeaderLookup,
  log: Logger,
): UpstreamTarget[] {
  const raw = headers.get(HEADER_ENCODER_HOSTS_PORTS);
  if (raw === null) return [];
  const values = raw.split(",").map((value) => value.trim()).filter((value) =>
    value !== ""
  );
  if (values.length > MAX_ENCODERS) {
    throw new ProxyError(
      400,
      `Header "${HEADER_ENCODER_HOSTS_PORTS}" names ${values.length} encoders: at most ${MAX_ENCODERS} are allowed`,
    );
  }
  // The SSRF allowlist is applied by the caller (`admitOptionalTarget`).
  const targets = values.map(parseEncoderTarget);
  if (targets.length > 0) {
    log.debug("encoder targets", {
      encoders: targets.map((target) => target.hostPort),
    });
  }
  return targets;
}

/** An encoder named in `x-encoder-hosts-ports`. */
const ENCODER_TARGET: TargetKind = {
  what: "encoder target",
  code: "invalid_encoder_target",
};

function parseEncoderTarget(value: string): UpstreamTarget {
  return parseTarget(value, HEADER_ENCODER_HOSTS_PORTS, ENCODER_TARGET);
}

function itemKey(part: JsonObject): string | undefined {
  const type = part.type;
  if (typeof type !== "string") return undefined;
  const inner = part[type];
  if ((URL_ITEM_TYPES as readonly string[]).includes(type)) {
    const url = isJsonObject(inner) ? inner.url : undefined;
    return typeof url === "string" ? `url:${url}` : undefined;
  }
  if (type === AUDIO_ITEM_TYPE && isJsonObject(inner)) {
    // Go never de-duplicates input_audio; the same clip encodes the same.
    return `audio:${JSON.stringify([inner.format, inner.data])}`;
  }
  return undefined;
}

/**
 * The multimodal parts of a chat request's messages, in order, each input
 * once: `image_url`, `video_url` and `audio_url` by URL, `input_audio` by
 * its data. Other APIs have no `messages` and so no items.
 */
export function findMultimodalItems(body: JsonObject): MultimodalItem[] {
  const items: MultimodalItem[] = [];
  const seen = new Set<string>();
  const messages = Array.isArray(body.messages) ? body.messages : [];
  for (const message of messages) {
    const content = isJsonObject(message) ? message.content : undefined;
    if (!Array.isArray(content)) continue;
    for (const part of content) {
      const key = isJsonObject(part) ? itemKey(part) : undefined;
      if (key === undefined || seen.has(key)) continue;
      seen.add(key);
      items.push({ key, json: JSON.stringify(part) });
    }
  }
  return items;
}

/** Body of the encoder request for one item: the client's, with only that item and limits of 1. */
export function buildEncoderBody(
  request: GenerationRequest,
  item: MultimodalItem,
): string {
  return buildPrefillBody(request, {
    api: "chat",
    nonStreaming: true,
    extra: {
      [FIELD_MESSAGES]: `[{"role":"user","content":[${item.json}]}]`,
    },
  });
}

/** An encoder as the header named it, and the address the allowlist admitted. */
export interface EncoderEndpoint {
  /** `host:port` as named, for messages. */
  readonly hostPort: string;
  /** `host:port` to dial. */
  readonly connectHostPort: string;
}

/** What the encoder stage needs for one request. */
export interface EncoderStageContext {
  readonly connector: EcConnectorName;
  readonly encoders: readonly EncoderEndpoint[];
  readonly request: ParsedGenerationRequest;
  /** Headers of the encoder requests: the client's cleaned for forwarding (auth included). */
  readonly headers: HeaderList;
  readonly requestId: string;
  /** Fires when the client disconnects. */
  readonly signal: AbortSignal;
  /** `-encoder-timeout` in ms, bounding the whole stage; 0 means none. */
  readonly timeoutMs: number;
  /** The encoder stage's client (`-enable-tls=encoder`). */
  readonly upstream: UpstreamClient;
  readonly log: Logger;
}

interface EncoderReply {
  readonly index: number;
  readonly encoder: EncoderEndpoint;
  readonly reply: WholeResponse;
}

/**
 * Most the encoder requests of one client request may carry together, as a
 * multiple of its body. Each is the whole body with `messages` replaced by
 * one item (as in Go), so a body padded with one large member and listing
 * many small items fans out quadratically: a 1.1 MB request sent 2 GB to the
 * encoders (24 s of the sidecar's CPU), one at the default body limit
 * terabytes. Items that are most of their body, as images are, stay far
 * below it.
 */
export const ENCODER_FAN_OUT_FACTOR = 4;

/** What the encoder requests of any body may carry, however small the body: many items of a small request always fit. */
export const MIN_ENCODER_FAN_OUT_CHARS = 64 * 1024 * 1024;

/**
 * Throws a 413 `encoder_fan_out_too_large` when sending `items` would carry
 * more than the bound above, before any encoder is asked. Counted in UTF-16
 * units of the texts, which the bodies are built from.
 */
function ensureFanOutWithin(
  request: GenerationRequest,
  items: readonly MultimodalItem[],
): void {
  const messages = rawMember(request.scanned, FIELD_MESSAGES)?.length ?? 0;
  const shared = request.text.length - messages;
  const budget = Math.max(
    MIN_ENCODER_FAN_OUT_CHARS,
    ENCODER_FAN_OUT_FACTOR * request.text.length,
  );
  let total = 0;
  for (const item of items) total += shared + item.json.length;
  if (total <= budget) return;
  throw new ProxyError(
    413,
    `Request fans out too much: its ${items.length} multimodal items would send ${total} characters to the encoders, more than ${budget} (${ENCODER_FAN_OUT_FACTOR} times its body, at least ${MIN_ENCODER_FAN_OUT_CHARS}); send fewer items or a smaller body besides "messages"`,
    { code: "encoder_fan_out_too_large" },
  );
}

/**
 * Runs the encoders and returns the body the prefill and decode get: the
 * client's, with `cache_hit_threshold: 0` and, for `ec-nixl`, the merged
 * `ec_transfer_params`. Throws `ProxyError` on the first encoder failure.
 */
export async function runEncoderStage(
  ctx: EncoderStageContext,
): Promise<string> {
  const items = findMultimodalItems(ctx.request.json);
  const set: Record<string, string> = { [FIELD_CACHE_HIT_THRESHOLD]: "0" };
  if (items.length === 0) {
    ctx.log.debug("no multimodal items: skipping the encoders");
    return editObject(ctx.request.scanned, { set });
  }
  ensureFanOutWithin(ctx.request, items);
  ctx.log.info("processing multimodal items", {
    items: items.length,
    encoders: ctx.encoders.length,
  });
  const replies = await fanOut(ctx, items);
  if (ctx.connector === "ec-nixl") {
    const merged = mergeTransferParams(ctx.log, replies);
    if (merged !== undefined) set[FIELD_EC_TRANSFER_PARAMS] = merged;
  }
  return editObject(ctx.request.scanned, { set });
}

/**
 * Encoder requests of one client request in flight at once. A body within
 * the size limit can hold tens of thousands of items, each an upstream
 * request; unbounded, one client request could open as many connections.
 */
export const MAX_ITEMS_IN_FLIGHT = 32;

function timedOut(ctx: EncoderStageContext, items: number): ProxyError {
  return new ProxyError(
    504,
    `Encoder stage (${items} item${
      items === 1 ? "" : "s"
    }) did not finish within ${ctx.timeoutMs} ms (-encoder-timeout)`,
    { code: "encoder_timeout" },
  );
}

/**
 * Sends the items, `MAX_ITEMS_IN_FLIGHT` at a time, in order; the first
 * failure, or `-encoder-timeout` passing, aborts the others and starts no
 * more.
 */
async function fanOut(
  ctx: EncoderStageContext,
  items: readonly MultimodalItem[],
): Promise<EncoderReply[]> {
  const stop = new AbortController();
  const deadline = startDeadline(ctx.signal, ctx.timeoutMs);
  const signal = AbortSignal.any([deadline.signal, stop.signal]);
  let firstError: unknown;
  let clientAbort: unknown;
  const replies: EncoderReply[] = [];
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length && !signal.aborted) {
      const index = next++;
      try {
        replies[index] = await sendItem(ctx, {
          item: items[index] as MultimodalItem,
          index,
          signal,
        });
      } catch (error) {
        if (ctx.signal.aborted) {
          // Only a client abort ends a request without a first error;
          // nobody reads the answer then.
          clientAbort ??= error;
        } else if (firstError === undefined) {
          // A request the deadline cut fails as unreachable: say why.
          firstError = deadline.expired ? timedOut(ctx, items.length) : error;
          stop.abort();
        } else {
          ctx.log.debug("encoder request ended", {
            item: index,
            error: errorMessage(error),
          });
        }
      }
    }
  }
  try {
    await Promise.all(
      Array.from(
        { length: Math.min(MAX_ITEMS_IN_FLIGHT, items.length) },
        worker,
      ),
    );
  } finally {
    deadline.clear();
  }
  if (firstError !== undefined) throw firstError;
  if (clientAbort !== undefined) throw clientAbort;
  // The client left, or the deadline passed, between two items: the rest were never sent.
  if (Object.keys(replies).length < items.length) {
    ctx.signal.throwIfAborted();
    if (deadline.expired) throw timedOut(ctx, items.length);
  }
  return replies;
}

async function sendItem(
  ctx: EncoderStageContext,
  options: {
    readonly item: MultimodalItem;
    readonly index: number;
    readonly signal: AbortSignal;
  },
): Promise<EncoderReply> {
  const { index } = options;
  // Round-robin, as Go: item i goes to encoder i mod n.
  const encoder = ctx.encoders[index % ctx.encoders.length] as EncoderEndpoint;
  const body = buildEncoderBody(ctx.request, options.item);
  ctx.log.trace("encoder request", { item: index, body });
  let reply: WholeResponse;
  try {
    reply = await ctx.upstream.sendAndRead(
      ctx.upstream.url(encoder.connectHostPort, PATH_CHAT_COMPLETIONS),
      {
        method: "POST",
        headers: [
          ...ctx.headers.filter(([name]) => name !== HEADER_REQUEST_ID),
          [HEADER_REQUEST_ID, `${ctx.requestId}-enc-${index}`],
        ],
        body,
        signal: options.signal,
      },
    );
  } catch (error) {
    const detail = error instanceof UpstreamError
      ? error.detail
      : String(error);
    throw new ProxyError(
      502,
      `Cannot reach encoder "${encoder.hostPort}" for item ${index}: ${detail}`,
      { code: "encoder_unreachable", cause: error },
    );
  }
  ensureEncoderSucceeded({ index, encoder, reply });
  return { index, encoder, reply };
}

/**
 * A 4xx is about the client's input (a URL the encoder cannot fetch) and is
 * relayed as the encoder sent it; anything else is a 502 naming the encoder.
 */
function ensureEncoderSucceeded(answer: EncoderReply): void {
  const { reply, encoder, index } = answer;
  if (reply.status >= 200 && reply.status < 300) return;
  throw upstreamStatusError(reply, {
    upstream: `Encoder "${encoder.hostPort}"`,
    request: `for item ${index}`,
    detail: reply.text.trim().slice(0, 200) || "(empty body)",
    rejectedCode: "encoder_rejected",
    failedCode: "encoder_failed",
    failedStatus: 502,
  });
}

/**
 * The `ec_transfer_params` of every encoder answer merged into one object,
 * as raw JSON text (the values are vLLM's and opaque here); undefined when
 * no answer carried any, which leaves the client's own in place.
 */
function mergeTransferParams(
  log: Logger,
  replies: readonly EncoderReply[],
): string | undefined {
  const merged = new Map<string, string>();
  let contributed = 0;
  for (const { index, encoder, reply } of replies) {
    const params = transferParamsOf(answerObject(index, encoder, reply));
    if (params === undefined) {
      log.debug("encoder answer carries no ec_transfer_params", {
        item: index,
      });
      continue;
    }
    contributed++;
    for (const member of params.members) {
      const value = params.text.slice(member.valueStart, member.valueEnd);
      const previous = merged.get(member.key);
      if (previous !== undefined && previous !== value) {
        // Item order decides, so the outcome is the same on every run.
        log.warn("encoders answered the same ec_transfer_params key", {
          key: member.key,
          item: index,
        });
      }
      merged.set(member.key, value);
    }
  }
  if (contributed === 0) {
    log.warn(
      "no encoder answer carried ec_transfer_params; the request goes on without them",
    );
    return undefined;
  }
  if (contributed < replies.length) {
    log.info("only some encoder answers carried ec_transfer_params", {
      contributed,
      items: replies.length,
    });
  }
  const members = [...merged].map(([key, value]) =>
    `${JSON.stringify(key)}:${value}`
  );
  return `{${members.join(",")}}`;
}

function answerObject(
  index: number,
  encoder: EncoderEndpoint,
  reply: WholeResponse,
): ScannedObject {
  const answer = scanJsonObject(reply.text);
  if (answer === undefined) {
    throw new ProxyError(
      502,
      `Encoder "${encoder.hostPort}" answered item ${index} without a JSON object body`,
      { code: "encoder_bad_answer" },
    );
  }
  return answer;
}

/** The answer's `ec_transfer_params` when it is a non-empty object. */
function transferParamsOf(
  answer: ScannedObject,
): ScannedObject | undefined {
  const raw = rawMember(answer, FIELD_EC_TRANSFER_PARAMS);
  if (raw === undefined || !raw.startsWith("{")) return undefined;
  const params = scanObject(raw);
  return params.members.length > 0 ? params : undefined;
}
