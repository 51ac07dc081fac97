/**
 * @module
 * A stand-in listener thread for tests of src/listener_threads.ts, speaking
 * its messages and misbehaving as the `mode` query of its URL says:
 * `throw` throws once started, `stuck` never answers a stop, `serve`
 * behaves (answers metrics requests with a counter of its index).
 */

// The messages' shapes are written out, not imported: each mode is a module
// of its own to the runtime, type-checked again with all it imports.
interface Scope {
  onmessage:
    | ((event: MessageEvent<{ kind: string; index?: number }>) => void)
    | null;
  postMessage(message: { kind: string; clean?: boolean }): void;
}

const scope = globalThis as unknown as Scope;
const mode = new URL(import.meta.url).searchParams.get("mode");

scope.onmessage = ({ data }) => {
  if (data.kind === "start") {
    scope.postMessage({ kind: "listening" });
    if (mode === "throw") {
      setTimeout(() => {
        throw new Error(`listener thread ${data.index} broke`);
      }, 0);
    }
    return;
  }
  if (mode !== "stuck") scope.postMessage({ kind: "stopped", clean: true });
};
