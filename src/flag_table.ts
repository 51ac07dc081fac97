/**
 * @module
 * Every flag of the Go sidecars with its kind, default, help, whether this
 * sidecar supports it and whether the YAML configuration has it as a key: the
 * one table the parser, the YAML loader, validation and usage text read.
 */

import type { FlagKind } from "./flags.ts";
import { parseKlogSeverity } from "./flag_values.ts";

/** P/D connector names accepted by `-kv-connector` (Go spellings). */
export const CONNECTOR_NAMES = [
  "nixlv2",
  "nixl",
  "lmcache",
  "sglang",
  "shared-storage",
  "mooncake",
  "offloading",
] as const;

/** One of {@linkcode CONNECTOR_NAMES}. */
export type ConnectorName = typeof CONNECTOR_NAMES[number];

/** Encoder-cache connector names accepted by `-ec-connector` (Go spellings). */
export const EC_CONNECTOR_NAMES = ["ec-example", "ec-nixl"] as const;

/** One of {@linkcode EC_CONNECTOR_NAMES}. */
export type EcConnectorName = typeof EC_CONNECTOR_NAMES[number];

/** Environment variable read when `-enable-prefiller-sampling` is not given (as the Go sidecar). */
export const PREFILLER_SAMPLING_ENV = "ENABLE_PREFILLER_SAMPLING";
/** The pod's address: data-parallel routing keys `POD_IP:port+r` are built from it. */
export const POD_IP_ENV = "POD_IP";
/** SGLang bootstrap port put in both legs' `bootstrap_port` (no flag, as in Go). */
export const SGLANG_BOOTSTRAP_PORT_ENV = "SGLANG_BOOTSTRAP_PORT";
/** Environment variable read when `-mooncake-bootstrap-port` is not given. */
export const MOONCAKE_BOOTSTRAP_PORT_ENV = "MOONCAKE_BOOTSTRAP_PORT";
/** Environment variable read when `-p2p-connector-port` is not given. */
export const P2P_CONNECTOR_PORT_ENV = "P2P_CONNECTOR_PORT";
/** Idle keep-alive connections kept per upstream host: Go's `-max-idle-conns-per-host` default. */
export const MAX_IDLE_CONNS_PER_HOST = 1024;

// --- SSRF protection and upstream TLS (issue 11) ---
/** Upstream stages `-enable-tls` and `-tls-insecure-skip-verify` name (Go spellings). */
export const TLS_STAGES = ["prefiller", "decoder", "encoder"] as const;
/** One of {@linkcode TLS_STAGES}. */
export type TlsStage = typeof TLS_STAGES[number];
/** API groups `-pool-group` accepts; the first is the default. */
export const POOL_GROUPS = [
  "inference.networking.k8s.io",
  "inference.networking.x-k8s.io",
] as const;
/** Environment variable read when `-inference-pool` is not given (as the Go sidecar). */
export const INFERENCE_POOL_ENV = "INFERENCE_POOL";
/** Environment fallback of the deprecated `-inference-pool-namespace`. */
export const INFERENCE_POOL_NAMESPACE_ENV = "INFERENCE_POOL_NAMESPACE";
/** Environment fallback of the deprecated `-inference-pool-name`. */
export const INFERENCE_POOL_NAME_ENV = "INFERENCE_POOL_NAME";
/** Kubeconfig file of the Kubernetes API the allowlist reads (client-node's lookup). */
export const KUBECONFIG_ENV = "KUBECONFIG";
/** In-cluster address of the Kubernetes API, set by the kubelet. */
export const KUBERNETES_SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST";
/** In-cluster port of the Kubernetes API, set by the kubelet. */
export const KUBERNETES_SERVICE_PORT_ENV = "KUBERNETES_SERVICE_PORT";
/** Home directory: client-node falls back to `$HOME/.kube/config`. */
export const HOME_ENV = "HOME";
// --- end of issue 11 names ---

/**
 * Every environment variable the sidecar's configuration reads: `main.ts` reads these. The run
 * permissions still allow the whole environment: the Kubernetes client's `debug` dependency
 * enumerates it when it loads (issue 11).
 */
