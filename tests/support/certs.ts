/**
 * @module
 * Test certificates: a CA, and server certificates it signs for 127.0.0.1
 * and localhost, so a client can verify them by trusting the CA alone.
 */

import selfsigned from "selfsigned";
import { tempDir } from "./temp.ts";

/** A PEM certificate and key. */
export interface Pem {
  readonly cert: string;
  readonly key: string;
}

function validity(): { notBeforeDate: Date; notAfterDate: Date } {
  const now = Date.now();
  return {
    notBeforeDate: new Date(now - 60_000),
    notAfterDate: new Date(now + 24 * 3600_000),
  };
}

/** A CA certificate named `name`. */
export async function makeCa(name: string): Promise<Pem> {
  const pems = await selfsigned.generate(
    [{ name: "commonName", value: name }],
    {
      keyType: "ec",
      algorithm: "sha256",
      ...validity(),
      extensions: [
        { name: "basicConstraints", cA: true, critical: true },
        {
          name: "keyUsage",
          keyCertSign: true,
          cRLSign: true,
          digitalSignature: true,
          critical: true,
        },
      ],
    },
  );
  return { cert: pems.cert, key: pems.private };
}

/** Names a server certificate is valid for. */
export type CertNames = "localhost-and-loopback" | "localhost-only";

/** A server certificate for 127.0.0.1 and localhost (or `names`) signed by `ca`. */
export async function makeServerCert(
  ca: Pem,
  name = "server",
  names: CertNames = "localhost-and-loopback",
): Promise<Pem> {
  const loopback = names === "localhost-and-loopback"
    ? [{ type: 7 as const, ip: "127.0.0.1" }]
    : [];
  const pems = await selfsigned.generate(
    [{ name: "commonName", value: name }],
    {
      keyType: "ec",
      algorithm: "sha256",
      ...validity(),
      ca: { key: ca.key, cert: ca.cert },
      extensions: [
        { name: "basicConstraints", cA: false },
        { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
        { name: "extKeyUsage", serverAuth: true },
        {
          name: "subjectAltName",
          altNames: [{ type: 2, value: "localhost" }, ...loopback],
        },
      ],
    },
  );
  return { cert: pems.cert, key: pems.private };
}

/** A temporary directory holding `pair` as `-cert-path` reads it; removed on dispose. */
export async function writeCertDir(
  pair: { readonly cert: string; readonly key: string },
): Promise<{ readonly dir: string } & AsyncDisposable> {
  const temp = await tempDir("cert-path-");
  await Deno.writeTextFile(`${temp.path}/tls.crt`, pair.cert);
  await Deno.writeTextFile(`${temp.path}/tls.key`, pair.key);
  return { dir: temp.path, [Symbol.asyncDispose]: temp[Symbol.asyncDispose] };
}

/** How long {@linkcode statusTrusting} waits for an answer. */
const TRUSTING_DEADLINE_MS = 10_000;

/**
 * GETs `url` over a new connection that trusts `ca`'s certificate alone;
 * resolves with the status (the body discarded), or with the error's message
 * and cause when the fetch fails, e.g. on a certificate the client refuses.
 */
export async function statusTrusting(
  ca: { readonly cert: string },
  url: string,
): Promise<number | string> {
  using client = Deno.createHttpClient({
    caCerts: [ca.cert],
    poolMaxIdlePerHost: 0,
  });
  try {
    const response = await fetch(url, {
      client,
      signal: AbortSignal.timeout(TRUSTING_DEADLINE_MS),
    });
    await response.body?.cancel();
    return response.status;
  } catch (error) {
    return error instanceof Error
      ? `${error.message}: ${String(error.cause)}`
      : String(error);
  }
}
