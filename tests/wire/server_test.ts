import assert from "node:assert/strict";
import { chatBody, createHarness, type Harness } from "../support/harness.ts";
import { startSilentUpstream } from "../support/stub_upstream.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** How long a read may wait before the test fails: a hang guard only. */
const READ_GUARD_MS = 2000;

/** One HTTP response as it came off the socket. */
interface RawResponse {
  readonly status: number;
  readonly reason: string;
  /** Field pairs in arrival order, names lower-cased. */
  readonly fields: readonly [string, string][];
  /** The body without its framing. */
  readonly body: string;
}

/** The first value of field `name` in `fields`, or undefined. */
function fieldOf(
  fields: readonly [string, string][],
  name: string,
): string | undefined {
  return fields.find(([key]) => key === name)?.[1];
}

/** The first value of field `name` of `response`, or undefined. */
function field(response: RawResponse, name: string): string | undefined {
  return fieldOf(response.fields, name);
}

function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}

/**
 * A client connection that writes raw bytes and reads raw HTTP/1.1
 * responses, so tests see exactly what the wire engine sent.
 */
class RawClient {
  readonly conn: Deno.TcpConn;
  #buffer: Uint8Array = new Uint8Array(0);
  #eof = false;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  /** Connects to the sidecar served at `base`. */
  static async open(base: string): Promise<RawClient> {
    const url = new URL(base);
    const conn = await Deno.connect({
      hostname: url.hostname,
      port: Number(url.port),
    });
    return new RawClient(conn);
  }

  /** Writes `data` whole. */
  async send(data: string | Uint8Array): Promise<void> {
    let bytes = typeof data === "string" ? encoder.encode(data) : data;
    while (bytes.length > 0) {
      bytes = bytes.subarray(await this.conn.write(bytes));
    }
  }