export const ENV_VARS = [
  PREFILLER_SAMPLING_ENV,
  POD_IP_ENV,
  SGLANG_BOOTSTRAP_PORT_ENV,
  MOONCAKE_BOOTSTRAP_PORT_ENV,
  P2P_CONNECTOR_PORT_ENV,
  // SSRF protection (issue 11): the pool, and where the Kubernetes API is.
  INFERENCE_POOL_ENV,
  INFERENCE_POOL_NAMESPACE_ENV,
  INFERENCE_POOL_NAME_ENV,
  KUBECONFIG_ENV,
  KUBERNETES_SERVICE_HOST_ENV,
  KUBERNETES_SERVICE_PORT_ENV,
  HOME_ENV,
] as const;

/**
 * Every variable that changes what the sidecar does: {@linkcode ENV_VARS}, plus the debug
 * switches the `yaml` library reads on every token it parses (`LOG_TOKENS`, `LOG_STREAM`).
 * The sidecar itself never reads those two. Tests clear these from a sidecar's environment.
 */
export const ALLOWED_ENV_VARS = [
  ...ENV_VARS,
  "LOG_TOKENS",
  "LOG_STREAM",
] as const;

/** Default of SGLANG_BOOTSTRAP_PORT, as the Go sidecar's. */
export const DEFAULT_SGLANG_BOOTSTRAP_PORT = 8998;

/** The environment by variable name; only the names in {@linkcode ENV_VARS} are read. */
export type Env = Readonly<Record<string, string | undefined>>;

/** What each environment variable sets, for the usage text. */
export const ENV_HELP: Readonly<Record<typeof ENV_VARS[number], string>> = {
  [PREFILLER_SAMPLING_ENV]:
    "default of -enable-prefiller-sampling (Go ParseBool spellings)",
  [POD_IP_ENV]:
    "the pod's IP: rank 0 accepts x-data-parallel-host-port values POD_IP:port+r",
  [SGLANG_BOOTSTRAP_PORT_ENV]:
    `bootstrap_port sent by -kv-connector=sglang (default ${DEFAULT_SGLANG_BOOTSTRAP_PORT})`,
  [MOONCAKE_BOOTSTRAP_PORT_ENV]: "default of -mooncake-bootstrap-port",
  [P2P_CONNECTOR_PORT_ENV]: "default of -p2p-connector-port",
  [INFERENCE_POOL_ENV]: "default of -inference-pool",
  [INFERENCE_POOL_NAMESPACE_ENV]: "default of -inference-pool-namespace",
  [INFERENCE_POOL_NAME_ENV]: "default of -inference-pool-name",
  [KUBECONFIG_ENV]:
    "kubeconfig of the Kubernetes API -enable-ssrf-protection reads (else in-cluster, else $HOME/.kube/config)",
  [KUBERNETES_SERVICE_HOST_ENV]:
    "in-cluster Kubernetes API host, set by Kubernetes (-enable-ssrf-protection)",
  [KUBERNETES_SERVICE_PORT_ENV]:
    "in-cluster Kubernetes API port, set by Kubernetes (-enable-ssrf-protection)",
  [HOME_ENV]:
    "where $HOME/.kube/config is looked for (-enable-ssrf-protection)",
};

/** Connector used when neither `-kv-connector` nor `-connector` is given. */
export const DEFAULT_CONNECTOR: ConnectorName = "nixlv2";
/** Why logging-output flags have no effect. */
export const LOGGING_NOTE = "this sidecar always logs JSON lines to stderr";

/**
 * How the sidecar treats a flag of the Go sidecars:
 * - supported: parsed and used.
 * - no-effect: klog/zap output plumbing that did nothing useful in Go either; parsed, warned.
 * - not-yet: a feature of the Go sidecar not built here yet; rejected (exit 2), never ignored.
 * - unsupported: klog log files and per-file filters, which we cannot honour; rejected (exit 2).
 */
export type FlagStatus = "supported" | "no-effect" | "not-yet" | "unsupported";

