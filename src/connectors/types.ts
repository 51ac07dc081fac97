/**
 * @module
 * The contract between the generation route and a P/D connector: the route
 * has chosen and validated the prefiller and parsed the body; the connector
 * runs its protocol and returns the client's response.
 */

import type { Config, ConnectorName } from "../config.ts";
import type { Logger } from "../log.ts";
import type { RequestObservation } from "../observation.ts";
import type { ApiKind } from "../protocol/api.ts";
import type { GenerationRequest } from "../protocol/request.ts";
import type { UpstreamClient } from "../upstream/client.ts";
import type { HeaderList } from "../upstream/headers.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import type { PrefillPolicy } from "./_prefill.ts";

/** A decode leg as the connector hands it over. */
export interface DecodeLeg {
  readonly headers: HeaderList;
  /** The decode body, JSON. */
  readonly body: string;
  /** Aborts the leg; the client's signal when absent. */
  readonly signal?: AbortSignal;
}

/**
 * Sends the decode leg to the local decoder and returns the client's response
 * streaming its answer. Throws `ProxyError` when no answer arrives.
 */
export type DecodeSender = (leg: DecodeLeg) => Promise<Response>;

/** Everything a connector needs for one disaggregated request. */
export interface PdContext {
  readonly api: ApiKind;
  /** Path and query of the client's request, reused on both legs. */
  readonly pathAndQuery: string;
  readonly request: GenerationRequest;
  /**
   * The prefiller. With SSRF protection on its `host` is the address that
   * passed the allowlist, which the engines are told (a bootstrap server,
   * a P2P peer), and its `hostPort` the client's spelling.
   */
  readonly prefiller: UpstreamTarget;
  /** URL of the prefill leg: the prefiller and the client's path and query. */
  readonly prefillUrl: string;
  /**
   * Every prefiller the routing header names, `prefiller` first: where
   * prefill retries go in turn. Only `prefiller` when absent.
   */
  readonly prefillers?: readonly UpstreamTarget[];
  /** Deadline and retries of the prefill leg; none when absent. */
  readonly prefillPolicy?: PrefillPolicy;
  /** Address of the local decoder, e.g. `127.0.0.1:8001`, for logs. */
  readonly decoder: string;
  /** Sends the decode leg. */
  readonly decode: DecodeSender;
  /**
   * Headers of both legs: the client's cleaned for forwarding, a JSON content
   * type, and the request id (the client's `x-request-id` or a minted one), so
   * the prefiller's and decoder's logs can be joined.
   */
  readonly headers: HeaderList;
  /**
   * A peer holding cached prefix KV (`x-kv-cache-source-host-port`), validated,
   * for connectors that pull over P2P; undefined otherwise.
   */
  readonly kvSource: UpstreamTarget | undefined;
  /** Fires when the client disconnects. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly upstream: UpstreamClient;
  /** Uniform random number in [0, 1). */
  readonly random: () => number;
  /** The request's id (`x-request-id`), for span attributes. */
  readonly requestId: string;
  /** Where the legs' timings, metrics and spans go. */
  readonly observation: RequestObservation;
}

/** A P/D protocol. */
export interface Connector {
  readonly name: ConnectorName;
  /** Whether its engines can pull cached prefix KV from a peer (delta §3.7). */
  readonly pullsKvSource: boolean;
  /** Runs prefill and decode; throws `ProxyError` before any byte is streamed. */
  run(ctx: PdContext): Promise<Response>;
}

/** Builds a connector for one sidecar listener; state (caches) lives as long as it. */
export type ConnectorFactory = (config: Config) => Connector;
