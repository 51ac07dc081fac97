/**
 * @module
 * Addresses a client writes into a generation request's body for the engines
 * to dial: inside `kv_transfer_params` (NIXL's and MoRI-IO's `remote_host`
 * and `remote_hosts`, Mooncake's `remote_bootstrap_addr`, the P2P blocks'
 * `remote_host`, LMCache's `disagg_spec.receiver_host`) and SGLang's top-level
 * `bootstrap_host`. The Go sidecars pass them through, so a client reached
 * every address the header allowlist guards through the body instead. With
 * SSRF protection on, such a body is refused unless each address is one the
 * allowlist admits (see README, Security).
 */

import { ProxyError } from "../errors.ts";
import {
  FIELD_BOOTSTRAP_HOST,
  FIELD_KV_TRANSFER_PARAMS,
} from "../protocol/fields.ts";
import { parseJsonText } from "../protocol/request.ts";
import { parseIpLiteral } from "./address.ts";
import type { Allowlist, RequestOrigin } from "./allowlist.ts";

/** Keys inside `kv_transfer_params`, at any depth, whose value is a host an engine dials. */
const KV_ADDRESS_KEYS: ReadonlySet<string> = new Set([
  "remote_host",
  "remote_hosts",
  "remote_bootstrap_addr",
  "receiver_host",
]);

/**
 * Text without which no body can hold such a field: one of the keys that
 * lead to one, or a `\u` escape of a character those keys are spelled with
 * (`_`, `a` to `v`), with which a key can be written without its plain
 * text. Escapes of other characters (Go's encoder writes `<`, `>` and `&`
 * so) spell none of them.
 */
const MAY_CARRY_ADDRESS = new RegExp(
  `${FIELD_KV_TRANSFER_PARAMS}|${FIELD_BOOTSTRAP_HOST}|\\\\u00(?:5[fF]|6[1-9a-fA-F]|7[0-6])`,
);

/** The code and message of a refused body. */
const BODY_ADDRESS_FORBIDDEN_CODE = "body_address_forbidden";

/** One address-bearing member found in a body. */
interface BodyAddress {
  /** Dotted path of the member, e.g. `kv_transfer_params.remote_host`. */
  readonly field: string;
  readonly value: unknown;
}

/** Whether `text` can hold an address-bearing field at all; cheap, no parse. */
function mayCarryBodyAddress(text: string): boolean {
  return MAY_CARRY_ADDRESS.test(text);
}

/**
 * Every address-bearing member of `body`: walked without recursion, so a
 * deeply nested body costs no stack. `kv_transfer_params` counts at any
 * depth, since vLLM also takes it from `vllm_xargs` and `extra_args`.
 */
function findBodyAddresses(body: unknown): BodyAddress[] {
  const found: BodyAddress[] = [];
  const pending: { value: unknown; path: string; inKv: boolean }[] = [
    { value: body, path: "", inKv: false },
  ];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { value, path, inKv } = next;
    if (typeof value !== "object" || value === null) continue;
    if (Array.isArray(value)) {
      for (const item of value) pending.push({ value: item, path, inKv });
      continue;
    }
    for (const [key, member] of Object.entries(value)) {
      const field = path === "" ? key : `${path}.${key}`;
      const topLevel = path === "" && key === FIELD_BOOTSTRAP_HOST;
      if ((inKv && KV_ADDRESS_KEYS.has(key)) || topLevel) {
        found.push({ field, value: member });
        continue;
      }
      pending.push({
        value: member,
        path: field,
        inKv: inKv || key === FIELD_KV_TRANSFER_PARAMS,
      });
    }
  }
  return found;
}

/** `host[:port]` or `scheme://host[:port][/…]` reduced to its host; undefined when unclear. */
function hostOf(text: string): string | undefined {
  const url = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)(?:[/?#]|$)/i.exec(text);
  const authority = url === null ? text : url[1] ?? "";
  if (authority.includes("@")) return undefined;
  const bracketed = /^\[([^\]]*)\](?::\d*)?$/.exec(authority);
  if (bracketed !== null) return bracketed[1];
  const colons = authority.split(":").length - 1;
  if (colons === 1) return authority.slice(0, authority.indexOf(":"));
  return authority;
}

/**
 * Whether `value` names only addresses the allowlist admits. A name is
 * refused (the engine resolves it itself, later: it could rebind), and so is
 * any spelling of an IP but its canonical one, which other parsers may read
 * otherwise (`127.1`, `0x7f000001`, `::ffff:a.b.c.d`); `null` names nothing.
 */
async function admitsValue(
  allowlist: Allowlist,
  value: unknown,
): Promise<boolean> {
  if (value === null) return true;
  // A list names hosts (`remote_hosts`); a list inside one names nothing an
  // engine takes, and is refused without a walk a client could make deep.
  const hosts = Array.isArray(value) ? value : [value];
  for (const host of hosts) {
    if (typeof host !== "string" || !(await admitsHost(allowlist, host))) {
      return false;
    }
  }
  return true;
}

/** Whether `value`, one host as an engine reads it, is an address the allowlist admits. */
async function admitsHost(
  allowlist: Allowlist,
  value: string,
): Promise<boolean> {
  const host = hostOf(value)?.toLowerCase();
  if (host === undefined || host === "") return false;
  const address = parseIpLiteral(host);
  if (address === undefined || address.text !== host) return false;
  return await allowlist.admitsAddress(address);
}

/** Longest value or field path a log line or error message quotes from the body. */
const DESCRIBED_CHARS = 256;

/** The address-bearing value as logged: what the client wrote, cut short. */
function describeValue(value: unknown): string {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text === undefined ? String(value) : text.slice(0, DESCRIBED_CHARS);
}

/**
 * The field's dotted path as logged and answered, its end kept: the keys
 * leading to it are the client's, and a body of long keys would otherwise
 * write its own size into two log lines and the answer.
 */
function describeField(field: string): string {
  return field.length <= DESCRIBED_CHARS
    ? field
    : `…${field.slice(-(DESCRIBED_CHARS - 1))}`;
}

/**
 * Refuses, with a 403 `ProxyError` after an error line naming the field and
 * the client, a body that tells the engines to dial an address the allowlist
 * does not admit; resolves when there is none. Free when protection is off,
 * and parses only a body whose text can carry such a field.
 */
export async function admitBodyAddresses(
  allowlist: Allowlist | undefined,
  text: string,
  origin: RequestOrigin,
): Promise<void> {
  if (allowlist?.enabled !== true || !mayCarryBodyAddress(text)) return;
  // vLLM's parser (Python's json) takes NaN and Infinity, which JSON.parse
  // refuses: a body the check cannot read must not reach it (a 400).
  const body = parseJsonText(text);
  for (const found of findBodyAddresses(body)) {
    const { value } = found;
    const field = describeField(found.field);
    if (await admitsValue(allowlist, value)) {
      origin.log.debug("SSRF protection: address in request body allowed", {
        field,
        value: describeValue(value),
      });
      continue;
    }
    origin.log.error(
      "SSRF protection: address in request body not in allowlist",
      {
        field,
        value: describeValue(value),
        clientIP: origin.clientIp ?? "",
        userAgent: origin.userAgent ?? "",
        requestPath: origin.path,
      },
    );
    throw new ProxyError(
      403,
      `Forbidden: ${field} names an address not allowed by SSRF protection`,
      { code: BODY_ADDRESS_FORBIDDEN_CODE },
    );
  }
}
