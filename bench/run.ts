/**
 * `npm run bench`: runs every benchmark and prints one JSON document on stdout,
 * `{ "results": [ { name, value, unit, baseline?, ratio? } ] }`; progress goes to stderr. Each section
 * runs in a fresh node process (see section.ts); the memcpy baseline is measured first, in the same run.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { benchExplore } from "./explore.js";
import { benchPopulate } from "./populate.js";
import type { BenchResult } from "./result.js";
import type { SectionOutput } from "./section.js";

function runSection(...args: string[]): SectionOutput {
  const script = fileURLToPath(new URL("./section.ts", import.meta.url));
  const run = spawnSync(process.execPath, ["--import", "tsx", script, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 2 ** 20,
  });
  if (run.status !== 0)
    throw new Error(`benchmark section ${args[0]} failed: status ${run.status} ${run.signal ?? ""}`);
  return JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "") as SectionOutput;
}

const results: BenchResult[] = [];
const memcpy = runSection("memcpy");
const baseline = String(memcpy.memcpyPagesPerSecond);
results.push(...memcpy.results);
results.push(...runSection("faults", baseline).results);
results.push(...runSection("migrate", baseline).results);
results.push(...runSection("thp").results);
results.push(...benchPopulate());
results.push(...benchExplore());
process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
