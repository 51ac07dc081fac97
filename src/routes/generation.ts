/**
 * @module
 * `POST` on the generation APIs: with a prefill target the configured
 * connector runs P/D; without one the request is passed through untouched
 * (its body is not even parsed), unless it names a KV-source peer the
 * connector pulls from (offloading, nixlv2 with -enable-p2p-pull), whose
 * cached prefix the decoder is asked to pull. Either way the decode goes to the model
 * server of this listener's data-parallel rank, or on rank 0 to the rank the
 * deprecated `x-data-parallel-host-port` header names. Requests naming
 * encoders (`x-encoder-hosts-ports`, with `-ec-connector`) run the encoder
 * stage first; chat decodes run in chunks with `-decode-chunk-size`.
 */

import type { Context, Handler } from "hono";
import { readBodyText } from "../body_limit.ts";
import { configForRank } from "../config.ts";
import {
  createPdRunner,
  type PdRequest,
  type PdRunner,
} from "../connectors/run.ts";
import type { AppEnv, Deps } from "../context.ts";
import { createRankSelector } from "../data_parallel.ts";
import { runObservedPd } from "../observation.ts";
import type { ApiKind } from "../protocol/api.ts";
import type { Logger } from "../log.ts";
import {
  HEADER_DATA_PARALLEL_HOST_PORT,
  HEADER_ENCODER_HOSTS_PORTS,
  HEADER_KV_CACHE_SOURCE,
} from "../protocol/fields.ts";
import { selectEncoderTargets } from "../stages/encoder.ts";
import type { HeaderLookup } from "../upstream/headers.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import {
  admitBody,
  clientBodyReading,
  clientIpOf,
  passthroughChecked,
  passthroughRequest,
  pathAndQueryOf,
} from "./passthrough.ts";

/** What serves the requests bound for one data-parallel rank. */
interface RankRoute {
  readonly deps: Deps;
  readonly pd: PdRunner;
}

/**
 * A route per rank this listener can send to: every rank on rank 0, which
 * reads the header, its own rank elsewhere.
 */
function rankRoutes(deps: Deps): ReadonlyMap<number, RankRoute> {
  const { config } = deps;
  const ranks = config.dataParallelRank === 0
    ? Array.from({ length: config.dataParallelSize }, (_, rank) => rank)
    : [config.dataParallelRank];
  return new Map(ranks.map((rank) => {
    const rankDeps = rank === config.dataParallelRank
      ? deps
      : { ...deps, config: configForRank(config, rank) };
    return [rank, { deps: rankDeps, pd: createPdRunner(rankDeps) }];
  }));
}

/** Whether rank 0 routes the request by the deprecated `x-data-parallel-host-port`. */
function isRankRouted(deps: Deps, headers: HeaderLookup): boolean {
  return deps.config.dataParallelRank === 0 &&
    (headers.get(HEADER_DATA_PARALLEL_HOST_PORT) ?? "") !== "";
}

/**
 * The encoders `x-encoder-hosts-ports` names, when the encoder stage is on;
 * without `-ec-connector` the header is dropped unread, as in Go.
 */
function selectEncoders(
  deps: Deps,
  headers: HeaderLookup,
  log: Logger,
): UpstreamTarget[] {
  if (deps.config.ecConnector !== "") {
    return selectEncoderTargets(headers, log);
  }
  if (headers.get(HEADER_ENCODER_HOSTS_PORTS) !== null) {
    log.debug("ignoring encoder header: no -ec-connector configured");
  }
  return [];
}

/** The request as the P/D runner takes it; built only when a request goes that way. */
function buildPdRequest(
  c: Context<AppEnv>,
  deps: Deps,
  api: ApiKind,
): PdRequest {
  const request = c.req.raw;
  return {
    api,
    pathAndQuery: pathAndQueryOf(request),
    headers: request.headers,
    clientIp: clientIpOf(c),
    requestId: c.get("requestId"),
    signal: c.get("clientGone"),
    log: c.get("log"),
    // Every connector, the encoder stage and chunked decode read the body
    // here, so a client's address is checked before any leg is built.
    readBody: async () => {
      const text = await readBodyText(request, clientBodyReading(deps, c));
      await admitBody(deps, c, text);
      return text;
    },
    observation: c.get("observation"),
  };
}