/** One row of the flag table. */
export interface FlagEntry {
  readonly kind: FlagKind;
  readonly status: FlagStatus;
  readonly help: string;
  /** Shown in the usage text; omitted for zero values, like Go's PrintDefaults. */
  readonly default?: string | number | boolean;
  /**
   * Accepted values of an enumerated flag that has no effect (checked, then
   * ignored); supported ones are checked against their typed lists in config.
   */
  readonly choices?: readonly string[];
  /**
   * Checks the value of a flag that has no effect as the Go flag's own parser
   * would, throwing the exit-2 error, for values richer than {@linkcode choices}.
   */
  readonly check?: (flag: string, text: string) => unknown;
  /**
   * Present when the YAML configuration has a key of the flag's name (the Go sidecars'
   * `yamlConfiguration`); `{}` for a key read as the flag is.
   */
  readonly yaml?: YamlKeyEntry;
}

/** How the YAML key of a flag differs from the flag. */
export interface YamlKeyEntry {
  /** The key's kind when not the flag's: Go's struct types the string port flags as ints. */
  readonly kind?: "int";
  /**
   * Other flags that, given on the command line, also keep this key from applying:
   * an explicit flag for the same setting, deprecated spelling included, beats YAML.
   */
  readonly yieldsTo?: readonly string[];
}

/** The connector names as a comma-separated list, for messages. */
const CONNECTOR_LIST = CONNECTOR_NAMES.join(", ");

/**
 * Every flag of the Go sidecars (ORIG llm-d-routing-sidecar, LATEST and NEXT pd-sidecar). Supporting a
 * "not-yet" flag means changing its status here and reading its value in parseCommandLine.
 * Help strings are adapted from the Go sources.
 */
