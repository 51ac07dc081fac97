/**
 * @module
 * nginx as a plain reverse proxy in front of the decoder, the reference the
 * sidecar's passthrough is compared with. Configured like the sidecar: loopback
 * only, HTTP/1.1 keep-alive to the upstream, request and response bodies
 * streamed (no buffering), no access log.
 */

import {
  failure,
  type ProcessGroup,
  type Started,
  waitForHttp,
} from "./processes.ts";

/** Options of the generated configuration. */
export interface NginxConfigOptions {
  /** Directory for the pid file and temp paths. */
  readonly prefix: string;
  readonly port: number;
  readonly upstreamPort: number;
  /** `worker_processes`: 1 (the sidecar runs JavaScript on one thread) or "auto". */
  readonly workers: string;
}

/** A running nginx. */
export interface RunningNginx {
  readonly process: Started;
  readonly port: number;
  readonly version: string;
  readonly workers: string;
}

/** Builds nginx.conf for `options`. */
export function buildNginxConfig(options: NginxConfigOptions): string {
  const { prefix } = options;
  return `worker_processes ${options.workers};
daemon off;
master_process on;
pid ${prefix}/nginx.pid;
error_log stderr warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  keepalive_requests 1000000;
  upstream decoder {
    server 127.0.0.1:${options.upstreamPort};
    keepalive 1024;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${options.port};
    location / {
      proxy_pass http://decoder;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`;
}

/** Starts nginx in the foreground with a generated configuration in `prefix` (created when missing). */
export async function startNginx(
  group: ProcessGroup,
  options: NginxConfigOptions & { readonly version: string },
): Promise<RunningNginx> {
  await Deno.mkdir(options.prefix, { recursive: true });
  const config = `${options.prefix}/nginx.conf`;
  await Deno.writeTextFile(config, buildNginxConfig(options));
  const process = group.start("nginx", {
    cmd: "nginx",
    // -e: log startup errors to stderr, not to the distribution's log file.
    args: ["-p", options.prefix, "-c", config, "-e", "stderr"],
  });
  try {
    await Promise.race([
      waitForHttp(`http://127.0.0.1:${options.port}/health`, 10_000),
      process.status.then(() => {
        throw failure(process, "exited before it was listening");
      }),
    ]);
  } catch (error) {
    await group.stop(process);
    throw error;
  }
  return {
    process,
    port: options.port,
    version: options.version,
    workers: options.workers,
  };
}
