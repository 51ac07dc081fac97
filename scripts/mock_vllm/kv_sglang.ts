/**
 * SGLang PD disaggregation (vllm-wire.md §3.8, §6; reference spec §3.6,
 * delta §3.4). The proxy sends the same body, plus `bootstrap_host`,
 * `bootstrap_port` and `bootstrap_room`, to a prefill server and a decode
 * server at once, and answers the client with the decode's response.
 *
 * Which side a mock plays comes from its `kv_role` (SGLang's
 * `--disaggregation-mode`): `kv_producer` is a prefill server, `kv_consumer`
 * a decode server, `kv_both` a server without disaggregation that ignores
 * the bootstrap fields.
 *
 * The meeting, modelled on SGLang's bootstrap server (which runs on the
 * prefill host at `bootstrap_port`):
 * - the decode joins `bootstrap_room` at `bootstrap_host:bootstrap_port`
 *   (the mock's side channel, `POST /_mock/sglang/bootstrap`) and waits
 *   there for the KV, up to `kvWaitTimeoutMs` (SGLang's
 *   `SGLANG_DISAGGREGATION_WAITING_TIMEOUT`);
 * - the prefill waits for a decode to join its room, up to the same
 *   timeout (`SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT`), computes, then
 *   hands the KV over;
 * - the decode checks that its body equals the prefill's (the legs must be
 *   identical) and then decodes.
 *
 * Refused: a prefill or decode without valid bootstrap fields (400, SGLang
 * asserts `bootstrap_room` is set), a room a prefill already uses (400), a
 * second decode on a room (its join answers 409). A decode whose room never
 * gets a prefill, or whose prefill differs, fails with 500; SGLang has no
 * recompute policy, so `kvLoadFailurePolicy` does not apply.
 *
 * @module
 */

import type { Job } from "./engine.ts";
import { VllmError } from "./errors.ts";
import {
  failedLoad,
  type KvConnector,
  type KvContext,
  type KvLoad,
  NO_KV_HOOKS,
  NOTHING_LOADED,
  pulledLoad,
  rememberId,
  roleOfKvRole,
  type SideChannelAnswer,
} from "./kv_connector.ts";
import {
  readPeerRequest,
  refusal,
  refusalOfWait,
  tokensAnswer,
} from "./side_channel_answers.ts";
import { SGLANG_BOOTSTRAP_PATH } from "./kv_wire.ts";
import { isRecord } from "./parse_request.ts";
import { countOf, isPort, peerBaseUrl, pullFromPeer } from "./peer.ts";
import {
  createRendezvous,
  type Rendezvous,
  type WaitOutcome,
} from "./rendezvous.ts";

/** The three bootstrap fields, validated; `room` keeps the exact digits sent. */
interface Bootstrap {
  readonly host: string;
  readonly port: number;
  readonly room: string;
}

/** What a finished prefill leaves in its room. */
interface PrefilledRoom {
  readonly body: string;
  readonly numTokens: number;
}

const SOURCE = "disaggregation/decode.py:212";

/** Rooms one prefill server knows: who joined, what was prefilled, what is taken. */
interface Rooms {
  readonly ctx: KvContext;
  /** Published by a decode's join; the prefill waits for it. */
  readonly joined: Rendezvous<true>;
  /** Published by the prefill once computed; the decode waits for it. */
  readonly prefilled: Rendezvous<PrefilledRoom>;
  readonly usedRooms: Set<string>;
  readonly joinedRooms: Set<string>;
}

/** The `sglang` connector. */
export function createSglangConnector(ctx: KvContext): KvConnector {
  const rooms: Rooms = {
    ctx,
    joined: createRendezvous(),
    prefilled: createRendezvous(),
    usedRooms: new Set(),
    joinedRooms: new Set(),
  };
  return {
    ...NO_KV_HOOKS,
    name: "sglang",
    roleOf: () => roleOfKvRole(ctx.kvRole),
    admit(job) {
      if (ctx.kvRole !== "kv_both") admit(rooms, job);
    },
    load(job) {
      if (job.role === "decode") return joinRoom(job);
      if (job.role !== "prefill") return Promise.resolve(NOTHING_LOADED);
      return awaitDecode(rooms, job, readBootstrap(job).room);
    },
    computed(job) {
      if (job.role === "prefill") sendKv(rooms, job);
      return Promise.resolve();
    },
    serveSideChannel(request, path) {
      if (path !== SGLANG_BOOTSTRAP_PATH || request.method !== "POST") {
        return undefined;
      }
      return request.text().then((text) =>
        serveJoin(rooms, text, request.signal)
      );
    },
    close() {
      rooms.joined.close();
      rooms.prefilled.close();
    },
  };
}