const FLAGS = {
  "port": {
    kind: "string",
    status: "supported",
    yaml: { kind: "int" },
    default: "8000",
    help: "the port the sidecar is listening on",
  },
  "listen-host": {
    kind: "string",
    status: "supported",
    yaml: {},
    default: "::",
    help:
      'the address the sidecar listens on; "::" is all interfaces, IPv4 and IPv6 ' +
      "(not in the Go sidecar)",
  },
  "model-server-port": {
    kind: "string",
    status: "supported",
    yaml: { kind: "int", yieldsTo: ["vllm-port"] },
    default: "8001",
    help:
      "the port the model server (vLLM or SGLang) is listening on; with -data-parallel-size " +
      "N, rank r's model server listens on this port + r",
  },
  "vllm-port": {
    kind: "string",
    status: "supported",
    yaml: { kind: "int", yieldsTo: ["model-server-port"] },
    help:
      "Deprecated: use -model-server-port instead. The port the model server is listening " +
      "on; -model-server-port wins when both are given",
  },
  "kv-connector": {
    kind: "string",
    status: "supported",
    yaml: { yieldsTo: ["connector"] },
    default: DEFAULT_CONNECTOR,
    help:
      `the KV protocol between prefiller and decoder. Supported: ${CONNECTOR_LIST}`,
  },
  "connector": {
    kind: "string",
    status: "supported",
    yaml: { yieldsTo: ["kv-connector"] },
    help:
      "Deprecated: use -kv-connector instead. The P/D connector being used, taken when " +
      `-kv-connector is empty or not given. Supported: ${CONNECTOR_LIST}`,
  },
  "data-parallel-size": {
    kind: "int",
    status: "supported",
    yaml: {},
    default: 1,
    help:
      "the model server's data-parallel size N: rank r (0..N-1) is served on -port + r and " +
      "sent to -model-server-port + r",
  },
  "mooncake-bootstrap-port": {
    kind: "int",
    status: "supported",
    yaml: {},
    default: 8998,
    help:
      "the port of the Mooncake bootstrap endpoint on prefill pods (only used with " +
      `-kv-connector=mooncake; defaults to ${MOONCAKE_BOOTSTRAP_PORT_ENV} env var)`,
  },
  "p2p-connector-port": {
    kind: "int",
    status: "supported",
    yaml: {},
    default: 7777,
    help:
      "the prefiller's OffloadingConnector P2P tier port, sent as remote_port; with " +
      "-data-parallel-size > 1 this is rank 0's port and rank r uses port + r (used with " +
      "-kv-connector=offloading or -enable-p2p-pull; defaults to " +
      `${P2P_CONNECTOR_PORT_ENV} env var)`,
  },
  "enable-p2p-pull": {
    kind: "bool",
    status: "supported",
    yaml: {},
    help:
      "declare the OffloadingConnector P2P tier available next to NIXL (vLLM " +
      "MultiConnector) for cached-prefix pulls named by x-kv-cache-source-host-port; only " +
      "with -kv-connector=nixlv2 (offloading has the tier without this flag)",
  },
  "secure-proxy": {
    kind: "bool",
    status: "supported",
    yaml: {},
    default: true,
    help: "Enables secure proxy (TLS on the sidecar's listener)",
  },
  "cert-path": {
    kind: "string",
    status: "supported",
    yaml: {},
    help:
      "The path to the certificate for secure proxy. The certificate and private key files " +
      "are assumed to be named tls.crt and tls.key, respectively. If not set, and secure-proxy " +
      "is enabled, then a self-signed certificate is used (for testing).",
  },
  "enable-prefiller-sampling": {
    kind: "bool",
    status: "supported",
    yaml: {},
    help:
      "if true, the target prefill instance will be selected randomly from among the " +
      `provided prefill host values (defaults to ${PREFILLER_SAMPLING_ENV} env var)`,
  },
  "workers": {
    kind: "int",
    status: "supported",
    yaml: {},
    default: 1,
    help:
      "number of listener threads sharing the port (SO_REUSEPORT), each with its own event " +
      "loop and upstream pools; more than 1 spreads load over cores (not in the Go sidecar)",
  },
  "max-connections": {
    kind: "int",
    status: "supported",
    yaml: {},
    default: 0,
    help:
      "most client connections each listener serves at once (each -workers thread and each " +
      "data-parallel port counts its own), TLS handshakes and idle keep-alive connections " +
      "included; more wait in the kernel's listen queue until one closes. 0, the default, " +
      "sets no cap (not in the Go sidecar)",
  },
  "max-client-resets": {
    kind: "int",
    status: "supported",
    yaml: {},
    default: 100,
    help:
      "close a client connection (HTTP/2 GOAWAY) once its client has cancelled this many " +
      "requests before their answers and they are more than half of its requests: the HTTP/2 " +
      "rapid-reset attack (CVE-2023-44487) starts requests to vLLM and cancels each at once. " +
      "Judged as its next request arrives, so a connection that drops with requests in " +
      "flight is none. Requests still arriving on it are refused (429) without reaching vLLM. " +
      "Counts halve every 1000 requests. 0 turns the check off (not in the Go sidecar)",
  },
  "watch-client-connections": {
    kind: "bool",
    status: "supported",
    yaml: {},
    help:
      "notice a client that leaves while its request waits, from /proc/net/tcp (Linux); " +
      "Deno opens /proc only with --allow-all, so the sidecar refuses to start without it " +
      "(not in the Go sidecar)",
  },
  "max-request-body-bytes": {
    kind: "int",
    status: "supported",
    yaml: {},
    default: 33554432,
    help:
      "largest request body accepted, in bytes; a larger one is answered 413 before it is read " +
      "whole or sent on, whether its Content-Length says so or a chunked body runs past it. " +
      "The default (32 MiB) leaves room for multimodal requests with inline images " +
      "(not in the Go sidecar)",
  },
  "v": {
    kind: "int",
    status: "supported",
    help:
      "number for the log level verbosity (routing decisions at 4, request bodies at 5; " +
      "below 0, errors only)",
  },
  "zap-log-level": {
    kind: "string",
    status: "supported",
    default: "info",
    help:
      "Zap Level to configure the verbosity of logging. Can be one of 'debug', 'info', " +
      "'error', 'panic' or any integer value > 0 which corresponds to custom debug levels " +
      "of increasing verbosity",
  },
  "print-config": {
    kind: "bool",
    status: "supported",
    help:
      "print the effective configuration, each value with where it came from (flag, yaml, " +
      "env or default), and exit (not in the Go sidecar)",
  },
  "h": { kind: "bool", status: "supported", help: "show this help and exit" },
  "help": {
    kind: "bool",
    status: "supported",
    help: "show this help and exit",
  },

  "zap-encoder": {
    kind: "string",
    status: "no-effect",
    choices: ["json", "console"],
    help: "Zap log encoding",
  },
  "zap-time-encoding": {
    kind: "string",
    status: "no-effect",
    // controller-runtime's spellings ("nanos", not "nano").
    choices: ["epoch", "millis", "nanos", "iso8601", "rfc3339", "rfc3339nano"],
    help: "Zap time encoding",
  },
  "logtostderr": {
    kind: "bool",
    status: "no-effect",
    help: "log to standard error",
  },
  "alsologtostderr": {
    kind: "bool",
    status: "no-effect",
    help: "log to standard error too",
  },
  "stderrthreshold": {
    kind: "string",
    status: "no-effect",
    check: parseKlogSeverity,
    help: "klog stderr threshold",
  },
  "skip_headers": {
    kind: "bool",
    status: "no-effect",
    help: "klog: no header prefixes",
  },
  "skip_log_headers": {
    kind: "bool",
    status: "no-effect",
    help: "klog: no file headers",
  },
  "one_output": {
    kind: "bool",
    status: "no-effect",
    help: "klog: one output per severity",
  },
  "add_dir_header": {
    kind: "bool",
    status: "no-effect",
    help: "klog: file directory in header",
  },

  "ec-connector": {
    kind: "string",
    status: "supported",
    yaml: {},
    help:
      "the EC protocol between encoders and prefiller/decoder (E/P/D mode), run for requests " +
      `naming encoders in x-encoder-hosts-ports; empty disables the encoder stage. Supported: ${
        EC_CONNECTOR_NAMES.join(", ")
      }`,
  },
  // --- SSRF protection and upstream TLS (issue 11) ---
  "enable-ssrf-protection": {
    kind: "bool",
    status: "supported",
    yaml: {},
    help:
      "enable SSRF protection using InferencePool allowlisting: prefill, encoder and " +
      "KV-source targets must be ready pods of the pool, on one of its target ports",
  },
  "pool-group": {
    kind: "string",
    status: "supported",
    yaml: {},
    default: "inference.networking.k8s.io",
    help:
      "group of the InferencePool this Endpoint Picker is associated with " +
      `(${POOL_GROUPS.join(" or ")})`,
  },
  "inference-pool": {
    kind: "string",
    status: "supported",
    yaml: {},
    help:
      `InferencePool in namespace/name or name format (defaults to ${INFERENCE_POOL_ENV} env ` +
      "var); a bare name is looked up in the sidecar's own namespace",
  },
  "inference-pool-namespace": {
    kind: "string",
    status: "supported",
    help:
      `Deprecated: use -inference-pool instead (defaults to ${INFERENCE_POOL_NAMESPACE_ENV} env var)`,
  },
  "inference-pool-name": {
    kind: "string",
    status: "supported",
    help:
      `Deprecated: use -inference-pool instead (defaults to ${INFERENCE_POOL_NAME_ENV} env var)`,
  },
  "allowed-prefillers": {
    kind: "list",
    status: "supported",
    help:
      "static SSRF allowlist, repeatable or comma separated: host, host:port, IP, ip:port, " +
      "[v6]:port or CIDR; works without Kubernetes and adds to the pool (not in the Go sidecar)",
  },
  "allowlist-sync-timeout": {
    kind: "string",
    status: "supported",
    default: "30s",
    help:
      "how long start-up waits to read the InferencePool and its pods before failing, " +
      'e.g. "30s" or "500ms" (not in the Go sidecar)',
  },
  "enable-tls": {
    kind: "list",
    status: "supported",
    yaml: {},
    help: `stages to enable TLS for: ${TLS_STAGES.join(", ")}`,
  },
  "tls-insecure-skip-verify": {
    kind: "list",
    status: "supported",
    yaml: {},
    help: `stages to skip TLS verification for: ${TLS_STAGES.join(", ")}`,
  },
  "prefiller-use-tls": {
    kind: "bool",
    status: "supported",
    yaml: { yieldsTo: ["enable-tls"] },
    help: "Deprecated: use -enable-tls=prefiller instead",
  },
  "decoder-use-tls": {
    kind: "bool",
    status: "supported",
    yaml: { yieldsTo: ["enable-tls"] },
    help: "Deprecated: use -enable-tls=decoder instead",
  },
  "prefiller-tls-insecure-skip-verify": {
    kind: "bool",
    status: "supported",
    yaml: { yieldsTo: ["tls-insecure-skip-verify"] },
    help: "Deprecated: use -tls-insecure-skip-verify=prefiller instead",
  },
  "decoder-tls-insecure-skip-verify": {
    kind: "bool",
    status: "supported",
    yaml: { yieldsTo: ["tls-insecure-skip-verify"] },
    help: "Deprecated: use -tls-insecure-skip-verify=decoder instead",
  },
  "ca-cert": {
    kind: "string",
    status: "supported",
    help:
      "PEM file of CA certificates trusted for upstream TLS besides the default roots " +
      "(not in the Go sidecar)",
  },
  // --- end of issue 11 rows ---
  "max-idle-conns-per-host": {
    kind: "int",
    status: "supported",
    yaml: {},
    default: MAX_IDLE_CONNS_PER_HOST,
    help:
      "max idle keep-alive connections per host for reverse proxy transports; 0 or less " +
      `means ${MAX_IDLE_CONNS_PER_HOST}, as in Go. A stage that skips TLS verification ` +
      "keeps its own pool, without this bound",
  },
  "decode-chunk-size": {
    kind: "int",
    status: "supported",
    yaml: {},
    default: 0,
    help:
      "enables chunked decode mode when > 0; value is the token budget per chunk: a chat " +
      "decode runs as requests of at most this many tokens, each continuing the last",
  },
  "configuration": {
    kind: "string",
    status: "supported",
    help:
      "Sidecar configuration in YAML provided as inline specification, e.g. " +
      "-configuration='{port: 8085, model-server-port: 8203}'; keys are the flag names and an " +
      "explicit flag wins over its key. Mutually exclusive with -configuration-file",
  },
  "configuration-file": {
    kind: "string",
    status: "supported",
    help:
      "Path to a file which contains the sidecar configuration in YAML (at most 64 KiB), " +
      "e.g. -configuration-file=/etc/config/sidecar-config.yaml. Mutually exclusive with " +
      "-configuration",
  },
  "zap-devel": {
    kind: "bool",
    status: "supported",
    default: false,
    help:
      "Development Mode defaults: log level debug unless -zap-log-level or -v sets one " +
      "(stack traces are never logged here)",
  },
  "zap-stacktrace-level": {
    kind: "string",
    status: "no-effect",
    // controller-runtime's stack trace levels: no debug.
    choices: ["info", "error", "panic"],
    help: "Zap level at and above which stacktraces are captured",
  },
  "prefill-max-retries": {
    kind: "int",
    status: "supported",
    yaml: {},
    default: 0,
    help:
      "extra prefill attempts after a connection error or a 502, 503 or 504 (never after a " +
      "4xx or once the client has gone); a retry goes to the next prefiller the header " +
      "names. Sequential connectors only (nixlv2, nixl, lmcache, shared-storage)",
  },
  "prefill-retry-backoff": {
    kind: "string",
    status: "supported",
    yaml: {},
    default: "200ms",
    help:
      "delay between prefill attempts (Go duration); must be positive when " +
      "-prefill-max-retries > 0",
  },
  "prefill-failure-policy": {
    kind: "string",
    status: "supported",
    yaml: {},
    default: "fail",
    help:
      "what a failed prefill leg (unreachable, timed out, 5xx after the retries) gives: " +
      "'fail' answers the error; 'decode' runs the client's request on the local decoder " +
      "alone and says so in the x-pd-fallback response header (not in the Go sidecar)",
  },
  "connect-timeout": {
    kind: "string",
    status: "supported",
    yaml: {},
    default: "5s",
    help:
      "longest TCP connect to an upstream not reached in the last 4s, and on a TLS stage " +
      "the wait for its first answer to a TLS hello (Go duration; 0 turns it off); answered " +
      "504 connect_timeout (not in the Go sidecar)",
  },
  "prefill-timeout": {
    kind: "string",
    status: "supported",
    yaml: {},
    default: "5m",
    help:
      "longest prefill leg, retries and backoffs included (Go duration; 0 turns it off); " +
      "answered 504 prefill_timeout and the prefill aborted (not in the Go sidecar)",
  },
  "encoder-timeout": {
    kind: "string",
    status: "supported",
    yaml: {},
    default: "5m",
    help:
      "longest encoder stage (-ec-connector), every multimodal item included (Go duration; " +
      "0 turns it off); answered 504 encoder_timeout and the encoder requests aborted " +
      "(not in the Go sidecar)",
  },
  "decode-first-byte-timeout": {
    kind: "string",
    status: "supported",
    yaml: {},
    default: "0s",
    help:
      "longest wait for the first byte of a streaming (stream: true) P/D decode answer " +
      "(Go duration; 0, the default, turns it off); answered 504 decode_first_byte_timeout. " +
      "When on, the decode body is relayed through a JS pump (more CPU per chunk) " +
      "(not in the Go sidecar)",
  },
  "stream-idle-timeout": {
    kind: "string",
    status: "supported",
    yaml: {},
    default: "0s",
    help:
      "longest silence of the decoder once its answer has begun (Go duration; 0, the " +
      "default, turns it off), a slow-reading client not counting: the stream is broken " +
      "off and the decoder request aborted. " +
      "When on, every decoder answer is relayed through a JS pump (more CPU per chunk) " +
      "(not in the Go sidecar)",
  },
  "client-body-timeout": {
    kind: "string",
    status: "supported",
    yaml: {},
    default: "60s",
    help:
      "longest wait for the next piece of a request body the sidecar reads whole before " +
      "sending anything on (P/D, small passthrough bodies), the wait for its first byte " +
      "included (Go duration; 0 turns it off), like nginx's client_body_timeout; answered " +
      "408 client_body_timeout, an HTTP/1.1 connection closed (not in the Go sidecar)",
  },
  "shutdown-grace": {
    kind: "string",
    status: "supported",
    yaml: {},
    default: "60s",
    help:
      "on SIGTERM or SIGINT, how long requests and streams in flight may take to finish, " +
      "-shutdown-drain-delay included (Go duration); exit 1 when it passes (not in the Go " +
      "sidecar, which waits 60s)",
  },
  "shutdown-drain-delay": {
    kind: "string",
    status: "supported",
    yaml: {},
    default: "5s",
    help:
      "on SIGTERM or SIGINT, how long the sidecar keeps accepting and answers /health with " +
      "503 before it stops accepting, so load balancers move away first (Go duration; not " +
      "in the Go sidecar)",
  },
  "tracing": {
    kind: "bool",
    status: "supported",
    yaml: {},
    help:
      "Enable OpenTelemetry tracing: request, prefill and decode spans; export needs OTEL_DENO=true",
  },
  "metrics-port": {
    kind: "int",
    status: "supported",
    yaml: {},
    default: 9090,
    help: "port of the Prometheus /metrics endpoint; 0 disables it",
  },
  "moriio-write-mode": {
    kind: "bool",
    status: "not-yet",
    help: "MoRI-IO WRITE mode",
  },
  "moriio-parallel-dispatch": {
    kind: "bool",
    status: "not-yet",
    help: "MoRI-IO: prefill and decode in parallel",
  },
  "moriio-parallel-decode-wait-timeout": {
    kind: "string",
    status: "not-yet",
    help: "MoRI-IO: how long a parallel decode waits for its prefill",
  },
  "moriio-local-pod-ip": {
    kind: "string",
    status: "not-yet",
    help: "MoRI-IO: the decode pod's routable address",
  },
  "moriio-decode-notify-port": {
    kind: "int",
    status: "not-yet",
    help: "MoRI-IO: decode notify port",
  },
  "moriio-decode-handshake-port": {
    kind: "int",
    status: "not-yet",
    help: "MoRI-IO: decode handshake port",
  },
  "moriio-prefill-handshake-port": {
    kind: "int",
    status: "not-yet",
    help: "MoRI-IO: prefill handshake port",
  },
  "moriio-prefill-notify-port": {
    kind: "int",
    status: "not-yet",
    help: "MoRI-IO: prefill notify port",
  },
  "moriio-tp-size": {
    kind: "int",
    status: "not-yet",
    help: "MoRI-IO: tensor-parallel size",
  },
  "moriio-dp-size": {
    kind: "int",
    status: "not-yet",
    help: "MoRI-IO: data-parallel size",
  },
  "moriio-dp-size-local": {
    kind: "int",
    status: "not-yet",
    help: "MoRI-IO: data-parallel ranks per pod",
  },
  "moriio-remote-hosts": {
    kind: "list",
    status: "not-yet",
    help: "MoRI-IO: prefill-side hosts (Wide-EP)",
  },
  "moriio-decode-hosts": {
    kind: "list",
    status: "not-yet",
    help: "MoRI-IO: decode-side hosts (Wide-EP)",
  },

  "log_dir": {
    kind: "string",
    status: "unsupported",
    help: "klog: log file directory",
  },
  "log_file": { kind: "string", status: "unsupported", help: "klog: log file" },
  "log_file_max_size": {
    kind: "int",
    status: "unsupported",
    help: "klog: log file size",
  },
  "vmodule": {
    kind: "string",
    status: "unsupported",
    help: "klog: per-file verbosity",
  },
  "log_backtrace_at": {
    kind: "string",
    status: "unsupported",
    help: "klog: stack trace at",
  },
} as const satisfies Readonly<Record<string, FlagEntry>>;

