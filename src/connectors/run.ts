/**
 * @module
 * The P/D entry of the generation route: choosing the prefiller from the
 * routing headers, and, when there is one, parsing the body and running the
 * configured connector with the legs' shared headers and transports.
 */

import {
  admitOptionalTarget,
  admitPrefillTarget,
  type Allowlist,
} from "../allowlist/allowlist.ts";
import { decoderHostPort } from "../config.ts";
import type { AccessRecord, Deps } from "../context.ts";
import { errorMessage, ProxyError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { RequestObservation } from "../observation.ts";
import {
  prefillCandidates,
  selectPrefillTarget,
} from "../prefill_selection.ts";
import type { ApiKind } from "../protocol/api.ts";
import {
  FIELD_STREAM,
  HEADER_KV_CACHE_SOURCE,
  HEADER_PD_FALLBACK,
  HEADER_REQUEST_ID,
  OMITTED_ON_PD_LEGS,
} from "../protocol/fields.ts";
import { rawMember, scanObject } from "../protocol/json_object.ts";
import {
  type GenerationRequest,
  isJsonObject,
  type ParsedGenerationRequest,
  parseGenerationJson,
  parseGenerationRequest,
} from "../protocol/request.ts";
import {
  type DecoderStateCause,
  decoderStateCause,
} from "../protocol/responses_state.ts";
import { needsChunking, runChunkedDecode } from "../stages/chunked_decode.ts";
import { type EncoderEndpoint, runEncoderStage } from "../stages/encoder.ts";
import type { DecodeWatch } from "../upstream/decode_watch.ts";
import {
  buildUpstreamHeaders,
  type HeaderList,
  type HeaderLookup,
  type HeaderSource,
} from "../upstream/headers.ts";
import { TRACE_CONTEXT_HEADERS } from "../tracing.ts";
import { forwardToDecoder } from "../upstream/relay.ts";
import {
  parseTarget,
  splitHostPort,
  type TargetKind,
  type UpstreamTarget,
} from "../upstream/target.ts";
import { PREFILL_FAILURE_CODES, type PrefillPolicy } from "./_prefill.ts";
import { countDecodeLeg, prefillFailureCause } from "./_observe.ts";
import { ensureClientPresent } from "./_shared.ts";
import { createConnector } from "./mod.ts";
import { buildSourceDecodeBody } from "./p2p_source.ts";
import type { DecodeLeg } from "./types.ts";

/** One generation request as the route hands it over. */
export interface PdRequest {
  readonly api: ApiKind;
  /** Path and query, reused on both legs. */
  readonly pathAndQuery: string;
  readonly headers: HeaderSource;
  /** The client's address, appended to `X-Forwarded-For`. */
  readonly clientIp: string | undefined;
  readonly requestId: string;
  /** Fires when the client disconnects. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Reads the request body whole. */
  readBody(): Promise<string>;
  /** Where the request's timings, metrics and spans go. */
  readonly observation: RequestObservation;
}

/** What choosing and admitting a KV source needs of a request. */
export type KvSourceRequest = Pick<
  PdRequest,
  "headers" | "clientIp" | "pathAndQuery" | "log"
>;

/** Chooses prefillers and runs P/D. */
export interface PdRunner {
  /** The prefiller the headers name, or undefined (plain decode); throws a 400 for a bad value. */
  select(headers: HeaderSource): UpstreamTarget | undefined;
  /** Parses the body and runs the connector's protocol against `prefiller`. */
  run(prefiller: UpstreamTarget, request: PdRequest): Promise<Response>;
  /**
   * The KV-source peer `request.headers` name, when the connector pulls from one and the
   * SSRF allowlist admits it; never throws. Cheap when the header is absent, so the route
   * asks for every request it would otherwise pass through.
   */
  kvSource(request: KvSourceRequest): Promise<UpstreamTarget | undefined>;
  /** Decodes without prefill, the decoder pulling cached prefix KV from `source`. */
  decodeFromSource(
    source: UpstreamTarget,
    request: PdRequest,
  ): Promise<Response>;
  /** Decodes without prefill, parsing the body (chunked decode needs it). */
  decode(request: PdRequest): Promise<Response>;
  /** Runs the encoder stage, then P/D with `prefiller` or a decode without it. */
  encode(
    encoders: readonly UpstreamTarget[],
    prefiller: UpstreamTarget | undefined,
    request: PdRequest,
  ): Promise<Response>;
}

/** What the legs leave out when the runtime injects its own trace context. */
const OMITTED_ON_PD_LEGS_WHEN_TRACING: readonly string[] = [
  ...OMITTED_ON_PD_LEGS,
  ...TRACE_CONTEXT_HEADERS,
];

/**
 * Headers of both legs, built once per request. When the runtime injects
 * trace context, the client's is left out: each leg then carries a child of
 * the leg's span instead of the client's value and a second one.
 */
function legHeaders(request: PdRequest): HeaderList {
  const headers = buildUpstreamHeaders(request.headers, {
    clientIp: request.clientIp,
    omit: request.observation.tracing.injects
      ? OMITTED_ON_PD_LEGS_WHEN_TRACING
      : OMITTED_ON_PD_LEGS,
  });
  headers.push(
    ["content-type", "application/json"],
    [HEADER_REQUEST_ID, request.requestId],
  );
  return headers;
}

/**
 * The peer named by `x-kv-cache-source-host-port`, when the connector can
 * pull from one. A hint from the scheduler, so a value that does not parse is
 * logged and ignored, never an error (delta §2.3 step 4). Only the first
 * value counts, as Go's `Header.Get`.
 */
export function selectKvSource(
  headers: HeaderLookup,
  options: { readonly enabled: boolean; readonly log: Logger },
): UpstreamTarget | undefined {
  const value = headers.get(HEADER_KV_CACHE_SOURCE)?.split(",")[0]?.trim();
  if (!value) return undefined;
  if (!options.enabled) {
    options.log.debug(
      "ignoring KV cache source header: connector does not support P2P pulls",
    );
    return undefined;
  }
  try {
    return parseTarget(value, HEADER_KV_CACHE_SOURCE, KV_SOURCE_TARGET);
  } catch (error) {
    options.log.warn("ignoring malformed KV cache source header", {
      error: errorMessage(error),
    });
    return undefined;
  }
}

/**
 * The decode leg's timeouts: the first-byte one only for a streaming answer,
 * as a non-streaming one sends its first byte when the generation is done.
 */
function decodeWatch(
  deps: Deps,
  request: GenerationRequest,
  { log, access }: { readonly log: Logger; readonly access: AccessRecord },
): DecodeWatch {
  const streaming = rawMember(request.scanned, FIELD_STREAM) === "true";
  return {
    firstByteMs: streaming ? deps.config.decodeFirstByteTimeout : 0,
    idleMs: deps.config.streamIdleTimeout,
    log,
    access,
  };
}

/** Whether `error` is a prefill leg's own failure, which `-prefill-failure-policy=decode` covers. */
function isPrefillFailure(error: unknown): error is ProxyError {
  return error instanceof ProxyError && PREFILL_FAILURE_CODES.has(error.code);
}

/** A decode leg as `sendDecodeLeg` takes it. */
interface LocalDecodeLeg extends DecodeLeg {
  readonly chunked: boolean;
  /** First-byte and idle timeouts of the answer (not of chunked decode's chunks). */
  readonly watch?: DecodeWatch;
  /** `body` parsed, when the caller has it (its `text` is `body`). */
  readonly parsed?: ParsedGenerationRequest;
}

/**
 * Sends a decode leg to the local decoder, every P/D one counted by
 * `countDecodeLeg` (the failure counters are of P/D legs, so a chunked
 * decode without prefiller is not).
 */
function sendDecodeLeg(
  deps: Deps,
  request: PdRequest,
  leg: LocalDecodeLeg,
): Promise<Response> {
  const { observation } = request;
  if (observation.access.route !== "pd") {
    return sendLocalDecode(deps, request, leg);
  }
  return countDecodeLeg(
    observation.metrics,
    request.signal,
    (onTimeout) =>
      sendLocalDecode(
        deps,
        request,
        leg.watch === undefined
          ? leg
          : { ...leg, watch: { ...leg.watch, onTimeout } },
      ),
  );
}

/**
 * Sends a decode leg to the local decoder: in chunks when `-decode-chunk-size`
 * is set and the request is a chat one that needs more than one chunk.
 */
function sendLocalDecode(
  deps: Deps,
  request: PdRequest,
  leg: LocalDecodeLeg,
): Promise<Response> {
  const decoder = decoderHostPort(deps.config);
  const chunkSize = deps.config.decodeChunkSize;
  if (leg.chunked && chunkSize > 0 && request.api === "chat") {
    const body: unknown = leg.parsed?.json ?? JSON.parse(leg.body);
    if (isJsonObject(body) && needsChunking(body, chunkSize)) {
      return runChunkedDecode({
        chunkSize,
        body: leg.parsed?.scanned ?? scanObject(leg.body),
        decoder,
        pathAndQuery: request.pathAndQuery,
        headers: leg.headers,
        signal: leg.signal ?? request.signal,
        upstream: deps.upstream,
        log: request.log,
      }, body);
    }
  }
  return forwardToDecoder(deps.upstream, {
    hostPort: decoder,
    pathAndQuery: request.pathAndQuery,
    ...(leg.watch ? { watch: leg.watch } : {}),
  }, {
    method: "POST",
    headers: leg.headers,
    body: leg.body,
    signal: leg.signal ?? request.signal,
  });
}

/**
 * The KV source of `request` ({@linkcode selectKvSource}), dropped when the SSRF allowlist
 * denies it (issue 11; delta §2.3 step 4c: never a 403). The engines dial the source, not the
 * sidecar: an admitted one keeps its `hostPort` as named (what comparisons and logs use) but
 * its `host` becomes the address that was checked, the one the engines are told, so the name
 * cannot resolve elsewhere for them (DNS rebinding).
 */
async function admitKvSource(
  deps: Deps,
  request: KvSourceRequest,
  options: { readonly enabled: boolean; readonly log: Logger },
): Promise<UpstreamTarget | undefined> {
  const source = selectKvSource(request.headers, options);
  const allowlist = enforcedAllowlist(deps);
  if (source === undefined || allowlist === undefined) return source;
  const admitted = await admitOptionalTarget(
    allowlist,
    source,
    "KV cache source",
    {
      log: options.log,
      clientIp: request.clientIp,
      userAgent: request.headers.get("user-agent"),
      path: request.pathAndQuery,
    },
  );
  return admitted === undefined
    ? undefined
    : withAdmittedHost(source, admitted);
}

/**
 * `target` with the host of `admitted`, the address its allowlist check
 * passed, which engines are told instead of a name they would resolve again
 * (DNS rebinding); its `hostPort` keeps the client's spelling, for logs and
 * comparisons.
 */
function withAdmittedHost(
  target: UpstreamTarget,
  admitted: string,
): UpstreamTarget {
  return { ...target, host: splitHostPort(admitted).host };
}

/** A KV cache source named in `x-kv-cache-source-host-port`. */
const KV_SOURCE_TARGET: TargetKind = {
  what: "KV cache source",
  code: "invalid_kv_cache_source",
};

/**
 * The SSRF allowlist when it is on. The binary always passes one (the open
 * list when protection is off), so "absent" and "off" must read the same:
 * testing for absence once kept retries on the first prefiller in production.
 */
function enforcedAllowlist(deps: Deps): Allowlist | undefined {
  return deps.allowlist?.enabled ? deps.allowlist : undefined;
}

/**
 * The encoders the SSRF allowlist admits, each with the address to dial; a
 * refused one is dropped with a log line, never a 403 (base §2.3 step 5).
 */
async function admitEncoders(
  deps: Deps,
  encoders: readonly UpstreamTarget[],
  request: PdRequest,
): Promise<EncoderEndpoint[]> {
  const admitted: EncoderEndpoint[] = [];
  const allowlist = enforcedAllowlist(deps);
  for (const encoder of encoders) {
    const connectHostPort = allowlist === undefined
      ? encoder.hostPort
      : await admitOptionalTarget(allowlist, encoder, "encoder", {
        log: request.log,
        clientIp: request.clientIp,
        userAgent: request.headers.get("user-agent"),
        path: request.pathAndQuery,
      });
    if (connectHostPort !== undefined) {
      admitted.push({ hostPort: encoder.hostPort, connectHostPort });
    }
  }
  return admitted;
}

/** Builds the P/D entry from the sidecar's dependencies. */
export function createPdRunner(deps: Deps): PdRunner {
  const connector = createConnector(deps.config);
  // Chunked decode follows a serial prefill only (base §3.8); the
  // concurrent connectors' decode is bound to its prefill's handshake.
  const chunksAfterPrefill = connector.name === "nixlv2";
  const random = deps.random ?? Math.random;
  const options = { sampling: deps.config.enablePrefillerSampling, random };
  const decoder = decoderHostPort(deps.config);
  const kvSource = (request: KvSourceRequest, log: Logger) =>
    admitKvSource(deps, request, { enabled: connector.pullsKvSource, log });
  const prefillPolicy: PrefillPolicy = {
    timeoutMs: deps.config.prefillTimeout,
    maxRetries: deps.config.prefillMaxRetries,
    backoffMs: deps.config.prefillRetryBackoff,
  };
  /**
   * A decode without prefill on the local decoder, timed as a P/D decode leg
   * is: the decode-only fallback, a pull from a KV source, and a decode
   * without prefiller that chunking or the encoder stage needs. `body` is the
   * client's own unless the caller rewrote it; `json` is that body parsed,
   * when the caller has it, for chunking to reuse.
   */
  async function decodeWithoutPrefill(
    request: PdRequest,
    parsed: GenerationRequest,
    { body = parsed.text, json }: {
      readonly body?: string;
      readonly json?: ParsedGenerationRequest;
    } = {},
  ): Promise<Response> {
    const { timing } = request.observation;
    timing.decodeSent = performance.now();
    const response = await sendDecodeLeg(deps, request, {
      headers: legHeaders(request),
      body,
      ...(json === undefined ? {} : { parsed: json }),
      chunked: true,
      watch: decodeWatch(deps, parsed, {
        log: request.log,
        access: request.observation.access,
      }),
    });
    timing.decodeAnswered = performance.now();
    return response;
  }
  /**
   * `-prefill-failure-policy=decode`: the client's own body on the local
   * decoder, as if no prefiller had been named, marked in a response header.
   */
  async function decodeOnly(
    request: PdRequest,
    parsed: GenerationRequest,
    failure: ProxyError,
  ): Promise<Response> {
    ensureClientPresent(request.signal);
    request.log.warn("prefill failed: falling back to decode only", {
      code: failure.code,
      cause: failure.message,
    });
    const { metrics, access } = request.observation;
    metrics.fallback(prefillFailureCause(failure));
    access.fallback = "decode";
    access.fallbackCause = failure.code;
    const response = await decodeWithoutPrefill(request, parsed);
    response.headers.set(
      HEADER_PD_FALLBACK,
      `decode-only; cause=${failure.code}`,
    );
    return response;
  }
  /**
   * A Responses API request that needs the decoder's response store: the
   * client's own body on the local decoder, the prefiller never contacted.
   */
  async function decodeWithState(
    request: PdRequest,
    parsed: GenerationRequest,
    cause: DecoderStateCause,
  ): Promise<Response> {
    request.log.debug(
      "skip disaggregated prefill: the Responses API keeps this request's state on the decoder",
      { cause },
    );
    const { access } = request.observation;
    access.fallback = "decode";
    access.fallbackCause = cause;
    delete access.prefillTarget;
    return await decodeWithoutPrefill(request, parsed);
  }
  const runner: PdRunner = {
    select: (headers) => selectPrefillTarget(headers, options),
    kvSource: (request) => kvSource(request, request.log),
    async decodeFromSource(source, request) {
      const { log, signal } = request;
      const parsed = parseGenerationRequest(await request.readBody());
      ensureClientPresent(signal);
      log.debug("running P2P source protocol", { source: source.hostPort });
      const body = buildSourceDecodeBody(deps.config, parsed, source);
      log.trace("decode request", { body });
      return await decodeWithoutPrefill(request, parsed, { body });
    },
    async decode(request) {
      const parsed = parseGenerationJson(await request.readBody());
      ensureClientPresent(request.signal);
      return await decodeWithoutPrefill(request, parsed, { json: parsed });
    },
    async encode(encoders, prefiller, request) {
      if (deps.config.ecConnector === "") {
        throw new Error("The encoder stage runs only with -ec-connector");
      }
      const admitted = await admitEncoders(deps, encoders, request);
      if (admitted.length === 0) {
        // Every encoder refused by the allowlist: go on without the stage (base §2.3 step 5).
        return prefiller === undefined
          ? await runner.decode(request)
          : await runner.run(prefiller, request);
      }
      const parsed = parseGenerationJson(await request.readBody());
      ensureClientPresent(request.signal);
      const body = await runEncoderStage({
        connector: deps.config.ecConnector,
        encoders: admitted,
        request: parsed,
        headers: legHeaders(request),
        requestId: request.requestId,
        signal: request.signal,
        timeoutMs: deps.config.encoderTimeout,
        upstream: deps.upstream.stage("encoder"),
        log: request.log,
      });
      ensureClientPresent(request.signal);
      const encoded = { ...request, readBody: () => Promise.resolve(body) };
      return prefiller === undefined
        ? await runner.decode(encoded)
        : await runner.run(prefiller, encoded);
    },
    async run(prefiller, request) {
      const { log, signal, pathAndQuery } = request;
      // SSRF allowlist (issue 11): a denied target is a 403 before the body is
      // read; an admitted one is dialled at the address that was checked.
      const allowlist = enforcedAllowlist(deps);
      const prefillHostPort = allowlist === undefined
        ? prefiller.hostPort
        : await admitPrefillTarget(allowlist, prefiller, {
          log,
          clientIp: request.clientIp,
          userAgent: request.headers.get("user-agent"),
          path: pathAndQuery,
        });
      const admitted = allowlist === undefined
        ? prefiller
        : withAdmittedHost(prefiller, prefillHostPort);
      const prefillUpstream = deps.upstream.stage("prefiller");
      const legLog = log.child({ prefiller: prefiller.hostPort });
      const source = await kvSource(request, legLog);
      const parsed = parseGenerationRequest(await request.readBody());
      ensureClientPresent(signal);
      const stateCause = decoderStateCause(request.api, parsed);
      if (stateCause !== undefined) {
        return await decodeWithState(request, parsed, stateCause);
      }
      log.debug("using P/D protocol", {
        connector: connector.name,
        prefiller: prefiller.hostPort,
      });
      log.trace("client request", { body: parsed.text });
      const watch = decodeWatch(deps, parsed, {
        log: legLog,
        access: request.observation.access,
      });
      const run = connector.run({
        api: request.api,
        pathAndQuery,
        request: parsed,
        prefiller: admitted,
        prefillUrl: prefillUpstream.url(prefillHostPort, pathAndQuery),
        // With SSRF protection on, retries stay on the admitted prefiller:
        // another one would need its own admission.
        prefillers: allowlist === undefined
          ? prefillCandidates(request.headers, prefiller)
          : [admitted],
        prefillPolicy,
        decoder,
        decode: (leg: DecodeLeg) => {
          ensureClientPresent(signal);
          return sendDecodeLeg(deps, request, {
            ...leg,
            chunked: chunksAfterPrefill,
            watch,
          });
        },
        headers: legHeaders(request),
        kvSource: source,
        signal,
        log: legLog,
        upstream: prefillUpstream,
        random,
        requestId: request.requestId,
        observation: request.observation,
      });
      // An SGLang decoder in PD mode refuses a request without bootstrap fields.
      const fallback = deps.config.prefillFailurePolicy === "decode" &&
        connector.name !== "sglang";
      if (!fallback) return await run;
      try {
        return await run;
      } catch (error) {
        if (!isPrefillFailure(error)) throw error;
        return await decodeOnly(request, parsed, error);
      }
    },
  };
  return runner;
}
