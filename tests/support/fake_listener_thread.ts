/**
 * @module
 * A stand-in listener thread for tests of src/listener_threads.ts, speaking
 * its messages and misbehaving as the `mode` query of its URL says:
 * `throw` throws once started, `die-when-scraped` throws on a metrics
 * request, `stuck` never answers a stop, `serve`
 * behaves: it answers metrics requests with {@linkcode fakeCount}'s counter
 * at 1, and its stop with the counter at 2.
 */

// The messages' shapes are written out, not imported: each mode is a module
// of its own to the runtime, type-checked again with all it imports.
interface Scope {
  onmessage:
    | ((
      event: MessageEvent<
        { kind: string; index?: number; metricsPort?: MessagePort }
      >,
    ) => void)
    | null;
  postMessage(message: Record<string, unknown>): void;
}

/** The counter a `serve` thread reports, in prom-client's JSON shape. */
export function fakeCount(value: number): Record<string, unknown>[] {
  return [{
    name: "fake_requests_total",
    help: "Requests the fake thread answered.",
    type: "counter",
    aggregator: "sum",
    values: [{ value, labels: {} }],
  }];
}

const scope = globalThis as unknown as Scope;
const mode = new URL(import.meta.url).searchParams.get("mode");

if ("WorkerGlobalScope" in globalThis) {
  scope.onmessage = ({ data }) => {
    if (data.kind === "start") {
      const port = data.metricsPort;
      if (port) {
        port.onmessage = ({ data }: MessageEvent<{ id: number }>) => {
          if (mode === "die-when-scraped") {
            throw new Error(`listener thread ${data.id} broke when scraped`);
          }
          port.postMessage({ id: data.id, snapshot: fakeCount(1) });
        };
      }
      scope.postMessage({ kind: "listening" });
      if (mode === "throw") {
        setTimeout(() => {
          throw new Error(`listener thread ${data.index} broke`);
        }, 0);
      }
      return;
    }
    if (mode === "stuck") return;
    scope.postMessage({ kind: "stopped", clean: true, metrics: fakeCount(2) });
  };
}
