/**
 * @module
 * The connector registry: which protocol runs for each `-kv-connector` name.
 */

import type { Config, ConnectorName } from "../config.ts";
import { createLmcache } from "./lmcache.ts";
import { createMooncake } from "./mooncake.ts";
import { createNixl } from "./nixl.ts";
import { createNixlv2 } from "./nixlv2.ts";
import { createOffloading } from "./offloading.ts";
import { createSglang } from "./sglang.ts";
import { createSharedStorage } from "./shared_storage.ts";
import type { Connector, ConnectorFactory } from "./types.ts";

const FACTORIES: Readonly<Record<ConnectorName, ConnectorFactory>> = {
  "nixlv2": createNixlv2,
  "nixl": createNixl,
  "lmcache": createLmcache,
  "sglang": createSglang,
  "shared-storage": createSharedStorage,
  "mooncake": createMooncake,
  "offloading": createOffloading,
};

/** Builds the connector `config.connector` names, with its own state (caches). */
export function createConnector(config: Config): Connector {
  return FACTORIES[config.connector](config);
}
