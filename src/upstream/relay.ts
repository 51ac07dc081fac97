/**
 * @module
 * Sending a request to the local decoder and relaying its answer as a stream.
 * Shared by the passthrough route and every connector's decode leg, so the
 * decoder's failures map to the same statuses everywhere.
 */

import { clientDisconnected, declaredLength } from "../body_limit.ts";
import { errorMessage, ProxyError } from "../errors.ts";
import { fixedResponse } from "../fixed_response.ts";
import { isEventStream } from "../protocol/sse.ts";
import { clientsKeepNagle } from "../tls_nodelay.ts";
import {
  fetchMayDecode,
  type UpstreamClient,
  UpstreamError,
  type UpstreamRequest,
} from "./client.ts";
import {
  AnswerBrokeBeforeFirstByte,
  type DecodeWatch,
  isWatching,
  sendWatched,
} from "./decode_watch.ts";
import { buildClientHeaders, isDecodedByFetch } from "./headers.ts";

/** Message of the 503 the Go sidecar answers while vLLM is not listening yet (llm-d-router #412). */
export const DECODER_NOT_READY_MESSAGE =
  "The decode node is not ready. Please check that the vLLM service is running and the port configuration is correct.";

/**
 * Returns a client response streaming the upstream's status, headers and
 * body; `fetchMayDecode` says whether fetch may have decoded the body.
 */
export function relayResponse(
  upstream: Response,
  fetchMayDecode: boolean,
): Response {
  return new Response(upstream.body, {
    status: upstream.status,
    statusText: upstream.statusText,
    headers: buildClientHeaders(upstream.headers, { fetchMayDecode }),
  });
}

/**
 * Maps a decoder request that got no response to the status the client sees.
 * A `client_body` failure becomes the 499 of a client gone; a caller that
 * streams the client's own body must also mark the client gone (see
 * `passthroughRequest`), so its outcome and metrics say so.
 */
export function decoderFailure(decoder: string, error: unknown): ProxyError {
  if (error instanceof ProxyError) return error;
  if (error instanceof AnswerBrokeBeforeFirstByte) {
    return new ProxyError(
      502,
      `Decode server "${decoder}" broke its answer before the first byte: ${error.message}`,
      { code: "decoder_broke", cause: error },
    );
  }
  const failure = error instanceof UpstreamError ? error : undefined;
  if (failure?.kind === "connect_timeout") {
    return new ProxyError(
      504,
      `Cannot connect to decode server "${decoder}": ${failure.detail}`,
      { code: "connect_timeout", cause: error },
    );
  }
  // The client's own body broke as it was sent: the client left, and its
  // leaving is the answer (a 499 once the caller notes it gone).
  if (failure?.kind === "client_body") return clientDisconnected(error);
  if (failure?.kind === "refused") {
    return new ProxyError(503, DECODER_NOT_READY_MESSAGE, {
      code: "decoder_not_ready",
      cause: error,
    });
  }
  const detail = failure?.detail ?? String(error);
  return new ProxyError(
    502,
    `Cannot reach decode server "${decoder}": ${detail}`,
    { code: "decoder_unreachable", cause: error },
  );
}

/** Where `forwardToDecoder` sends, and the timeouts of the answer. */
export interface DecoderTarget {
  readonly hostPort: string;
  readonly pathAndQuery: string;
  /** First-byte and idle timeouts; the answer is piped untouched without. */
  readonly watch?: DecodeWatch;
}

/** Largest decoder answer `holdsWhole` keeps in memory. */
const HELD_ANSWER_MAX_BYTES = 64 * 1024;

/**
 * Whether to read the decoder's answer whole before answering the client:
 * only where the clients' TLS connections keep Nagle's algorithm
 * (src/tls_nodelay.ts, without `--allow-ffi`), and only a small answer of
 * declared length that is not an event stream. Relayed as a stream its body
 * is written after its head and waits for the client's delayed ACK, up to 40
 * ms (4-17% of HTTPS passthrough requests one at a time, measured); held
 * whole, head and body go out together.
 */
function holdsWhole(response: Response, fetchMayDecode: boolean): boolean {
  if (!clientsKeepNagle() || response.body === null) return false;
  if (isEventStream(response)) return false;
  // A body fetch decompressed may be far longer than the length declared.
  if (isDecodedByFetch(response.headers, { fetchMayDecode })) return false;
  const length = declaredLength(response.headers);
  return length !== undefined && length <= HELD_ANSWER_MAX_BYTES;
}

/** `response`, read whole, as the client's answer. */
async function heldResponse(
  response: Response,
  decoder: string,
  fetchMayDecode: boolean,
): Promise<Response> {
  let body: Uint8Array<ArrayBuffer>;
  try {
    body = new Uint8Array(await response.arrayBuffer());
  } catch (error) {
    throw new ProxyError(
      502,
      `Decode server "${decoder}" broke its answer: ${errorMessage(error)}`,
      { code: "decoder_broke", cause: error },
    );
  }
  return fixedResponse(body, {
    status: response.status,
    statusText: response.statusText,
    headers: buildClientHeaders(response.headers, { fetchMayDecode }),
  });
}

/**
 * Refuses an answer whose status is not final: `fetch` hands back a 101
 * (the runtime swallows the other 1xx), and relayed it told the client its
 * connection had switched protocols, with no `Upgrade` and no answer after.
 * The sidecar never asks the decoder for a switch (a WebSocket upgrade is
 * its 501, a lone `Upgrade` is dropped), so a 101 is a broken decoder.
 */
function ensureFinalStatus(response: Response, decoder: string): void {
  if (response.status >= 200) return;
  response.body?.cancel().catch(() => {});
  throw new ProxyError(
    502,
    `Decode server "${decoder}" answered ${response.status} to a request that asked for no protocol switch`,
    { code: "decoder_bad_answer" },
  );
}

/** Sends `request` to the decoder at `hostPort` and relays its answer, streamed. */
export async function forwardToDecoder(
  upstream: UpstreamClient,
  target: DecoderTarget,
  request: UpstreamRequest,
): Promise<Response> {
  // The client's URL carries its stage's scheme (issue 11: -enable-tls=decoder).
  const url = upstream.url(target.hostPort, target.pathAndQuery);
  let response: Response;
  try {
    response = isWatching(target.watch) && target.watch
      ? await sendWatched(
        (signal) => upstream.send(url, { ...request, signal }),
        request.signal,
        target.watch,
      )
      : await upstream.send(url, request);
  } catch (error) {
    throw decoderFailure(target.hostPort, error);
  }
  ensureFinalStatus(response, target.hostPort);
  const mayDecode = fetchMayDecode(request.headers);
  // A watched answer keeps its timeouts' behaviour (a broken 200 on silence).
  if (!isWatching(target.watch) && holdsWhole(response, mayDecode)) {
    return await heldResponse(response, target.hostPort, mayDecode);
  }
  return relayResponse(response, mayDecode);
}