  /**
   * Reads more bytes; false at end of stream. A server that sends nothing
   * for READ_GUARD_MS fails the test instead of hanging it.
   */
  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = new Uint8Array(65536);
    const read = await within(
      this.conn.read(chunk),
      READ_GUARD_MS,
      `a read from the sidecar (have ${
        JSON.stringify(decoder.decode(this.#buffer))
      })`,
    );
    if (read === null) {
      this.#eof = true;
      return false;
    }
    this.#buffer = concatBytes([this.#buffer, chunk.subarray(0, read)]);
    return true;
  }

  #take(length: number): Uint8Array {
    const bytes = this.#buffer.slice(0, length);
    this.#buffer = this.#buffer.slice(length);
    return bytes;
  }

  /** Reads through the ASCII `delimiter`; returns what came before it. */
  async #until(delimiter: string): Promise<string> {
    const wanted = encoder.encode(delimiter);
    let from = 0;
    for (;;) {
      for (let i = from; i + wanted.length <= this.#buffer.length; i++) {
        if (wanted.every((byte, j) => this.#buffer[i + j] === byte)) {
          const before = decoder.decode(this.#take(i));
          this.#take(wanted.length);
          return before;
        }
      }
      from = Math.max(0, this.#buffer.length - wanted.length + 1);
      if (!(await this.#fill())) {
        throw new Error(
          `connection closed before ${JSON.stringify(delimiter)}; got ${
            JSON.stringify(decoder.decode(this.#buffer))
          }`,
        );
      }
    }
  }

  async #exactly(length: number): Promise<Uint8Array> {
    while (this.#buffer.length < length) {
      if (!(await this.#fill())) {
        throw new Error(`connection closed ${length} bytes into a body`);
      }
    }
    return this.#take(length);
  }

  async #chunkedBody(): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for (;;) {
      const sizeLine = await this.#until("\r\n");
      assert.match(sizeLine, /^[0-9a-fA-F]+$/, "bad chunk-size line");
      const size = parseInt(sizeLine, 16);
      if (size === 0) break;
      parts.push(await this.#exactly(size));
      assert.equal(await this.#until("\r\n"), "", "chunk longer than its size");
    }
    // Trailer fields, up to the empty line.
    while (await this.#until("\r\n") !== "");
    return concatBytes(parts);
  }

  /**
   * Reads one response (an interim 1xx one included) to a request made with
   * `method`, honouring Content-Length, chunked framing or close.
   */
  async response(method = "GET"): Promise<RawResponse> {
    const head = await this.#until("\r\n\r\n");
    const [statusLine = "", ...lines] = head.split("\r\n");
    const match = /^HTTP\/1\.1 (\d{3}) ?(.*)$/.exec(statusLine);
    assert.ok(match, `not an HTTP/1.1 status line: ${statusLine}`);
    const status = Number(match[1]);
    const fields = lines.map((line): [string, string] => {
      const colon = line.indexOf(":");
      return [
        line.slice(0, colon).toLowerCase(),
        line.slice(colon + 1).trim(),
      ];
    });
    const base = { status, reason: match[2] ?? "", fields };
    const length = fieldOf(fields, "content-length");
    let body: Uint8Array;
    if (
      method === "HEAD" || status < 200 || status === 204 || status === 304
    ) {
      body = new Uint8Array(0);
    } else if (fieldOf(fields, "transfer-encoding") === "chunked") {
      body = await this.#chunkedBody();
    } else if (length !== undefined) {
      body = await this.#exactly(Number(length));
    } else {
      while (await this.#fill());
      body = this.#take(this.#buffer.length);
    }
    return { ...base, body: decoder.decode(body) };
  }

  /** Resolves true when the server closes the connection with nothing more sent. */
  async closedByServer(): Promise<boolean> {
    if (this.#buffer.length > 0) return false;
    try {
      return !(await this.#fill());
    } catch (error) {
      // A reset is a close too.
      if (error instanceof Deno.errors.ConnectionReset) return true;
      throw error;
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Fails with `what` if `promise` has not settled within `ms`: a guard against hangs, not a wait. */
async function within<T>(
  promise: PromiseLike<T>,
  ms: number,
  what: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A request head (plus `body`) with a Content-Length when there is a body. */
function rawRequest(
  method: string,
  target: string,
  options: {
    headers?: Record<string, string>;
    body?: string;
    version?: string;
  } = {},
): string {
  const { body, version = "1.1" } = options;
  let head = `${method} ${target} HTTP/${version}\r\n`;
  if (version === "1.1") head += "host: sidecar.test\r\n";
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    head += `${name}: ${value}\r\n`;
  }
  if (body !== undefined) {
    head += `content-length: ${encoder.encode(body).length}\r\n`;
  }
  return `${head}\r\n${body ?? ""}`;
}

/** A P/D chat request naming the harness' prefill mock. */
function pdRequest(h: Harness, body: string, version = "1.1"): string {
  return rawRequest("POST", "/v1/chat/completions", {
    headers: {
      "content-type": "application/json",
      "x-prefiller-host-port": h.prefillerHeader,
    },
    body,
    version,
  });
}

/** A wire harness a test shuts down itself; disposal at the end of scope then adds nothing. */
async function createStoppableHarness(): Promise<
  { h: Harness; shutdown(): Promise<void> } & AsyncDisposable
> {
  const h = await createHarness({ engine: "wire" });
  let closing: Promise<void> | undefined;
  const shutdown = () => closing ??= Promise.resolve(h[Symbol.asyncDispose]());
  return {
    h,
    shutdown,
    // A shutdown that hangs has already failed the test: do not hang with it.
    [Symbol.asyncDispose]: () =>
      within(shutdown(), READ_GUARD_MS, "harness shutdown").catch(() => {}),
  };
}

const TOKENIZE_BODY = '{"prompt": "Hello world"}';

Deno.test("wire server answers several requests on one keep-alive connection", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(rawRequest("GET", "/health"));
  const health = await client.response();
  assert.equal(health.status, 200);
  assert.equal(field(health, "connection"), undefined);
  await client.send(rawRequest("GET", "/v1/models"));
  const models = await client.response();
  assert.equal(models.status, 200);
  assert.equal(JSON.parse(models.body).object, "list");
  await client.send(pdRequest(h, chatBody()));
  const chat = await client.response("POST");
  assert.equal(chat.status, 200);
  assert.equal(JSON.parse(chat.body).object, "chat.completion");
  await client.send(
    rawRequest("POST", "/tokenize", {
      headers: { "content-type": "application/json" },
      body: TOKENIZE_BODY,
    }),
  );
  const tokens = await client.response("POST");
  assert.equal(tokens.status, 200);
  assert.ok(JSON.parse(tokens.body).count > 0);
  assert.deepEqual(
    h.decode.requests.map((r) => `${r.method} ${r.path}`),
    ["GET /v1/models", "POST /v1/chat/completions", "POST /tokenize"],
  );
  assert.equal(h.prefill.requests.length, 1);
});

Deno.test("wire server answers two pipelined requests in order", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(
    rawRequest("POST", "/tokenize", {
      headers: { "content-type": "application/json" },
      body: TOKENIZE_BODY,
    }) + rawRequest("GET", "/v1/models"),
  );
  const first = await client.response("POST");
  assert.equal(first.status, 200);
  assert.ok(JSON.parse(first.body).count > 0, first.body);
  const second = await client.response();
  assert.equal(second.status, 200);
  assert.equal(JSON.parse(second.body).object, "list");
  assert.deepEqual(
    h.decode.requests.map((r) => `${r.method} ${r.path} ${r.bodyText}`),
    [`POST /tokenize ${TOKENIZE_BODY}`, "GET /v1/models "],
  );
});

Deno.test("wire server answers a pipelined request after a P/D request in order", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(
    pdRequest(h, chatBody()) + rawRequest("HEAD", "/health") +
      rawRequest("GET", "/v1/models"),
  );
  const chat = await client.response("POST");
  assert.equal(JSON.parse(chat.body).object, "chat.completion");
  const health = await client.response("HEAD");
  assert.equal(health.status, 200);
  const models = await client.response();
  assert.equal(JSON.parse(models.body).object, "list");
});

Deno.test("wire server relays a chunked request body on passthrough intact", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  const body = '{"prompt": "Hello chunked world"}';
  const parts = [body.slice(0, 7), body.slice(7, 20), body.slice(20)];
  const chunks = parts.map((part, i) =>
    `${part.length.toString(16)}${i === 1 ? ";ext=1" : ""}\r\n${part}\r\n`
  );
  await client.send(
    "POST /tokenize HTTP/1.1\r\nhost: sidecar.test\r\n" +
      "content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n" +
      chunks[0]!.slice(0, 5),
  );
  await client.send(chunks[0]!.slice(5) + chunks[1]!);
  await client.send(`${chunks[2]!}0\r\nx-trailer: t\r\n\r\n`);
  const response = await client.response("POST");
  assert.equal(response.status, 200);
  assert.ok(JSON.parse(response.body).count > 0, response.body);
  assert.equal(h.decode.requests[0]?.bodyText, body);
  // The connection is still in step: the next request is answered.
  await client.send(rawRequest("GET", "/health"));
  assert.equal((await client.response()).status, 200);
});

Deno.test("wire server relays a large Content-Length body that arrives after the head", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  const body = JSON.stringify({ prompt: "word ".repeat(60_000) });
  const request = rawRequest("POST", "/tokenize", {
    headers: { "content-type": "application/json" },
    body,
  });
  const headEnd = request.indexOf("\r\n\r\n") + 4;
  await client.send(request.slice(0, headEnd));
  for (let at = headEnd; at < request.length; at += 50_000) {
    await client.send(request.slice(at, at + 50_000));
  }
  const response = await client.response("POST");
  assert.equal(response.status, 200);
  assert.equal(h.decode.requests[0]?.bodyText, body);
  await client.send(rawRequest("GET", "/health"));
  assert.equal((await client.response()).status, 200);
});

Deno.test("wire server reads a chunked P/D request body and sends its JSON to both legs", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  const body = chatBody({ max_tokens: 5 });
  await client.send(
    "POST /v1/chat/completions HTTP/1.1\r\nhost: sidecar.test\r\n" +
      `content-type: application/json\r\nx-prefiller-host-port: ${h.prefillerHeader}\r\n` +
      "transfer-encoding: chunked\r\n\r\n" +
      `5\r\n${body.slice(0, 5)}\r\n` +
      `${(body.length - 5).toString(16)}\r\n${body.slice(5)}\r\n0\r\n\r\n`,
  );
  const response = await client.response("POST");
  assert.equal(response.status, 200, response.body);
  assert.equal(JSON.parse(response.body).object, "chat.completion");
  const prefill = h.prefill.requests[0]?.body as Record<string, unknown>;
  assert.deepEqual(prefill.messages, JSON.parse(body).messages);
  const decode = h.decode.requests[0]?.body as Record<string, unknown>;
  assert.equal(decode.max_tokens, 5);
});

Deno.test("wire server answers 400 to a malformed chunked body on a P/D route", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(
    "POST /v1/chat/completions HTTP/1.1\r\nhost: sidecar.test\r\n" +
      `content-type: application/json\r\nx-prefiller-host-port: ${h.prefillerHeader}\r\n` +
      "transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
  );
  const response = await client.response("POST");
  assert.equal(response.status, 400, response.body);
  assert.match(JSON.parse(response.body).error.message, /chunked/);
  assert.equal(h.prefill.requests.length, 0);
});

Deno.test("wire server answers 400, not a decoder failure, to a malformed chunked body on passthrough", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(
    "POST /tokenize HTTP/1.1\r\nhost: sidecar.test\r\n" +
      "content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n" +
      "zz\r\n{}\r\n0\r\n\r\n",
  );
  const response = await client.response("POST");
  assert.equal(response.status, 400, response.body);
  assert.match(JSON.parse(response.body).error.message, /chunked/);
  assert.equal(field(response, "connection"), "close");
});

Deno.test("wire server sends 100 Continue before the body and keeps Expect from the decoder", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(
    "POST /tokenize HTTP/1.1\r\nhost: sidecar.test\r\n" +
      "content-type: application/json\r\nexpect: 100-continue\r\n" +
      `content-length: ${TOKENIZE_BODY.length}\r\n\r\n`,
  );
  const interim = await client.response("POST");
  assert.equal(interim.status, 100);
  assert.equal(interim.reason, "Continue");
  assert.equal(h.decode.requests.length, 0);
  await client.send(TOKENIZE_BODY);
  const response = await client.response("POST");
  assert.equal(response.status, 200);
  const [seen] = h.decode.requests;
  assert.equal(seen?.bodyText, TOKENIZE_BODY);
  assert.equal(seen?.headers.has("expect"), false);
});

