/**
 * @module
 * What the app is built from (`Deps`) and what every request carries through
 * Hono's context (`AppEnv`).
 */

import type { Allowlist } from "./allowlist/allowlist.ts";
import type { Config } from "./config.ts";
import type { ProxyError } from "./errors.ts";
import type { ConnectorName, EcConnectorName } from "./flag_table.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { RequestObservation } from "./observation.ts";
import type { Tracing } from "./tracing.ts";
import type { UpstreamClient } from "./upstream/client.ts";

/** Dependencies of the app; `main.ts` builds the real ones, tests their own. */
export interface Deps {
  readonly config: Config;
  readonly log: Logger;
  readonly upstream: UpstreamClient;
  /** SSRF allowlist for targets named by headers (issue 11); absent admits everything. */
  readonly allowlist?: Allowlist;
  /** Uniform random number in [0, 1), for prefiller sampling. */
  readonly random?: () => number;
  /** Where the listener's metrics go; none recorded when absent. */
  readonly metrics?: Metrics;
  /** The sidecar's spans; none made when absent. */
  readonly tracing?: Tracing;
  /** Set once a shutdown began: `/health` answers 503 from then on. */
  readonly drain?: DrainState;
}

/** Whether the listener is draining for a shutdown. */
export interface DrainState {
  readonly draining: boolean;
}

/**
 * Per-connection information `Deno.serve` passes as Hono's `env`; absent in
 * `app.request()` tests, hence every field optional.
 */
export interface ServeBindings {
  readonly remoteAddr?: { readonly hostname?: string };
  /**
   * Settles once the response has been sent, or the client has gone
   * (`Deno.ServeHandlerInfo.completed`): the end of a streamed answer.
   */
  readonly completed?: Promise<void>;
  /**
   * Aborts when the sidecar sees the client's connection closed while the
   * request waits for its answer's head (`ServeInfo.peerGone`).
   */
  readonly peerGone?: AbortSignal;
  /**
   * The error the connection already answers the request with, before any
   * route reads it (`ServeInfo.refusal`).
   */
  readonly refusal?: ProxyError;
}

/** Which handler answered a request: `pd` ran a connector, `passthrough` relayed it as is. */
export type RouteName = "health" | "passthrough" | "pd";

/**
 * What a request's access line reports beyond what the middleware sees
 * itself, filled by whoever learns it: routes, connectors and `onError` set
 * the fields on `c.get("access")` (or on the object handed down to them).
 */
export interface AccessRecord {
  /** The handler that answered; `passthrough` until a route says otherwise. */
  route: RouteName;
  /** P/D connector that ran, e.g. `nixlv2`. */
  connector?: ConnectorName | EcConnectorName | "";
  /** Prefiller (`host:port`) the prefill leg went to; the last one tried. */
  prefillTarget?: string;
  /** `ProxyError.code` of the sidecar's own error answer, when it gave one. */
  errorCode?: string;
  /** Prefill attempts tried again (set by the retry loop). */
  retries?: number;
  /**
   * Set when the request did not run as routed: `decode` when it ran on the
   * local decoder alone, after a failed prefill (`-prefill-failure-policy=decode`)
   * or because the Responses API keeps its state there.
   */
  fallback?: "decode";
  /**
   * Why `fallback` is set: the failed prefill's `ProxyError.code`, or the
   * Responses API field (`previous_response_id`, `background`) that needs the
   * decoder's response store.
   */
  fallbackCause?: string;
  /**
   * The request target's own path, when the URL's is another: a refused
   * `Host` holding a path moved the URL's (src/middleware/host_header.ts).
   */
  targetPath?: string;
}

/** Hono environment of the sidecar app. */
export interface AppEnv {
  Bindings: ServeBindings;
  Variables: {
    /** The client's `x-request-id`, or one minted for this request. */
    requestId: string;
    /** Logger whose lines carry this request's id. */
    log: Logger;
    /** Facts for the request's access line. */
    access: AccessRecord;
    /** The request's timings, metrics and spans. */
    observation: RequestObservation;
    /**
     * Aborts when the client has gone: `request.signal`, or the peer watch
     * seeing its connection closed. Every upstream leg takes this one. A
     * body reader that sees the client leave mid-body replaces it with an
     * aborted signal (`clientLeftOf`), so read it where it is checked. No
     * leg is left holding the one replaced: a body is read whole before any
     * leg starts, except a body streamed to its leg, which fails with it.
     */
    clientGone: AbortSignal;
  };
}
