/**
 * Populating 64 GiB (16M pages) of one process in the tokens store, in a child node process so that
 * its peak resident memory (getrusage maxRSS) is its own.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type BenchResult, compared, progress } from "./result.js";

const GIB = 2 ** 30;

export function benchPopulate(gib = 64): BenchResult[] {
  progress(`populate: touching ${gib} GiB of anonymous memory (tokens store) in a child process`);
  const child = fileURLToPath(new URL("./populate-child.ts", import.meta.url));
  const run = spawnSync(process.execPath, ["--import", "tsx", child, String(gib)], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 2 ** 20,
  });
  if (run.status !== 0) throw new Error(`populate child failed: status ${run.status} ${run.signal ?? ""}`);
  const line = run.stdout.trim().split("\n").at(-1) ?? "";
  const report = JSON.parse(line) as { pagesPerSecond: number; maxRssBytes: number };
  return [
    compared(`populate ${gib} GiB (tokens store), write touch`, report.pagesPerSecond, "pages/s", 2e6),
    compared(
      `populate ${gib} GiB (tokens store), peak RSS of the child (target < 4 GiB)`,
      report.maxRssBytes / GIB,
      "GiB",
      4,
    ),
  ];
}