Deno.test("wire server sends 100 Continue on a P/D request and keeps Expect from both legs", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  const body = chatBody();
  await client.send(
    "POST /v1/chat/completions HTTP/1.1\r\nhost: sidecar.test\r\n" +
      `content-type: application/json\r\nx-prefiller-host-port: ${h.prefillerHeader}\r\n` +
      `expect: 100-continue\r\ncontent-length: ${body.length}\r\n\r\n`,
  );
  assert.equal((await client.response("POST")).status, 100);
  await client.send(body);
  const response = await client.response("POST");
  assert.equal(response.status, 200, response.body);
  assert.equal(h.prefill.requests[0]?.headers.has("expect"), false);
  assert.equal(h.decode.requests[0]?.headers.has("expect"), false);
});

Deno.test("wire server answers an HTTP/1.0 request and closes the connection", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(rawRequest("GET", "/v1/models", { version: "1.0" }));
  const response = await client.response();
  assert.equal(response.status, 200);
  assert.equal(JSON.parse(response.body).object, "list");
  assert.equal(field(response, "connection"), "close");
  assert.equal(await client.closedByServer(), true);
});

Deno.test("wire server closes an HTTP/1.1 connection after an answer to Connection: close", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(
    rawRequest("GET", "/v1/models", { headers: { connection: "close" } }),
  );
  const response = await client.response();
  assert.equal(JSON.parse(response.body).object, "list");
  assert.equal(field(response, "connection"), "close");
  assert.equal(await client.closedByServer(), true);
});

