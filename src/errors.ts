/**
 * @module
 * The one error type the sidecar throws, and its rendering in vLLM's error
 * shape. Deep code throws `ProxyError`; only the app's `onError` turns it into
 * a response, so every error a client sees from the sidecar itself looks alike.
 */

import { fixedResponse } from "./fixed_response.ts";
import type { Logger } from "./log.ts";

/** HTTP statuses the sidecar produces for its own errors. */
export type ErrorStatus =
  | 400
  | 403
  | 404
  | 405
  | 408
  | 413
  | 429
  | 431
  | 499
  | 500
  | 501
  | 502
  | 503
  | 504
  | 505;

/** The `error` object of vLLM's error body (vLLM >= 0.10.1, PR #22099). */
export interface VllmErrorInfo {
  readonly message: string;
  readonly type: string;
  readonly param: string | null;
  readonly code: number;
}

/** Options of a `ProxyError` beyond its status and message. */
export interface ProxyErrorOptions {
  /**
   * Stable machine-readable code for logs and metrics (snake_case, e.g.
   * `decoder_not_ready`); defaults to one derived from the status.
   */
  readonly code?: string;
  /** vLLM error type; defaults to the type vLLM uses for the status. */
  readonly type?: string;
  /** Request field the error is about, when there is one. */
  readonly param?: string;
  /** The underlying failure, kept for logs. */
  readonly cause?: unknown;
  /**
   * A prepared answer to send instead of the error body: an upstream's own
   * error relayed to the client (Hono's `HTTPException` does the same).
   */
  readonly response?: Response;
  /**
   * A 5xx that answers what the client asked for, no failure of the
   * sidecar's (a 501 for a feature it lacks): logged at info, not error.
   */
  readonly clientAsk?: boolean;
}

// The Go sidecar's type names, which clients may already match on.
const DEFAULT_TYPES: Readonly<Record<ErrorStatus, string>> = {
  400: "BadRequestError",
  403: "Forbidden",
  404: "NotFoundError",
  405: "MethodNotAllowed",
  // http.HTTPStatus's phrase, as vLLM's other type names are.
  408: "RequestTimeout",
  413: "RequestEntityTooLarge",
  429: "TooManyRequests",
  431: "RequestHeaderFieldsTooLarge",
  // nginx's status for a client that closed the connection; only logs see it.
  499: "ClientClosedRequest",
  500: "InternalServerError",
  501: "NotImplementedError",
  502: "BadGateway",
  503: "ServiceUnavailable",
  504: "GatewayTimeout",
  505: "HTTPVersionNotSupported",
};

// Codes for errors nobody gave a more precise one; never renamed once shipped.
const DEFAULT_CODES: Readonly<Record<ErrorStatus, string>> = {
  400: "invalid_request",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  408: "request_timeout",
  413: "request_body_too_large",
  429: "too_many_requests",
  431: "headers_too_large",
  499: "client_disconnected",
  500: "internal_error",
  501: "not_implemented",
  502: "bad_gateway",
  503: "unavailable",
  504: "gateway_timeout",
  505: "http_version_not_supported",
};

/** A failure with the HTTP status the client should see. */
export class ProxyError extends Error {
  /** Status of the error response. */
  readonly status: ErrorStatus;
  /** Stable machine-readable code of the failure. */
  readonly code: string;
  /** vLLM error type. */
  readonly type: string;
  /** Request field the error is about, or null. */
  readonly param: string | null;
  /** Answer relayed as is, when set. */
  readonly response: Response | undefined;
  /** See {@linkcode ProxyErrorOptions.clientAsk}. */
  readonly clientAsk: boolean;

  /** Creates an error answered with `status` and `message`. */
  constructor(
    status: ErrorStatus,
    message: string,
    options: ProxyErrorOptions = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "ProxyError";
    this.status = status;
    this.code = options.code ?? DEFAULT_CODES[status];
    this.type = options.type ?? DEFAULT_TYPES[status];
    this.param = options.param ?? null;
    this.response = options.response;
    this.clientAsk = options.clientAsk ?? false;
  }
}

/** Builds vLLM's error body for a status and message. */
export function buildErrorBody(error: ProxyError): { error: VllmErrorInfo } {
  return {
    error: {
      message: error.message,
      type: error.type,
      param: error.param,
      code: error.status,
    },
  };
}

/** The error body of Anthropic's Messages API, which its clients parse. */
export interface AnthropicErrorBody {
  readonly type: "error";
  readonly error: { readonly type: string; readonly message: string };
}

/**
 * Anthropic's error type for a status (its API's documented types), so an
 * Anthropic client that switches on the type understands the sidecar.
 */
function anthropicErrorType(status: ErrorStatus): string {
  if (status === 404) return "not_found_error";
  if (status === 504) return "timeout_error";
  if (status === 503) return "overloaded_error";
  if (status === 429) return "rate_limit_error";
  return status < 500 ? "invalid_request_error" : "api_error";
}

/** Builds Anthropic's error body for a status and message. */
export function buildAnthropicErrorBody(
  error: ProxyError,
): AnthropicErrorBody {
  return {
    type: "error",
    error: { type: anthropicErrorType(error.status), message: error.message },
  };
}

/** Which error body a route's clients read: vLLM's (OpenAI's) or Anthropic's. */
export type ErrorShape = "vllm" | "anthropic";

/**
 * Response header carrying `ProxyError.code`. The body keeps vLLM's shape
 * (`code` is the integer status there, and OpenAI clients read it), so the
 * stable string goes where no client parser looks for anything else.
 */
export const HEADER_ERROR_CODE = "x-pd-error-code";

/**
 * Renders a `ProxyError` as its prepared response or a JSON error body in
 * `shape`, with its length stated so the access line can report it, and its
 * code in the `x-pd-error-code` header.
 */
export function toErrorResponse(
  error: ProxyError,
  shape: ErrorShape = "vllm",
): Response {
  if (error.response) {
    error.response.headers.set(HEADER_ERROR_CODE, error.code);
    return error.response;
  }
  const payload = shape === "anthropic"
    ? buildAnthropicErrorBody(error)
    : buildErrorBody(error);
  return fixedResponse(JSON.stringify(payload), {
    status: error.status,
    headers: {
      "content-type": "application/json",
      [HEADER_ERROR_CODE]: error.code,
    },
  });
}

/** The message of a thrown value, whatever was thrown. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Logs a failed request at the level it deserves and returns the error the
 * client is answered with: anything but a `ProxyError` is the sidecar's bug
 * (a 500), and any failure after the client left is its leaving (a 499,
 * nginx's status for it, which only logs see).
 */
export function reportError(
  error: unknown,
  log: Logger,
  request: { readonly aborted: boolean; readonly path: string },
): ProxyError {
  if (!(error instanceof ProxyError)) {
    log.error("unexpected error while handling the request", { error });
  } else if (request.aborted) {
    // Nobody is left to read the answer; not an error of the sidecar's.
    log.debug("client disconnected", { path: request.path });
  } else if (error.status >= 500 && !error.clientAsk) {
    log.error(error.message, { status: error.status, cause: error.cause });
  } else {
    // A relayed upstream answer keeps its own status (a 404, a 422), the
    // one the client and the access line see.
    const status = error.response?.status ?? error.status;
    log.info(error.message, { status });
  }
  if (request.aborted) {
    return new ProxyError(499, "Client disconnected before the answer", {
      cause: error,
    });
  }
  if (error instanceof ProxyError) return error;
  return new ProxyError(
    500,
    `Internal error in the sidecar: ${errorMessage(error)}`,
    { cause: error },
  );
}
