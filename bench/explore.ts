/**
 * The explorer's figures: executions/s on the canonical scenario (bundled with esbuild, as the model
 * ships, and run in a child process), the partial-order reduction's ratio at bound 2, and the
 * speed-up of `hmmsim explore --workers 2` over one worker, timed side by side through the CLI.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";
import { type BenchResult, compared, progress, round } from "./result.js";

const root = fileURLToPath(new URL("..", import.meta.url));

function runExploreCli(workers: number): number {
  const started = performance.now();
  const run = spawnSync(
    process.execPath,
    [
      join(root, "bin/hmmsim.js"),
      "explore",
      "--scenario",
      "migrate-vs-cpu",
      "--strategy",
      "random",
      "--executions",
      "40000",
      "--seconds",
      "120",
      "--workers",
      String(workers),
      "--json",
    ],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
  );
  if (run.status !== 0) throw new Error(`hmmsim explore --workers ${workers} failed: status ${run.status}`);
  return (performance.now() - started) / 1000;
}

export function benchExplore(): BenchResult[] {
  progress("explore: the canonical scenario (migrate-vs-cpu), bundled, in a child process");
  const dir = mkdtempSync(join(tmpdir(), "hmmsim-bench-"));
  try {
    const bundle = join(dir, "explore-child.mjs");
    buildSync({
      entryPoints: [fileURLToPath(new URL("./explore-child.ts", import.meta.url))],
      bundle: true,
      format: "esm",
      platform: "node",
      outfile: bundle,
      logLevel: "warning",
    });
    const run = spawnSync(process.execPath, [bundle, "3"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    if (run.status !== 0) throw new Error(`explore bench child failed: status ${run.status}`);
    const report = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "") as {
      executionsPerSecond: number;
      plainExecutions: number;
      reducedExecutions: number;
      complete: boolean;
    };
    if (!report.complete) throw new Error("explore bench: the bound-2 search did not finish");
    progress("explore: hmmsim explore --workers 1 and --workers 2, 40,000 random executions each");
    const one = runExploreCli(1);
    const two = runExploreCli(2);
    return [
      compared(
        "explore: executions/s (migrate-vs-cpu, random, checker and data oracle each time)",
        report.executionsPerSecond,
        "executions/s",
        10_000,
      ),
      {
        name: "explore: reduction ratio (executions with sleep sets / without, depth-first to bound 2)",
        value: round(report.reducedExecutions / report.plainExecutions),
        unit: "ratio",
        baseline: report.plainExecutions,
      },
      compared("explore: speed-up of --workers 2 over 1 (CLI, 40,000 random executions)", one / two, "x", 1),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