/** Both sides need valid bootstrap fields; a prefill also takes its room. */
function admit(rooms: Rooms, job: Job): void {
  const { room } = readBootstrap(job);
  if (job.role !== "prefill") return;
  if (rooms.usedRooms.has(room)) {
    throw new VllmError(
      400,
      `bootstrap_room ${room} is already in use by another prefill`,
      { param: "bootstrap_room" },
    );
  }
  // Taken at admission: a streaming prefill loads later, and a twin must not slip in meanwhile.
  rememberId(rooms.usedRooms, room);
}

/** The prefill side: wait for a decode to join, fail the room if this prefill ends early. */
async function awaitDecode(
  rooms: Rooms,
  job: Job,
  room: string,
): Promise<KvLoad> {
  const { prefilled } = rooms;
  const waitMs = rooms.ctx.knobs.kvWaitTimeoutMs;
  job.signal.addEventListener(
    "abort",
    () => prefilled.abandon(room, "the prefill was aborted"),
    { once: true },
  );
  const outcome = await rooms.joined.wait(room, waitMs, job.signal);
  if (outcome.ok) return NOTHING_LOADED;
  const reason = outcome.status === 504
    ? `no decode joined bootstrap_room ${room} within ${waitMs} ms`
    : outcome.reason;
  prefilled.fail(room, 410, `the prefill gave up: ${reason}`);
  return failedLoad(job, { remoteRequestId: room, reason }, {
    source: "disaggregation/prefill.py:188",
    alwaysFail: true,
    message: `KV transfer failed for bootstrap_room ${room}: ${reason}`,
  });
}

/** The prefill computed its prompt: hand the KV to the room's decode. */
function sendKv(rooms: Rooms, job: Job): void {
  const { room } = readBootstrap(job);
  rooms.prefilled.publish(room, {
    body: canonicalJson(job.req.body),
    numTokens: job.req.promptTokens,
  });
  job.record.kvHandOff = {
    connector: "sglang",
    key: room,
    numTokens: job.req.promptTokens,
  };
  rooms.ctx.logger.write(
    "INFO",
    "disaggregation/prefill.py:341",
    `Sent KV of request ${job.meta.id} (${job.req.promptTokens} tokens) to the decode of bootstrap_room ${room}`,
  );
}

/** The side channel: a decode joins its room and waits for the prefill's KV. */
async function serveJoin(
  rooms: Rooms,
  text: string,
  signal: AbortSignal,
): Promise<SideChannelAnswer> {
  const join = readPeerRequest(text);
  const room = join.bootstrap_room;
  if (typeof room !== "string" || !/^\d+$/.test(room)) {
    return refusal(400, "invalid bootstrap join", room);
  }
  if (rooms.joinedRooms.has(room)) {
    return refusal(409, `bootstrap_room ${room} already has a decode`, room);
  }
  rememberId(rooms.joinedRooms, room);
  rooms.joined.publish(room, true);
  const waitMs = countOf(join, "wait_ms");
  const outcome = await waitForPrefill(rooms, room, { waitMs, signal });
  if (!outcome.ok) {
    // A prefill arriving after the decode gave up must not wait for it.
    rooms.joined.fail(room, 410, "the decode gave up");
    return refusalOfWait(
      outcome,
      room,
      `no prefill for bootstrap_room ${room} within ${waitMs} ms`,
    );
  }
  rooms.prefilled.delete(room);
  if (outcome.value.body !== join.body) {
    return refusal(
      409,
      "the prefill and decode bodies differ (both legs must carry the same body)",
      room,
    );
  }
  return tokensAnswer(outcome.value.numTokens, room);
}

