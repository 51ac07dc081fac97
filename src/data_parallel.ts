/**
 * @module
 * Data parallel (reference base §4, delta §4): rank r of `-data-parallel-size`
 * is served on `-port + r` and decodes on `-model-server-port + r`. Rank 0 also
 * honours the deprecated `x-data-parallel-host-port` header, by which the
 * scheduler named a rank before Istio 1.28.1 could route to several target
 * ports of one pod (istio/istio#57638).
 */

import type { Config } from "./config.ts";
import { ProxyError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { HEADER_DATA_PARALLEL_HOST_PORT } from "./protocol/fields.ts";
import type { HeaderLookup } from "./upstream/headers.ts";
import { joinHostPort } from "./upstream/target.ts";

/**
 * The header value naming each rank, as the Go sidecar builds its table:
 * `POD_IP:port+r`, or `:port+r` when POD_IP is unset. Rank 0 is in it even
 * without data parallelism.
 */
export function dataParallelKeys(
  config: Pick<Config, "podIp" | "port" | "dataParallelSize">,
): ReadonlyMap<string, number> {
  const keys = new Map<string, number>();
  for (let rank = 0; rank < config.dataParallelSize; rank++) {
    keys.set(joinHostPort(config.podIp, config.port + rank), rank);
  }
  return keys;
}

/** Chooses the data-parallel rank whose model server decodes a request. */
export interface RankSelector {
  /**
   * The rank `headers` name on rank 0, else this listener's own rank; throws a
   * 400 `ProxyError` for a value that names no rank.
   */
  select(headers: HeaderLookup, log: Logger): number;
}

/**
 * Builds the selector of the listener `config` describes. Only rank 0 reads the
 * header, as in Go; another rank's listener was reached on its own port.
 */
export function createRankSelector(config: Config): RankSelector {
  const own = config.dataParallelRank;
  if (own !== 0) return { select: () => own };
  const keys = dataParallelKeys(config);
  let warned = false;
  return {
    select(headers, log) {
      const value = headers.get(HEADER_DATA_PARALLEL_HOST_PORT) ?? "";
      if (value === "") return own;
      if (!warned) {
        // Go logs this at Info on every such request; once is enough to act on.
        warned = true;
        log.warn(
          `The use of the ${HEADER_DATA_PARALLEL_HOST_PORT} header is deprecated. Use Istio >= 1.28.1.`,
        );
      }
      const rank = keys.get(value);
      if (rank === undefined) {
        throw new ProxyError(
          400,
          `Invalid data-parallel endpoint "${value}" in header "${HEADER_DATA_PARALLEL_HOST_PORT}": ` +
            `expected one of ${
              [...keys.keys()].map((key) => `"${key}"`).join(", ")
            }`,
          { code: "invalid_data_parallel_target" },
        );
      }
      log.debug("data parallel routing", { to: value, rank });
      return rank;
    },
  };
}
