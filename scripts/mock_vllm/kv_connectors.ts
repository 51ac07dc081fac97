/**
 * Builds the one KV connector a mock speaks, by name.
 *
 * @module
 */

import type { KvConnector, KvContext } from "./kv_connector.ts";
import { createLmcacheConnector } from "./kv_lmcache.ts";
import { createMooncakeConnector } from "./kv_mooncake.ts";
import { createNixlV1Connector, createNixlV2Connector } from "./kv_nixl.ts";
import { createOffloadingConnector } from "./kv_offloading.ts";
import { createP2pEndpoint } from "./kv_p2p.ts";
import { createKvRegistry } from "./kv_registry.ts";
import { createSglangConnector } from "./kv_sglang.ts";
import { createSharedStorageConnector } from "./kv_shared_storage.ts";
import type { KvStore, LocalKvStore } from "./kv_store.ts";
import type { KvConnectorName } from "./kv_wire.ts";

/** Stores a connector may use. */
export interface ConnectorStores {
  /** This engine's own store (its prefix cache), served on its side channel. */
  readonly localStore: LocalKvStore;
  /** The store LMCache and shared storage use: `localStore`, or another mock's over HTTP. */
  readonly sharedStore: KvStore;
}

/** Creates the connector called `name`. */
export function createKvConnector(
  name: KvConnectorName,
  ctx: KvContext,
  stores: ConnectorStores,
): KvConnector {
  const { localStore, sharedStore } = stores;
  switch (name) {
    case "nixlv2": {
      const p2p = createP2pEndpoint(localStore);
      const connector = createNixlV2Connector({
        ctx,
        registry: createKvRegistry(),
        localStore,
        serveP2p: p2p.serve,
      });
      return { ...connector, close: p2p.close };
    }
    case "nixl":
      return createNixlV1Connector({
        ctx,
        registry: createKvRegistry(),
        localStore,
      });
    case "lmcache":
      return createLmcacheConnector(ctx, sharedStore);
    case "shared-storage":
      return createSharedStorageConnector(ctx, sharedStore);
    case "sglang":
      return createSglangConnector(ctx);
    case "mooncake":
      return createMooncakeConnector(ctx);
    case "offloading":
      return createOffloadingConnector(ctx, {
        localStore,
        p2p: createP2pEndpoint(localStore),
      });
  }
}
