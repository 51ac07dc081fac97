/**
 * @module
 * The listener's certificate: `tls.crt` and `tls.key` from `-cert-path`, or a
 * self-signed one made at start (as the Go sidecar does when no path is set).
 */

import selfsigned from "selfsigned";
import { errorMessage } from "./errors.ts";

/** A PEM certificate chain and its private key. */
export interface TlsCertificate {
  readonly cert: string;
  readonly key: string;
}

/**
 * Throws when `pair` is not a certificate chain and its own private key.
 * Found only by the listener, a broken pair read as a failure to bind: "cannot
 * listen on IPv6" then "Cannot listen on port", naming neither file. A
 * client with the pair as its certificate parses and matches it as the
 * listener does (rustls' single-certificate check), with no socket.
 */
function checkPair(pair: TlsCertificate): void {
  Deno.createHttpClient({ cert: pair.cert, key: pair.key }).close();
}

/**
 * Reads `<dir>/tls.crt` and `<dir>/tls.key` and checks they are a matching
 * pair; throws naming both files.
 */
export async function loadCertificate(dir: string): Promise<TlsCertificate> {
  const base = dir.endsWith("/") ? dir.slice(0, -1) : dir;
  const certFile = `${base}/tls.crt`;
  const keyFile = `${base}/tls.key`;
  try {
    const [cert, key] = await Promise.all([
      Deno.readTextFile(certFile),
      Deno.readTextFile(keyFile),
    ]);
    checkPair({ cert, key });
    return { cert, key };
  } catch (error) {
    const reason = errorMessage(error);
    throw new Error(
      `Cannot load TLS key pair from cert "${certFile}" and key "${keyFile}": ${reason}`,
      { cause: error },
    );
  }
}

const TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000;

/**
 * Makes a self-signed certificate. The Go sidecar uses RSA 4096 with no
 * names; an ECDSA P-256 key takes milliseconds instead of seconds at every
 * start, and the loopback names let a local client verify it if it trusts it.
 */
export async function generateSelfSignedCertificate(): Promise<TlsCertificate> {
  const now = Date.now();
  const pems = await selfsigned.generate(
    [{ name: "organizationName", value: "llm-d Routing Sidecar" }],
    {
      keyType: "ec",
      algorithm: "sha256",
      notBeforeDate: new Date(now),
      notAfterDate: new Date(now + TEN_YEARS_MS),
      extensions: [
        { name: "basicConstraints", cA: false },
        { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
        { name: "extKeyUsage", serverAuth: true },
        {
          name: "subjectAltName",
          altNames: [
            { type: 2, value: "localhost" },
            { type: 7, ip: "127.0.0.1" },
            { type: 7, ip: "::1" },
          ],
        },
      ],
    },
  );
  return { cert: pems.cert, key: pems.private };
}
