/**
 * @module
 * The error for an upstream's whole answer that is not a 2xx, shared by the
 * prefill leg and the encoder stage so both split the blame the same way: a
 * 4xx is about the client's input and reaches the client as the upstream
 * sent it; any other status is the upstream's failure, named in the message.
 * The status the client sees for such a failure is the caller's
 * (`failedStatus`), as Go's differ: the prefill leg keeps a 500-504 as it
 * came, as Go relays the prefiller's status (base §3.5 step 2, delta §6);
 * the encoder stage always answers 502, as Go does (base §3.7 step 3,
 * delta §6 "Encoder failure").
 */

import { type ErrorStatus, ProxyError } from "../errors.ts";
import { fixedResponse } from "../fixed_response.ts";
import type { WholeResponse } from "./client.ts";
import { buildClientHeaders } from "./headers.ts";

/** How `upstreamStatusError` words and codes its error. */
export interface StatusErrorOptions {
  /** Who answered, for the message, e.g. `Encoder "10.0.0.5:8000"`. */
  readonly upstream: string;
  /** What was asked, after the status in the message, e.g. `for item 2`. */
  readonly request?: string;
  /** The answer body, as the message should quote it. */
  readonly detail: string;
  /** Code of a 4xx, relayed to the client behind a 400. */
  readonly rejectedCode: string;
  /** Code of any other status. */
  readonly failedCode: string;
  /** Status the client sees for any other status: the caller's, as the module doc says. */
  readonly failedStatus: ErrorStatus;
}

/** The `ProxyError` for `reply`, an answer whose status is not a 2xx. */
export function upstreamStatusError(
  reply: WholeResponse,
  options: StatusErrorOptions,
): ProxyError {
  const asked = options.request === undefined ? "" : ` ${options.request}`;
  const message =
    `${options.upstream} answered ${reply.status}${asked}: ${options.detail}`;
  if (reply.status >= 400 && reply.status < 500) {
    return new ProxyError(400, message, {
      code: options.rejectedCode,
      response: fixedResponse(reply.text, {
        status: reply.status,
        headers: buildClientHeaders(reply.headers),
      }),
    });
  }
  return new ProxyError(options.failedStatus, message, {
    code: options.failedCode,
  });
}
