/**
 * @module
 * Reads the kernel's TCP tables for tests. Deno 2.9.6 lets only `--allow-all`
 * open a file under /proc, and the suite runs without it, so the tables are
 * read by `cat`, which the suite may run: the same bytes the sidecar reads
 * when it is allowed to.
 */

import type { TcpTable } from "../../src/proc_net_tcp.ts";

/** Reads `/proc/net/<table>` through `cat`; throws when it cannot. */
export async function readTableWithCat(table: TcpTable): Promise<string> {
  const output = await new Deno.Command("cat", {
    args: [`/proc/net/${table}`],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!output.success) throw new Error(`Cannot read /proc/net/${table}`);
  return new TextDecoder().decode(output.stdout);
}
