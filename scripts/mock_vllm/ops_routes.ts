/**
 * The non-generation routes: health, version, models, tokenizer, metrics and
 * the runtime admin knob endpoint (llm-d-inference-sim's `/admin/config`).
 *
 * @module
 */

import { jsonResponse, VllmError } from "./errors.ts";
import {
  ADMIN_KNOB_KEYS,
  KnobError,
  type Knobs,
  parseKnobPatch,
  snapshotAdminKnobs,
} from "./knobs.ts";
import {
  type Metrics,
  METRICS_CONTENT_TYPE,
  renderMetrics,
} from "./metrics.ts";
import {
  checkContentType,
  checkModel,
  isRecord,
  type ParsedBody,
} from "./parse_request.ts";
import {
  countChatTokens,
  MAX_MODEL_LEN,
  splitWords,
  tokenIdsOf,
} from "./tokens.ts";

/** vLLM version `/version` reports (the one llm-d-inference-sim's render image pins). */
export const VLLM_VERSION = "0.21.0";

/** Methods each non-generation route answers; other methods get 405. */
export const OPS_ROUTES: Readonly<Record<string, readonly string[]>> = {
  "/health": ["GET", "HEAD"],
  "/ping": ["GET", "POST"],
  "/version": ["GET"],
  "/v1/models": ["GET"],
  "/metrics": ["GET"],
  "/tokenize": ["POST"],
  "/admin/config": ["GET", "POST"],
};

/** State the ops routes read and change. */
export interface OpsContext {
  readonly knobs: Knobs;
  readonly metrics: Metrics;
  readonly health: { healthy: boolean };
  /** Unix seconds the server started, used as `created` of the model card. */
  readonly startedAt: number;
}

/** Serves one of {@linkcode OPS_ROUTES}; throws {@linkcode VllmError} on bad input. */
export function handleOps(
  path: string,
  request: Request,
  parsed: ParsedBody,
  ctx: OpsContext,
): Response {
  switch (path) {
    case "/health":
    case "/ping":
      // vLLM answers both with an empty body: 200 alive, 503 engine dead.
      return new Response(null, { status: ctx.health.healthy ? 200 : 503 });
    case "/version":
      return jsonResponse({ version: VLLM_VERSION });
    case "/v1/models":
      return jsonResponse(buildModelList(ctx.knobs.model, ctx.startedAt));
    case "/metrics":
      return new Response(renderMetrics(ctx.metrics, ctx.knobs.model), {
        headers: { "content-type": METRICS_CONTENT_TYPE },
      });
    case "/tokenize":
      checkContentType(request.headers.get("content-type"));
      return jsonResponse(tokenize(parsed, ctx.knobs.model));
    default:
      return request.method === "GET"
        ? jsonResponse({
          ...snapshotAdminKnobs(ctx.knobs),
          healthy: ctx.health.healthy,
        })
        : jsonResponse(applyAdminPatch(parsed, ctx));
  }
}

function buildModelList(
  model: string,
  created: number,
): Record<string, unknown> {
  return {
    object: "list",
    data: [{
      id: model,
      object: "model",
      created,
      owned_by: "vllm",
      root: model,
      parent: null,
      max_model_len: MAX_MODEL_LEN,
      permission: [{
        id: `modelperm-${crypto.randomUUID().replaceAll("-", "")}`,
        object: "model_permission",
        created,
        allow_create_engine: false,
        allow_sampling: true,
        allow_logprobs: true,
        allow_search_indices: false,
        allow_view: true,
        allow_fine_tuning: false,
        organization: "*",
        group: null,
        is_blocking: false,
      }],
    }],
  };
}

function tokenize(parsed: ParsedBody, model: string): Record<string, unknown> {
  const body = parsed.ok && isRecord(parsed.value) ? parsed.value : undefined;
  if (body === undefined) {
    throw new VllmError(400, "Request body must be a JSON object", {
      type: "Bad Request",
    });
  }
  checkModel(body, model);
  let pieces: string[];
  if (typeof body.prompt === "string") {
    pieces = splitWords(body.prompt);
  } else if (Array.isArray(body.messages)) {
    const messages = body.messages.map((m) => ({
      role: isRecord(m) && typeof m.role === "string" ? m.role : "user",
      text: isRecord(m) && typeof m.content === "string" ? m.content : "",
    }));
    pieces = Array.from(
      { length: countChatTokens(messages) },
      (_, i) => `<${i}>`,
    );
  } else {
    throw new VllmError(400, "Either prompt or messages must be provided", {
      type: "Bad Request",
      param: "prompt",
    });
  }
  return {
    count: pieces.length,
    max_model_len: MAX_MODEL_LEN,
    tokens: tokenIdsOf(pieces),
    token_strs: body.return_token_strs === true ? pieces : null,
  };
}

function applyAdminPatch(
  parsed: ParsedBody,
  ctx: OpsContext,
): Record<string, unknown> {
  if (!parsed.ok || !isRecord(parsed.value)) {
    throw new VllmError(400, "Admin config must be a JSON object", {
      param: "body",
    });
  }
  const { healthy, ...rest } = parsed.value;
  if (healthy !== undefined && typeof healthy !== "boolean") {
    throw new VllmError(
      400,
      `Invalid "healthy": expected true or false, got ${
        JSON.stringify(healthy)
      }`,
      {
        param: "healthy",
      },
    );
  }
  try {
    Object.assign(ctx.knobs, parseKnobPatch(rest, ADMIN_KNOB_KEYS));
  } catch (error) {
    if (error instanceof KnobError) {
      throw new VllmError(400, error.message, { param: error.key });
    }
    throw error;
  }
  if (typeof healthy === "boolean") ctx.health.healthy = healthy;
  return { ...snapshotAdminKnobs(ctx.knobs), healthy: ctx.health.healthy };
}
