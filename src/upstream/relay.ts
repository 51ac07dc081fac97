/**
 * @module
 * Sending a request to the local decoder and relaying its answer as a stream.
 * Shared by the passthrough route and every connector's decode leg, so the
 * decoder's failures map to the same statuses everywhere.
 */

import { ProxyError } from "../errors.ts";
import {
  fetchMayDecode,
  type UpstreamClient,
  UpstreamError,
  type UpstreamRequest,
} from "./client.ts";
import { type DecodeWatch, isWatching, sendWatched } from "./decode_watch.ts";
import { buildClientHeaders } from "./headers.ts";

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

/** Maps a decoder request that got no response to the status the client sees. */
export function decoderFailure(decoder: string, error: unknown): ProxyError {
  if (error instanceof ProxyError) return error;
  const failure = error instanceof UpstreamError ? error : undefined;
  if (failure?.kind === "connect_timeout") {
    return new ProxyError(
      504,
      `Cannot connect to decode server "${decoder}": ${failure.detail}`,
      { code: "connect_timeout", cause: error },
    );
  }
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
  return relayResponse(response, fetchMayDecode(request.headers));
}