Deno.test("wire server keeps an HTTP/1.0 connection that asks for keep-alive", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  const keepAlive = { connection: "keep-alive" };
  await client.send(
    rawRequest("GET", "/health", { version: "1.0", headers: keepAlive }),
  );
  const first = await client.response();
  assert.equal(first.status, 200);
  assert.equal(field(first, "connection"), "keep-alive");
  await client.send(rawRequest("GET", "/v1/models", { version: "1.0" }));
  const second = await client.response();
  assert.equal(JSON.parse(second.body).object, "list");
  assert.equal(await client.closedByServer(), true);
});

Deno.test("wire server streams an SSE P/D answer with chunked framing that ends with [DONE]", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(pdRequest(h, chatBody({ stream: true })));
  const response = await client.response("POST");
  assert.equal(response.status, 200);
  assert.equal(field(response, "transfer-encoding"), "chunked");
  assert.equal(field(response, "content-length"), undefined);
  assert.match(field(response, "content-type") ?? "", /^text\/event-stream/);
  assert.match(response.body, /^data: \{.*"role":"assistant"/);
  assert.match(response.body, /\n\ndata: \[DONE\]\n\n$/);
  assert.equal(h.prefill.requests.length, 1);
  assert.equal(h.decode.requests[0]?.role, "decode");
  assert.equal(await h.decode.requests[0]?.finished, "completed");
});

