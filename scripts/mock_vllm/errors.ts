/**
 * vLLM's error shapes (nested since v0.10.1, PR #22099) and the errors the
 * mock raises. Thrown as {@linkcode VllmError} and rendered once by the server.
 *
 * @module
 */

/** The `error` object of a vLLM error body. */
export interface ErrorInfo {
  message: string;
  type: string;
  param: string | null;
  code: number;
}

/** An error the mock answers with vLLM's `{"error": {...}}` body. */
export class VllmError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** vLLM's `error.type`. */
  readonly type: string;
  /** vLLM's `error.param`. */
  readonly param: string | null;
  /** Builds the error; `type` defaults to the one vLLM derives from the status. */
  constructor(
    status: number,
    message: string,
    options: { type?: string; param?: string | null } = {},
  ) {
    super(message);
    this.name = "VllmError";
    this.status = status;
    this.type = options.type ?? errorTypeForStatus(status);
    this.param = options.param ?? null;
  }

  /** The wire `error` object. */
  toInfo(): ErrorInfo {
    return {
      message: this.message,
      type: this.type,
      param: this.param,
      code: this.status,
    };
  }
}

/** `error.type` for a status, as vLLM's `create_error_response` and llm-d-inference-sim name them. */
export function errorTypeForStatus(status: number): string {
  switch (status) {
    case 400:
      return "BadRequestError";
    case 401:
      return "AuthenticationError";
    case 403:
      return "PermissionDeniedError";
    case 404:
      return "NotFoundError";
    case 422:
      return "UnprocessableEntityError";
    case 429:
      return "RateLimitError";
    case 501:
      return "NotImplementedError";
    default:
      return status >= 500 ? "InternalServerError" : "APIConnectionError";
  }
}

/**
 * A request-validation failure. FastAPI's handler names the type after the
 * HTTP phrase ("Bad Request"), unlike semantic 400s ("BadRequestError").
 */
export function validationError(
  message: string,
  param: string | null,
): VllmError {
  return new VllmError(400, message, { type: "Bad Request", param });
}

/** The pydantic-style one-error message vLLM's validation handler prints. */
export function pydanticMessage(
  type: string,
  loc: string,
  msg: string,
  extra = "",
): string {
  return `1 validation error:\n  {'type': '${type}', 'loc': '${loc}', 'msg': '${msg}'${extra}}`;
}

/** 404 for a `model` the server does not serve. */
export function modelNotFound(model: string): VllmError {
  return new VllmError(404, `The model \`${model}\` does not exist.`, {
    param: "model",
  });
}

/** The generic 500 vLLM returns when generation fails (e.g. a KV load failure under policy "fail"). */
export function internalServerError(): VllmError {
  return new VllmError(500, "Internal server error", {
    type: "InternalServerError",
  });
}

/** The error requested by an `X-Return-Error` header (llm-d-inference-sim's convention). */
export function simulatedError(headerValue: string): VllmError {
  const status = /^\s*\d+\s*$/.test(headerValue) ? Number(headerValue) : NaN;
  if (!(status >= 400 && status <= 599)) {
    return new VllmError(
      400,
      `Invalid X-Return-Error header value ${
        JSON.stringify(headerValue)
      }: expected an HTTP error status`,
    );
  }
  return new VllmError(
    status,
    `Simulated error triggered by X-Return-Error header (code ${status})`,
  );
}

/** The error injected by `failureRate`. */
export function injectedError(status: number): VllmError {
  const message = status === 503
    ? "The server is overloaded or not ready yet."
    : `Simulated error injected by failureRate (code ${status})`;
  return new VllmError(status, message);
}

/** Renders an error as vLLM's JSON body. */
export function errorResponse(error: VllmError): Response {
  return jsonResponse({ error: error.toInfo() }, error.status);
}

/** A JSON response with `Content-Type: application/json`. */
export function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}
