/**
 * @module
 * Parses a generation request body once, at the edge: validated as a JSON
 * object and scanned so the P/D legs can be built from the original text.
 */

import { errorMessage, ProxyError } from "../errors.ts";
import { type ScannedObject, scanObject } from "./json_object.ts";

/** A JSON object whose values are not yet narrowed. */
export type JsonObject = { readonly [key: string]: unknown };

/** A validated generation request. */
export interface GenerationRequest {
  /** The body as the client sent it. */
  readonly text: string;
  /** Top-level member offsets into `text`. */
  readonly scanned: ScannedObject;
}

/**
 * A validated generation request with its parsed value, for the stages that
 * read its members (the encoder stage, chunked decode). Only they hold it: a
 * parsed body costs memory for as long as it is referenced.
 */
export interface ParsedGenerationRequest extends GenerationRequest {
  /** `text` parsed. */
  readonly json: JsonObject;
}

/** Whether `value` is a JSON object (not null, not an array). */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describeJsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

/**
 * An upstream's answer text as a scanned JSON object, or undefined when it is
 * not JSON or not an object: whose fault that is, is the caller's to say.
 */
export function scanJsonObject(text: string): ScannedObject | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  return isJsonObject(parsed) ? scanObject(text) : undefined;
}

/** Parses `text` as a JSON object; throws a 400 `ProxyError` otherwise. */
export function parseGenerationRequest(text: string): GenerationRequest {
  const parsed = parseGenerationJson(text);
  return { text: parsed.text, scanned: parsed.scanned };
}

/** `text` parsed as JSON; a 400 `invalid_json` `ProxyError` when it is not JSON. */
export function parseJsonText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const reason = errorMessage(error);
    throw new ProxyError(400, `Request body is not valid JSON: ${reason}`, {
      code: "invalid_json",
    });
  }
}

/** As `parseGenerationRequest`, keeping the parsed value. */
export function parseGenerationJson(text: string): ParsedGenerationRequest {
  const body = parseJsonText(text);
  if (!isJsonObject(body)) {
    throw new ProxyError(
      400,
      `Request body must be a JSON object: got ${describeJsonType(body)}`,
      { code: "invalid_json" },
    );
  }
  return { text, scanned: scanObject(text), json: body };
}
