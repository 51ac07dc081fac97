/**
 * @module
 * Prefill and decode sent at once (sglang, mooncake, offloading): the decoder
 * waits for the KV the prefiller pushes or hands out, so neither leg waits
 * for the other's HTTP answer. The client is answered by the decode leg.
 *
 * What the client sees:
 * - The decode leg fails (no answer, an error status, a body that breaks
 *   before its first byte): that failure, mapped as for every connector; the
 *   prefill leg is aborted.
 * - The prefill leg fails before the decode produced its first body byte: the
 *   decode is aborted and the client gets the prefill's failure (a 4xx
 *   relayed, a 5xx named, 502 when unreachable), never an empty 200
 *   (llm-d-router #2816). The client's response is held until the prefill
 *   succeeded or the decode's first byte arrived; this costs no latency, as a
 *   decoder emits nothing before it has the prompt's KV (vllm-wire.md §1.4).
 * - The prefill leg fails after the decode produced bytes: the decode has
 *   its KV (or recomputed it, as its engine's policy says), so its answer
 *   stands; the prefill failure is logged with its cause.
 * - The decode breaks mid-stream: the client's stream is broken too (no clean
 *   end that would hide a truncated answer), and the prefill is aborted.
 * - The client leaves: both legs are aborted.
 *
 * Every promise of a leg is observed, so a failing leg can never become an
 * unhandled rejection that ends the process.
 */

import { errorMessage, ProxyError } from "../errors.ts";
import type { HeaderList } from "../upstream/headers.ts";
import { ensureClientPresent, runPrefill, sendDecode } from "./_shared.ts";
import { resumeStream, withBody } from "./_stream.ts";
import type { PdContext } from "./types.ts";

/** The two legs a concurrent connector sends. */
export interface ConcurrentLegs {
  readonly prefillBody: string;
  readonly decodeBody: string;
  /** Headers of the prefill leg; `ctx.headers` when absent. */
  readonly prefillHeaders?: HeaderList;
  /**
   * Called once when a leg fails on its own (not when the client leaves or
   * the other leg's failure aborted it), so the connector can forget state
   * that may be stale.
   */
  readonly onLegFailure?: (leg: "prefill" | "decode") => void;
}

type PrefillOutcome =
  | { readonly kind: "ok" }
  | { readonly kind: "failed"; readonly error: unknown }
  | { readonly kind: "cancelled" };

type FirstEvent =
  | { readonly kind: "chunk" }
  | { readonly kind: "end" }
  | { readonly kind: "broken"; readonly error: unknown }
  | { readonly kind: "prefill"; readonly outcome: PrefillOutcome };

/** The state both legs share: their abort controllers and what is known so far. */
interface Legs {
  readonly ctx: PdContext;
  readonly prefill: AbortController;
  readonly decode: AbortController;
  readonly onLegFailure: ((leg: "prefill" | "decode") => void) | undefined;
  /** Set once the decode sent a body byte: from then on its answer stands. */
  decodeProducing: boolean;
}

/** Sends both legs at once and returns the decode's answer, as the module doc says. */
export async function runConcurrentLegs(
  ctx: PdContext,
  legs: ConcurrentLegs,
): Promise<Response> {
  const state: Legs = {
    ctx,
    prefill: new AbortController(),
    decode: new AbortController(),
    onLegFailure: legs.onLegFailure,
    decodeProducing: false,
  };
  const prefillDone = startPrefill(state, legs);
  let decode: Response;
  try {
    decode = await sendDecode(ctx, legs.decodeBody, {
      signal: AbortSignal.any([ctx.signal, state.decode.signal]),
    });
  } catch (error) {
    state.prefill.abort();
    throw await decodeFailure(state, prefillDone, error);
  }
  const early = await settledOutcome(prefillDone);
  if (early?.kind === "failed") {
    await discard(decode);
    throw early.error;
  }
  if (decode.status < 200 || decode.status >= 300) {
    ctx.log.debug("decode answered an error: aborting the prefill", {
      status: decode.status,
    });
    state.prefill.abort();
    state.onLegFailure?.("decode");
    return decode;
  }
  return await awaitFirstByte(state, decode, prefillDone);
}