Deno.test("wire server streams an SSE P/D answer to an HTTP/1.0 client without chunk framing", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(pdRequest(h, chatBody({ stream: true }), "1.0"));
  const response = await client.response("POST");
  assert.equal(response.status, 200);
  assert.equal(field(response, "transfer-encoding"), undefined);
  assert.equal(field(response, "connection"), "close");
  assert.match(response.body, /^data: \{/);
  assert.match(response.body, /\n\ndata: \[DONE\]\n\n$/);
  assert.doesNotMatch(response.body, /\r\n/);
});

Deno.test("wire server refuses a malformed request line with 400 in vLLM's error shape and closes", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send("GET /v1/models\r\nhost: sidecar.test\r\n\r\n");
  const response = await client.response();
  assert.equal(response.status, 400);
  assert.equal(field(response, "content-type"), "application/json");
  assert.equal(field(response, "connection"), "close");
  const { error } = JSON.parse(response.body);
  assert.equal(typeof error.message, "string");
  assert.match(error.message, /request line/);
  assert.deepEqual({ ...error, message: "" }, {
    message: "",
    type: "BadRequestError",
    param: null,
    code: 400,
  });
  assert.equal(await client.closedByServer(), true);
  assert.equal(h.decode.requests.length, 0);
});

Deno.test("wire server refuses a request head over 64 KiB with 431", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  // Sent in one write, so the head may reach the server in one read.
  await client.send(
    rawRequest("GET", "/v1/models", {
      headers: { "x-big": "b".repeat(80 * 1024) },
    }),
  );
  // Answered by the sidecar, before anything reaches the decoder.
  const response = await client.response();
  assert.equal(response.status, 431);
  assert.equal(JSON.parse(response.body).error.code, 431);
  assert.equal(await client.closedByServer(), true);
  assert.equal(h.decode.requests.length, 0);
});

Deno.test("wire server refuses an unfinished request head with 431 once it passes 64 KiB", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  // 64 KiB + 1 byte with no end of head: the server must give up on it.
  const start = "GET /v1/models HTTP/1.1\r\nhost: sidecar.test\r\nx-big: ";
  await client.send(start + "b".repeat(64 * 1024 + 1 - start.length));
  const response = await client.response();
  assert.equal(response.status, 431);
  assert.equal(await client.closedByServer(), true);
  assert.equal(h.decode.requests.length, 0);
});

Deno.test("wire server refuses Content-Length with Transfer-Encoding with 400 and closes", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(
    "POST /tokenize HTTP/1.1\r\nhost: sidecar.test\r\n" +
      "content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
  );
  const response = await client.response("POST");
  assert.equal(response.status, 400);
  assert.equal(JSON.parse(response.body).error.type, "BadRequestError");
  assert.equal(field(response, "connection"), "close");
  assert.equal(await client.closedByServer(), true);
  assert.equal(h.decode.requests.length, 0);
});

Deno.test("wire server refuses HTTP/2 and unsupported transfer codings", async () => {
  await using h = await createHarness({ engine: "wire" });
  const base = h.listen();
  {
    using client = await RawClient.open(base);
    await client.send("GET / HTTP/2.0\r\nhost: sidecar.test\r\n\r\n");
    assert.equal((await client.response()).status, 505);
  }
  {
    using client = await RawClient.open(base);
    await client.send(
      "POST /tokenize HTTP/1.1\r\nhost: sidecar.test\r\n" +
        "transfer-encoding: gzip\r\n\r\n",
    );
    assert.equal((await client.response("POST")).status, 501);
  }
  assert.equal(h.decode.requests.length, 0);
});

Deno.test("wire server answers HEAD /health with 200 and no body", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  // The GET right behind it shows whether the HEAD answer carried a body.
  await client.send(
    rawRequest("HEAD", "/health") + rawRequest("GET", "/v1/models"),
  );
  const head = await client.response("HEAD");
  assert.equal(head.status, 200);
  assert.equal(field(head, "content-length"), "0");
  const models = await client.response();
  assert.equal(models.status, 200);
  assert.equal(JSON.parse(models.body).object, "list");
  assert.equal(h.decode.requests.length, 1);
});

Deno.test("wire server stays in step after a GET /health that carries a body", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(
    rawRequest("GET", "/health", { body: "hello" }) +
      rawRequest("GET", "/v1/models"),
  );
  const health = await client.response();
  assert.equal(health.status, 200);
  if (field(health, "connection") === "close") {
    // Closing is fine too, once the client has been told.
    assert.equal(await client.closedByServer(), true);
    return;
  }
  // Kept alive: the body must not be read as the next request, nor lost.
  const models = await client.response();
  assert.equal(JSON.parse(models.body).object, "list");
});