/**
 * Each rank's routes, built once per app: the five generation APIs share
 * them, so a connector's caches and once-only warnings exist once per rank.
 */
const routesOfApp = new WeakMap<Deps, ReturnType<typeof rankRoutes>>();

/** Handler for one generation API. */
export function createGenerationHandler(
  deps: Deps,
  api: ApiKind,
): Handler<AppEnv> {
  let routes = routesOfApp.get(deps);
  if (routes === undefined) {
    routes = rankRoutes(deps);
    routesOfApp.set(deps, routes);
  }
  const selector = createRankSelector(deps.config);
  const routeOf = (rank: number): RankRoute => {
    const route = routes.get(rank);
    // The selector only returns ranks of the same config, which all have a route.
    if (route === undefined) throw new Error(`No route for rank ${rank}`);
    return route;
  };
  const own = routeOf(deps.config.dataParallelRank);
  return async function generation(c) {
    const log = c.get("log");
    const request = c.req.raw;
    const prefiller = own.pd.select(request.headers);
    const route = routeOf(selector.select(request.headers, log));
    // A plain passthrough never needs these: built on first use.
    let built: PdRequest | undefined;
    const pdRequest = (): PdRequest => built ??= buildPdRequest(c, deps, api);
    const access = c.get("access");
    const observation = c.get("observation");
    const facts = () => ({
      connector: deps.config.connector,
      api,
      path: c.req.path,
    });
    const encoders = selectEncoders(deps, request.headers, log);
    if (encoders.length > 0) {
      access.route = "pd";
      access.connector = deps.config.ecConnector;
      if (prefiller !== undefined) access.prefillTarget = prefiller.hostPort;
      return await runObservedPd(
        observation,
        {
          ...facts(),
          connector: deps.config.ecConnector,
          ...(prefiller ? { prefillTarget: prefiller.hostPort } : {}),
        },
        () => route.pd.encode(encoders, prefiller, pdRequest()),
      );
    }
    if (prefiller !== undefined) {
      access.route = "pd";
      access.connector = deps.config.connector;
      access.prefillTarget = prefiller.hostPort;
      return await runObservedPd(
        observation,
        { ...facts(), prefillTarget: prefiller.hostPort },
        () => route.pd.run(prefiller, pdRequest()),
      );
    }
    // A request the rank-0 header sent to a rank ignores the KV source
    // (delta §2.3); one without the header (every plain passthrough) builds
    // nothing for the lookup.
    const source = isRankRouted(deps, request.headers) ||
        !request.headers.has(HEADER_KV_CACHE_SOURCE)
      ? undefined
      : await own.pd.kvSource({
        headers: request.headers,
        clientIp: clientIpOf(c),
        pathAndQuery: pathAndQueryOf(request),
        log,
      });
    if (source !== undefined) {
      access.route = "pd";
      access.connector = deps.config.connector;
      return await runObservedPd(
        observation,
        { ...facts(), kvCacheSource: source.hostPort },
        () => route.pd.decodeFromSource(source, pdRequest()),
      );
    }
    log.debug("skip disaggregated prefill: no prefiller header");
    // Chunked decode reads the body; every other decode streams it untouched.
    if (deps.config.decodeChunkSize > 0 && api === "chat") {
      return await route.pd.decode(pdRequest());
    }
    // With SSRF protection on, the body is read whole to be checked: it
    // could tell the decoder to dial an address (kv_transfer_params).
    if (deps.allowlist?.enabled === true) {
      return await passthroughChecked(route.deps, c);
    }
    return passthroughRequest(route.deps, c);
  };
}
