// deno-lint-ignore-file no-console -- a terminal report: printing is its job
/**
 * @module
 * One-off measurement: connections lost while the listener's certificate is
 * reloaded. A sidecar serves HTTPS from a directory laid out as Kubernetes
 * mounts a secret; client loops open a new TLS connection for every
 * `GET /health` (trusting both certificates) while the `..data` link is
 * swapped `--swaps` times; every connection that fails is counted. Linux
 * resets the connections queued on a listening socket when it closes,
 * unless `net.ipv4.tcp_migrate_req=1` (printed in the header).
 *
 * Run from the repository root:
 *   scripts/deno run -A scripts/bench/experiments/cert_reload_gap.ts [--swaps 40] [--loops 4] [--gap-ms 400]
 */

import { parseArgs } from "node:util";
import { generateSelfSignedCertificate } from "../../../src/tls.ts";
import {
  createProcessGroup,
  freePort,
  sidecarArgs,
  sidecarCommand,
  startFastUpstream,
} from "../processes.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;
const { values } = parseArgs({
  options: {
    swaps: { type: "string", default: "40" },
    loops: { type: "string", default: "4" },
    "gap-ms": { type: "string", default: "400" },
  },
});
const swaps = Number(values.swaps);
const loops = Number(values.loops);
const gapMs = Number(values["gap-ms"]);

const pairs = [
  await generateSelfSignedCertificate(),
  await generateSelfSignedCertificate(),
];
const dir = await Deno.makeTempDir({ prefix: "cert-reload-gap-" });
let version = 0;

/** Writes `pair` as a new version and swaps `..data` to it, as the kubelet does. */
async function publish(pair: { cert: string; key: string }): Promise<void> {
  const name = `..v${version++}`;
  await Deno.mkdir(`${dir}/${name}`);
  await Deno.writeTextFile(`${dir}/${name}/tls.crt`, pair.cert);
  await Deno.writeTextFile(`${dir}/${name}/tls.key`, pair.key);
  await Deno.symlink(name, `${dir}/..data_tmp`);
  await Deno.rename(`${dir}/..data_tmp`, `${dir}/..data`);
  for (const file of ["tls.crt", "tls.key"]) {
    await Deno.lstat(`${dir}/${file}`).catch(() =>
      Deno.symlink(`..data/${file}`, `${dir}/${file}`)
    );
  }
}

async function migrateReq(): Promise<string> {
  const { stdout } = await new Deno.Command("cat", {
    args: ["/proc/sys/net/ipv4/tcp_migrate_req"],
  }).output().catch(() => ({ stdout: new Uint8Array() }));
  return new TextDecoder().decode(stdout).trim() || "unknown";
}

const REQUEST = new TextEncoder().encode(
  "GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
);

/** One connection, one request; the error's text when it failed. */
async function once(port: number): Promise<string | undefined> {
  let conn: Deno.TlsConn | undefined;
  try {
    conn = await Deno.connectTls({
      hostname: "localhost",
      port,
      caCerts: pairs.map((pair) => pair.cert),
    });
    await conn.write(REQUEST);
    const buffer = new Uint8Array(4096);
    const read = await conn.read(buffer);
    const text = new TextDecoder().decode(buffer.subarray(0, read ?? 0));
    return text.startsWith("HTTP/1.1 200") ? undefined : `answer: ${text}`;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    try {
      conn?.close();
    } catch {
      // Already closed.
    }
  }
}

const group = createProcessGroup();
try {
  await publish(pairs[0]!);
  const decode = await startFastUpstream(group, "decode");
  const port = freePort();
  const sidecar = group.start("sidecar", {
    ...sidecarCommand(
      sidecarArgs(port, decode.port, [
        "-secure-proxy=true",
        `-cert-path=${dir}`,
        "-zap-log-level=info",
      ]),
    ),
    cwd: ROOT,
  });
  await sidecar.waitForLine(
    (line) => line.includes('"starting"') || undefined,
    30_000,
  );
  let running = true;
  let connections = 0;
  const failures = new Map<string, number>();
  const clients = Array.from({ length: loops }, async () => {
    while (running) {
      const failure = await once(port);
      connections++;
      if (failure !== undefined) {
        failures.set(failure, (failures.get(failure) ?? 0) + 1);
      }
    }
  });
  let reloads = 0;
  for (let swap = 1; swap <= swaps; swap++) {
    await new Promise((resolve) => setTimeout(resolve, gapMs));
    await publish(pairs[swap % 2]!);
    reloads++;
  }
  await new Promise((resolve) => setTimeout(resolve, gapMs));
  running = false;
  await Promise.all(clients);
  const failed = [...failures.values()].reduce((a, b) => a + b, 0);
  console.log(
    `net.ipv4.tcp_migrate_req=${await migrateReq()}; ${loops} client loops, ${reloads} swaps ${gapMs} ms apart`,
  );
  console.log(
    `${connections} connections, ${failed} failed (${
      (failed / reloads).toFixed(2)
    } per swap)`,
  );
  for (const [reason, count] of failures) console.log(`  ${count}  ${reason}`);
} finally {
  await group.stopAll();
  await Deno.remove(dir, { recursive: true });
}