/** The table without its literal types, for lookups by any string. */
const FLAG_TABLE: Readonly<Record<string, FlagEntry>> = FLAGS;

type FlagTable = typeof FLAGS;
/** The name of every flag in the table. */
export type FlagName = keyof FlagTable;
type ParsedName = {
  [N in FlagName]: FlagTable[N]["status"] extends "supported" | "no-effect" ? N
    : never;
}[FlagName];
/** Flag `name`'s default as the table states it, the value `-help` prints. */
export function defaultOf<N extends FlagName>(
  name: N,
): FlagTable[N] extends { readonly default: infer D } ? D : undefined {
  // Sound: the return type reads the same property from the same literal table.
  return (FLAGS[name] as { readonly default?: unknown }).default as never;
}

/** Kinds of the flags the parser accepts, typed from the table so values come out typed. */
export type ParserSpecs = { readonly [N in ParsedName]: FlagTable[N]["kind"] };

/** What the Go-flag parser is given: the supported and no-effect flags. */
export const PARSER_SPECS: ParserSpecs = buildParserSpecs();

function buildParserSpecs(): ParserSpecs {
  const specs: Record<string, FlagKind> = {};
  for (const [name, entry] of flagEntries()) {
    if (entry.status === "supported" || entry.status === "no-effect") {
      specs[name] = entry.kind;
    }
  }
  // Sound: the loop keeps exactly the entries whose status ParsedName selects.
  return specs as ParserSpecs;
}

/** Every row of the table, in declaration order. */
export function flagEntries(): [string, FlagEntry][] {
  return Object.entries(FLAG_TABLE);
}

/**
 * The flag an operator likely meant by the unknown `name`: the same name in
 * lower case, or with "_" and "-" swapped (klog's flags use "_", the others "-").
 */
export function similarFlagName(name: string): string | undefined {
  const lower = name.toLowerCase();
  return [lower, lower.replaceAll("_", "-"), lower.replaceAll("-", "_")].find(
    (candidate) => candidate !== name && lookupFlag(candidate) !== undefined,
  );
}

/** The entry of flag `name`, if the table has one. */
export function lookupFlag(name: string | undefined): FlagEntry | undefined {
  return name !== undefined && Object.hasOwn(FLAG_TABLE, name)
    ? FLAG_TABLE[name]
    : undefined;
}
