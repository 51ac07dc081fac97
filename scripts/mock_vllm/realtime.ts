/**
 * vLLM's realtime transcription WebSocket, `/v1/realtime` (vLLM >= 0.16,
 * PR #33187): the server opens with `session.created`; the client sends
 * `session.update`, `input_audio_buffer.append` (base64 PCM16) and
 * `input_audio_buffer.commit`; a commit after appends is answered with
 * `transcription.delta` and `transcription.done`, whose text says how many
 * decoded audio bytes the mock received. Events vLLM cannot parse are
 * answered with an `error` event. A plain GET (no upgrade) is vLLM's 404.
 *
 * Test aids, not vLLM: a binary message is echoed back unchanged, and the
 * event `{"type": "mock.close", "code", "reason"}` makes the mock close the
 * session with that code. The first subprotocol offered is accepted.
 *
 * @module
 */

import type { WebSocketMessage, WebSocketRecord } from "./types.ts";

/** Path of the realtime endpoint. */
export const REALTIME_PATH = "/v1/realtime";

/** Whether `request` asks to be upgraded to a WebSocket (RFC 6455 §4.2.1). */
export function isWebSocketUpgrade(request: Request): boolean {
  const upgrade = request.headers.get("upgrade")?.toLowerCase();
  const connection = request.headers.get("connection")?.toLowerCase() ?? "";
  return request.method === "GET" && upgrade === "websocket" &&
    connection.split(",").some((token) => token.trim() === "upgrade");
}

/** The subprotocols a handshake offers, in order. */
function offeredProtocols(request: Request): string[] {
  const header = request.headers.get("sec-websocket-protocol") ?? "";
  return header.split(",").map((name) => name.trim()).filter((name) =>
    name !== ""
  );
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Decoded length of base64 `text`, or undefined when it is not base64. */
function decodedLength(text: string): number | undefined {
  try {
    return atob(text).length;
  } catch {
    return undefined;
  }
}

/** A session's audio buffer and how it answers each event. */
function createSession(
  socket: WebSocket,
  model: string,
  record: WebSocketRecord,
) {
  let buffered = 0;
  let total = 0;
  const send = (event: Record<string, unknown>) =>
    socket.send(JSON.stringify(event));
  const error = (message: string, code: string) =>
    send({ type: "error", error: message, code });
  function commit(final: boolean): void {
    if (buffered === 0) return;
    total += buffered;
    send({ type: "transcription.delta", delta: `${buffered} bytes` });
    send({
      type: "transcription.done",
      text: `received ${buffered} bytes of audio`,
      final,
      usage: { prompt_tokens: buffered, completion_tokens: 4 },
      total_bytes: total,
    });
    buffered = 0;
  }
  function onEvent(event: Record<string, unknown>): void {
    switch (event.type) {
      case "session.update":
        if (event.model !== undefined && event.model !== model) {
          error(
            `The model \`${String(event.model)}\` does not exist.`,
            "model_not_found",
          );
        }
        return;
      case "input_audio_buffer.append": {
        const length = typeof event.audio === "string"
          ? decodedLength(event.audio)
          : undefined;
        if (length === undefined) {
          error("audio must be base64-encoded PCM16", "invalid_audio");
          return;
        }
        buffered += length;
        return;
      }
      case "input_audio_buffer.commit":
        commit(event.final === true);
        return;
      case "mock.close":
        socket.close(
          typeof event.code === "number" ? event.code : 1000,
          typeof event.reason === "string" ? event.reason : "",
        );
        return;
      default:
        error(`Unknown event type: ${String(event.type)}`, "unknown_event");
    }
  }
  return {
    open(): void {
      send({
        type: "session.created",
        id: `sess-${crypto.randomUUID().replaceAll("-", "")}`,
        created: Math.floor(Date.now() / 1000),
      });
    },
    message(data: unknown): void {
      if (typeof data !== "string") {
        const bytes = new Uint8Array(data as ArrayBuffer);
        record.received.push({ kind: "binary", bytes: bytes.length });
        socket.send(bytes);
        return;
      }
      record.received.push({ kind: "text", text: data });
      let event: unknown;
      try {
        event = JSON.parse(data);
      } catch {
        error("Invalid JSON", "invalid_json");
        return;
      }
      if (!isRecord(event)) {
        error("An event must be a JSON object", "invalid_event");
        return;
      }
      onEvent(event);
    },
  };
}

/**
 * Upgrades `request` and runs a realtime session on it; `record` collects
 * what arrived and how the session closed, and `closed` resolves then.
 */
export function serveRealtime(
  request: Request,
  model: string,
): { response: Response; record: WebSocketRecord; closed: Promise<void> } {
  const protocol = offeredProtocols(request)[0];
  const { socket, response } = Deno.upgradeWebSocket(
    request,
    protocol === undefined ? {} : { protocol },
  );
  socket.binaryType = "arraybuffer";
  const received: WebSocketMessage[] = [];
  const record: WebSocketRecord = {
    protocol: protocol ?? "",
    received,
    closeCode: undefined,
    closeReason: undefined,
  };
  const session = createSession(socket, model, record);
  const { promise: closed, resolve } = Promise.withResolvers<void>();
  socket.onopen = () => session.open();
  socket.onmessage = (event) => session.message(event.data);
  socket.onclose = (event) => {
    record.closeCode = event.code;
    record.closeReason = event.reason;
    resolve();
  };
  return { response, record, closed };
}