Deno.test("wire server relays a HEAD answer from the decoder without a body", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(
    rawRequest("HEAD", "/v1/models") + rawRequest("GET", "/v1/models"),
  );
  const head = await client.response("HEAD");
  // The mock vLLM answers HEAD /v1/models as FastAPI does: 405, relayed as is.
  assert.equal(head.status, 405);
  assert.equal(head.body, "");
  const models = await client.response();
  assert.equal(
    models.status,
    200,
    `HEAD got ${head.status}, then ${models.body}`,
  );
  assert.equal(JSON.parse(models.body).object, "list");
  assert.deepEqual(h.decode.requests.map((r) => r.method), ["HEAD", "GET"]);
});

Deno.test("wire server drops the prefill when the client disconnects while it is in flight", async () => {
  await using h = await createHarness({ engine: "wire" });
  await using prefiller = startSilentUpstream();
  using client = await RawClient.open(h.listen());
  await client.send(
    rawRequest("POST", "/v1/chat/completions", {
      headers: {
        "content-type": "application/json",
        "x-prefiller-host-port": prefiller.hostPort,
      },
      body: chatBody(),
    }),
  );
  await within(prefiller.requestSeen, 2000, "prefill request");
  client.close();
  await within(prefiller.closedByClient, 2000, "prefill connection closed");
  assert.equal(h.decode.requests.length, 0);
});

Deno.test("wire server does not forward a header line hidden behind a bare LF", async () => {
  await using h = await createHarness({ engine: "wire" });
  using client = await RawClient.open(h.listen());
  await client.send(
    "GET /v1/models HTTP/1.1\r\nhost: sidecar.test\r\n" +
      "x-custom: a\nx-injected: yes\r\n\r\n",
  );
  const response = await client.response();
  if (response.status === 400 && h.decode.requests.length === 0) return;
  const [seen] = h.decode.requests;
  assert.equal(seen?.headers.has("x-injected"), false);
});

Deno.test("wire server closes the connection after an error that left the request body unread", async () => {
  await using h = await createHarness({ engine: "wire" });
  await h.decode.close();
  using client = await RawClient.open(h.listen());
  // The decoder is down, so the chunked body is never relayed; the bytes
  // after the head must not be taken for a request.
  await client.send(
    "POST /tokenize HTTP/1.1\r\nhost: sidecar.test\r\n" +
      "transfer-encoding: chunked\r\n\r\n" +
      `${rawRequest("GET", "/health").length.toString(16)}\r\n` +
      `${rawRequest("GET", "/health")}\r\n0\r\n\r\n`,
  );
  const response = await client.response("POST");
  assert.equal(response.status, 503);
  assert.equal(field(response, "connection"), "close");
  assert.equal(await client.closedByServer(), true);
});

Deno.test("wire server shutdown completes while a keep-alive connection is idle", async () => {
  await using stoppable = await createStoppableHarness();
  const { h } = stoppable;
  using client = await RawClient.open(h.listen());
  await client.send(rawRequest("GET", "/v1/models"));
  const response = await client.response();
  assert.equal(response.status, 200);
  assert.equal(field(response, "connection"), undefined);
  await within(stoppable.shutdown(), 2000, "harness shutdown");
  assert.equal(await client.closedByServer(), true);
});

Deno.test("wire server shutdown lets a streaming answer finish, then closes its connection", async () => {
  await using stoppable = await createStoppableHarness();
  const { h } = stoppable;
  using client = await RawClient.open(h.listen());
  await client.send(
    rawRequest("POST", "/v1/chat/completions", {
      headers: {
        "content-type": "application/json",
        "x-prefiller-host-port": h.prefillerHeader,
        "x-mock-inter-token-ms": "30",
      },
      body: chatBody({ stream: true, max_tokens: 4 }),
    }),
  );
  const decode = await h.decode.nextRequest();
  // Checked after a timer tick, so an already settled decode is seen.
  const decodeState = await Promise.race([
    decode.finished.then(() => "settled"),
    new Promise((resolve) => setTimeout(resolve, 0, "pending")),
  ]);
  assert.equal(
    decodeState,
    "pending",
    "the decode ended before shutdown began",
  );
  const shutdown = stoppable.shutdown();
  const response = await client.response("POST");
  assert.equal(response.status, 200);
  assert.match(response.body, /data: \[DONE\]\n\n$/);
  assert.equal(await decode.finished, "completed");
  assert.equal(await client.closedByServer(), true);
  await within(shutdown, 2000, "harness shutdown");
});
