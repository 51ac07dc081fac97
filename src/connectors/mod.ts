/**
 * @module
 * The connector registry: which protocol runs for each `-kv-connector` name.
 */

import type { ConnectorName } from "../config.ts";
import { ProxyError } from "../errors.ts";
import { nixlv2 } from "./nixlv2.ts";
import type { Connector } from "./types.ts";

/** The placeholders registered for connectors not built yet. */
const placeholders = new Set<Connector>();

function notYetSupported(name: ConnectorName): Connector {
  const connector: Connector = {
    name,
    run(): Promise<Response> {
      return Promise.reject(
        new ProxyError(
          501,
          `Connector "${name}" is not supported yet by this sidecar; use "nixlv2" or send the request without a prefiller header`,
        ),
      );
    },
  };
  placeholders.add(connector);
  return connector;
}

const CONNECTORS: Readonly<Record<ConnectorName, Connector>> = {
  "nixlv2": nixlv2,
  "nixl": notYetSupported("nixl"),
  "lmcache": notYetSupported("lmcache"),
  "sglang": notYetSupported("sglang"),
  "shared-storage": notYetSupported("shared-storage"),
  "mooncake": notYetSupported("mooncake"),
  "offloading": notYetSupported("offloading"),
};

/** Whether the connector named `name` is implemented. */
export function isConnectorImplemented(name: ConnectorName): boolean {
  return !placeholders.has(CONNECTORS[name]);
}

/** The connector registered as `name`. */
export function getConnector(name: ConnectorName): Connector {
  return CONNECTORS[name];
}