/** Waits for the room's prefill, logging when the decode joins and when it leaves early. */
function waitForPrefill(
  rooms: Rooms,
  room: string,
  options: { readonly waitMs: number; readonly signal: AbortSignal },
): Promise<WaitOutcome<PrefilledRoom>> {
  const { logger } = rooms.ctx;
  logger.write(
    "INFO",
    "disaggregation/bootstrap_server.py:97",
    `Decode joined bootstrap_room ${room}; waiting up to ${options.waitMs} ms for its KV`,
  );
  return rooms.prefilled.wait(room, options.waitMs, options.signal).catch(
    (reason: unknown) => {
      logger.write(
        "INFO",
        "disaggregation/bootstrap_server.py:131",
        `Decode left bootstrap_room ${room} before its KV came`,
      );
      throw reason;
    },
  );
}

/** The decode side: join the room at the prefill's bootstrap server and wait for the KV. */
async function joinRoom(job: Job): Promise<KvLoad> {
  const bootstrap = readBootstrap(job);
  const fields = {
    remoteRequestId: bootstrap.room,
    remoteHost: bootstrap.host,
    remotePort: bootstrap.port,
  };
  const options = { source: SOURCE, alwaysFail: true };
  const baseUrl = peerBaseUrl(bootstrap.host, bootstrap.port);
  if (baseUrl === undefined) {
    const reason = `invalid bootstrap address ${
      JSON.stringify(bootstrap.host)
    }`;
    return failedLoad(job, { ...fields, reason }, {
      ...options,
      message: reason,
    });
  }
  const answer = await pullFromPeer(`${baseUrl}${SGLANG_BOOTSTRAP_PATH}`, {
    bootstrap_room: bootstrap.room,
    body: canonicalJson(job.req.body),
    wait_ms: job.engine.knobs.kvWaitTimeoutMs,
  }, job.signal);
  if (!answer.ok) {
    const { reason } = answer;
    return failedLoad(job, { ...fields, reason }, {
      ...options,
      message:
        `KV transfer failed for bootstrap_room ${bootstrap.room}: ${reason}`,
    });
  }
  const { numTokens } = answer;
  job.engine.logger.write(
    "DEBUG",
    SOURCE,
    `Received KV of bootstrap_room ${bootstrap.room} (${numTokens} tokens) for request ${job.meta.id}`,
  );
  return pulledLoad(job, fields, numTokens);
}

/** Reads and validates the bootstrap fields; throws 400 like SGLang's assertion. */
function readBootstrap(job: Job): Bootstrap {
  const body = job.req.body;
  for (const key of ["bootstrap_host", "bootstrap_port", "bootstrap_room"]) {
    if (body[key] === undefined || body[key] === null) {
      throw new VllmError(400, `${key} should not be None`, { param: key });
    }
  }
  const host = body.bootstrap_host;
  if (typeof host !== "string" || host === "") {
    throw invalid("bootstrap_host", "a non-empty string");
  }
  if (!isPort(body.bootstrap_port)) {
    throw invalid("bootstrap_port", "an integer port 1..65535");
  }
  return { host, port: body.bootstrap_port, room: roomDigits(job) };
}

/**
 * The room as the exact integer sent. Rooms are int64 (`[0, 2^63-1]`), past
 * what a JS number holds exactly, so the digits come from the raw body.
 */
function roomDigits(job: Job): string {
  const value = job.req.body.bootstrap_room;
  const raw = /"bootstrap_room"\s*:\s*(\d+)\s*[,}]/.exec(job.record.bodyText)
    ?.[1];
  const ok = typeof value === "number" && Number.isInteger(value) &&
    value >= 0 && raw !== undefined && Number(raw) === value &&
    BigInt(raw) <= 2n ** 63n - 1n;
  if (!ok || raw === undefined) {
    throw invalid("bootstrap_room", "an integer in [0, 2^63-1]");
  }
  return raw;
}

function invalid(key: string, expected: string): VllmError {
  return new VllmError(400, `${key} must be ${expected}`, { param: key });
}

/** JSON with keys sorted at every level, so two legs compare equal whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isRecord(value)) return value;
  return Object.fromEntries(
    Object.keys(value).sort().map((key) => [key, sortKeys(value[key])]),
  );
}
