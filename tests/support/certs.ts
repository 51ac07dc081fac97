/**
 * @module
 * Test certificates: a CA, and server certificates it signs for 127.0.0.1
 * and localhost, so a client can verify them by trusting the CA alone.
 */

import selfsigned from "selfsigned";

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

/** A server certificate for 127.0.0.1 and localhost signed by `ca`. */
export async function makeServerCert(ca: Pem, name = "server"): Promise<Pem> {
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
          altNames: [{ type: 2, value: "localhost" }, {
            type: 7,
            ip: "127.0.0.1",
          }],
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
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/tls.crt`, pair.cert);
  await Deno.writeTextFile(`${dir}/tls.key`, pair.key);
  return {
    dir,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}