/** Starts the prefill leg; the promise it returns never rejects. */
function startPrefill(
  state: Legs,
  legs: ConcurrentLegs,
): Promise<PrefillOutcome> {
  const { ctx } = state;
  const signal = AbortSignal.any([ctx.signal, state.prefill.signal]);
  // No retries: the decode leg already names this prefiller (module doc of _prefill.ts).
  const options = legs.prefillHeaders
    ? { signal, headers: legs.prefillHeaders, retry: false }
    : { signal, retry: false };
  return runPrefill(ctx, legs.prefillBody, options).then(
    (): PrefillOutcome => {
      ctx.log.debug("prefill request completed");
      return { kind: "ok" };
    },
    (error: unknown): PrefillOutcome => {
      if (signal.aborted) return { kind: "cancelled" };
      state.onLegFailure?.("prefill");
      if (state.decodeProducing) {
        ctx.log.error(
          "prefill request failed after the decode started answering; the decode goes on",
          { cause: error },
        );
      } else {
        state.decode.abort();
      }
      return { kind: "failed", error };
    },
  );
}

/** The prefill's outcome if it is already known, without waiting for it. */
async function settledOutcome(
  prefillDone: Promise<PrefillOutcome>,
): Promise<PrefillOutcome | undefined> {
  const pending = Symbol("pending");
  const first = await Promise.race([prefillDone, Promise.resolve(pending)]);
  return first === pending ? undefined : first;
}

/** The error to answer when the decode leg produced no response. */
async function decodeFailure(
  state: Legs,
  prefillDone: Promise<PrefillOutcome>,
  error: unknown,
): Promise<unknown> {
  if (state.decode.signal.aborted) {
    // Only a failed prefill aborts the decode this early: answer its failure.
    const outcome = await prefillDone;
    if (outcome.kind === "failed") return outcome.error;
  }
  if (!state.ctx.signal.aborted) state.onLegFailure?.("decode");
  return error;
}

async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => {});
}

/**
 * Holds the client's response until the prefill succeeded or the decode's
 * first body byte arrived, then streams the decode's answer.
 */
async function awaitFirstByte(
  state: Legs,
  decode: Response,
  prefillDone: Promise<PrefillOutcome>,
): Promise<Response> {
  const { ctx } = state;
  const reader = decode.body?.getReader();
  if (reader === undefined) {
    return await emptyAnswer(state, decode, prefillDone);
  }
  const firstRead = reader.read();
  const first = await Promise.race([
    firstRead.then((result): FirstEvent => {
      // Marked as soon as the byte exists, so a prefill failure that lands
      // next no longer aborts a decode that is answering.
      if (!result.done) state.decodeProducing = true;
      return result.done ? { kind: "end" } : { kind: "chunk" };
    }, (error: unknown): FirstEvent => ({ kind: "broken", error })),
    prefillDone.then((outcome): FirstEvent => ({ kind: "prefill", outcome })),
  ]);
  if (first.kind === "prefill" && first.outcome.kind !== "ok") {
    state.decode.abort();
    await reader.cancel().catch(() => {});
    await firstRead.catch(() => {});
    ensureClientPresent(ctx.signal);
    throw first.outcome.kind === "failed"
      ? first.outcome.error
      : new ProxyError(
        502,
        `Prefill request to "${ctx.prefiller.hostPort}" was cancelled`,
        { code: "prefill_cancelled" },
      );
  }
  if (first.kind === "end") {
    return await emptyAnswer(state, decode, prefillDone);
  }
  if (first.kind === "broken") {
    state.prefill.abort();
    ensureClientPresent(ctx.signal);
    const outcome = await settledOutcome(prefillDone);
    if (outcome?.kind === "failed") throw outcome.error;
    state.onLegFailure?.("decode");
    throw new ProxyError(
      502,
      `Decode server "${ctx.decoder}" broke its answer before the first byte: ${
        errorMessage(first.error)
      }`,
      { code: "decoder_broke", cause: first.error },
    );
  }
  return withBody(
    decode,
    resumeStream(reader, [firstRead], {
      onBroken(error) {
        state.prefill.abort();
        if (ctx.signal.aborted) return;
        state.onLegFailure?.("decode");
        ctx.log.error("decode answer broke mid-stream", { cause: error });
      },
      onCancel() {
        state.decode.abort();
        state.prefill.abort();
      },
    }),
  );
}

/**
 * An answer without a body says nothing about the KV: it stands only if
 * the prefill succeeded (llm-d-router #2816's empty 200).
 */
async function emptyAnswer(
  state: Legs,
  decode: Response,
  prefillDone: Promise<PrefillOutcome>,
): Promise<Response> {
  const outcome = await prefillDone;
  if (outcome.kind === "failed") throw outcome.error;
  ensureClientPresent(state.ctx.signal);
  return withBody(decode, null);
}
