import assert from "node:assert/strict";
import {
  chatBody,
  createHarness,
  jsonHeaders,
  postChatOverHttp,
} from "../support/harness.ts";

/** The cap the README documents for the prefiller routing headers. */
const MAX_PREFILL_TARGETS = 32;

/** POSTs a chat body to the listening sidecar with `headers`, within 10 s. */
function post(base: string, headers: Headers): Promise<Response> {
  return postChatOverHttp(base, chatBody(), headers);
}

async function assertTooMany(response: Response, header: string) {
  assert.equal(response.status, 400);
  assert.equal(
    response.headers.get("x-pd-error-code"),
    "too_many_prefill_targets",
  );
  assert.deepEqual((await response.json()).error, {
    message:
      `Header "${header}" lists more than ${MAX_PREFILL_TARGETS} prefill targets: at most ${MAX_PREFILL_TARGETS} are allowed`,
    type: "BadRequestError",
    param: null,
    code: 400,
  });
}

/** `count` entries, every one naming the prefill mock (valid, so only their number is wrong). */
function entries(target: string, count: number): string[] {
  return Array.from({ length: count }, () => target);
}

/**
 * Sends the headers `headersFor` builds around the prefill mock's address
 * and checks the 400 names `header`, no upstream was asked, and the access
 * line carries the code.
 */
async function expectRefused(
  header: string,
  headersFor: (prefiller: string) => Headers,
): Promise<void> {
  await using h = await createHarness();
  const base = h.listen();
  await assertTooMany(await post(base, headersFor(h.prefillerHeader)), header);
  assert.equal(h.prefill.requests.length, 0);
  assert.equal(h.decode.requests.length, 0);
  const line = await h.accessLine();
  assert.equal(line.error_code, "too_many_prefill_targets");
}

for (
  const [what, count] of [
    ["one past the cap", MAX_PREFILL_TARGETS + 1],
    ["thousands of", 3_000],
  ] as const
) {
  for (const header of ["x-prefiller-host-port", "x-prefiller-url"]) {
    Deno.test(
      `${header} naming ${what} targets is a 400 too_many_prefill_targets before any upstream is asked`,
      () =>
        expectRefused(header, (prefiller) =>
          jsonHeaders({
            [header]: entries(prefiller, count).join(","),
          })),
    );
  }
}

Deno.test(
  "x-prefiller-host-port sent as one header line per target counts every line against the cap",
  () =>
    expectRefused("x-prefiller-host-port", (prefiller) => {
      const headers = jsonHeaders();
      for (const target of entries(prefiller, MAX_PREFILL_TARGETS + 1)) {
        headers.append("x-prefiller-host-port", target);
      }
      return headers;
    }),
);

Deno.test(
  "empty entries count against the prefill target cap, so a header of commas costs no parsing",
  () =>
    expectRefused("x-prefiller-host-port", (prefiller) =>
      jsonHeaders({
        "x-prefiller-host-port": `${prefiller}${",".repeat(60_000)}`,
      })),
);

Deno.test(
  "x-prefiller-host-port naming exactly the cap of targets runs P/D on the first",
  async () => {
    await using h = await createHarness();
    const base = h.listen();
    const others = Array.from(
      { length: MAX_PREFILL_TARGETS - 1 },
      (_, i) => `127.0.0.1:${i + 1}`,
    );
    const response = await post(
      base,
      jsonHeaders({
        "x-prefiller-host-port": [h.prefillerHeader, ...others].join(" , "),
      }),
    );
    assert.equal(response.status, 200);
    assert.equal((await response.json()).object, "chat.completion");
    assert.equal(h.prefill.requests.length, 1);
    assert.equal(h.decode.requests.length, 1);
  },
);
