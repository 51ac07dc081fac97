import assert from "node:assert/strict";
import {
  createAcceptGuard,
  isResourceExhaustion,
  REPORT_INTERVAL_MS,
} from "../src/accept_guard.ts";
import { createLogger } from "../src/log.ts";

/** An error as Deno's accept throws it when descriptors run out. */
function osError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

const EMFILE = osError("EMFILE", "Too many open files (os error 24)");

function recordingLog() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    verbosity: 5,
    write: (line) => lines.push(JSON.parse(line)),
  });
  return { log, lines };
}

Deno.test("isResourceExhaustion knows running out of descriptors or memory, and nothing else", () => {
  for (const code of ["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]) {
    assert.equal(isResourceExhaustion(osError(code, code)), true, code);
  }
  assert.equal(
    isResourceExhaustion(osError("ECONNRESET", "Connection reset")),
    false,
  );
  assert.equal(isResourceExhaustion(new Error("EMFILE")), false);
  assert.equal(isResourceExhaustion("EMFILE"), false);
});

Deno.test("accept guard waits longer after each failure, up to 200 ms, and from 5 ms again after a success", () => {
  const { log } = recordingLog();
  const guard = createAcceptGuard({ log, now: () => 0 });
  const waits = Array.from({ length: 8 }, () => guard.failed(EMFILE, 10));
  assert.deepEqual(waits, [5, 10, 20, 40, 80, 160, 200, 200]);
  guard.accepted();
  assert.equal(guard.failed(EMFILE, 10), 5);
});

Deno.test("accept guard reports failures at most once per interval with what it held back, then the recovery once", () => {
  const { log, lines } = recordingLog();
  let time = 1_000;
  const guard = createAcceptGuard({ log, now: () => time });
  for (let i = 0; i < 50; i++) {
    guard.failed(EMFILE, 300);
    time += 100;
  }
  // 50 failures over 5 s: one report.
  assert.equal(lines.length, 1);
  assert.equal(lines[0]?.level, "error");
  assert.match(
    String(lines[0]?.msg),
    /^Cannot accept a connection: Too many open files \(os error 24\); the process is out of descriptors/,
  );
  assert.equal(lines[0]?.open_connections, 300);
  time += REPORT_INTERVAL_MS;
  guard.failed(EMFILE, 250);
  assert.equal(lines.length, 2);
  assert.equal(lines[1]?.reports_held_back, 49);
  assert.equal(lines[1]?.failed_accepts, 51);
  time += 500;
  guard.accepted();
  guard.accepted();
  assert.equal(lines.length, 3);
  assert.equal(lines[2]?.msg, "accepting connections again");
  assert.equal(lines[2]?.failed_accepts, 51);
  assert.equal(lines[2]?.failing_ms, 5_000 + REPORT_INTERVAL_MS + 500);
});

Deno.test("accept guard reports the connection cap at most once per interval", () => {
  const { log, lines } = recordingLog();
  let time = 0;
  const guard = createAcceptGuard({ log, now: () => time });
  guard.capped(64);
  guard.capped(64);
  time += REPORT_INTERVAL_MS;
  guard.capped(64);
  assert.deepEqual(lines.map((line) => line.level), ["warn", "warn"]);
  assert.match(
    String(lines[0]?.msg),
    /^Connection limit reached: 64 connections open/,
  );
  assert.equal(lines[1]?.reports_held_back, 1);
});
