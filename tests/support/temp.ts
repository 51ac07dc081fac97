/**
 * @module
 * Temporary files and directories for tests, removed on dispose, so a test
 * that fails half-way leaves nothing behind and needs no `finally` of its own.
 */

/** A temporary path; `await using` removes it (a directory with what it holds). */
export interface TempPath extends AsyncDisposable {
  readonly path: string;
}

/** A new empty temporary directory named with `prefix`. */
export async function tempDir(prefix = "pd-sidecar-test-"): Promise<TempPath> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

/** A new temporary file holding `text`, its name ending in `suffix` (a PEM bundle unless told). */
export async function tempFile(
  text: string,
  suffix = ".pem",
): Promise<TempPath> {
  const path = await Deno.makeTempFile({ suffix });
  await Deno.writeTextFile(path, text);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path) };
}
