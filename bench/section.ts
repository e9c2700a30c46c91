/**
 * Runs one benchmark section in this process and prints its results as one JSON line on stdout.
 * bench/run.ts starts each section in a fresh node process, so that no section measures the garbage,
 * heap growth or JIT state another left behind.
 *
 *   node --import tsx bench/section.ts memcpy
 *   node --import tsx bench/section.ts faults <memcpy pages/s>
 *   node --import tsx bench/section.ts migrate <memcpy pages/s>
 *   node --import tsx bench/section.ts thp
 */
import { benchFaults } from "./fault.js";
import { benchMemcpy } from "./memcpy.js";
import { benchMigrate } from "./migrate.js";
import type { BenchResult } from "./result.js";
import { benchThpMigration } from "./thp.js";

export interface SectionOutput {
  results: BenchResult[];
  /** The memcpy section's pages per second, the baseline of the others. */
  memcpyPagesPerSecond?: number;
}

function baselineArgument(): number {
  const value = Number(process.argv[3]);
  if (!(value > 0)) throw new Error(`section ${process.argv[2]} needs the memcpy pages/s as its argument`);
  return value;
}

const section = process.argv[2];
let output: SectionOutput;
if (section === "memcpy") {
  const memcpy = benchMemcpy();
  output = { results: memcpy.results, memcpyPagesPerSecond: memcpy.pagesPerSecond };
} else if (section === "faults") {
  output = { results: benchFaults(baselineArgument()) };
} else if (section === "migrate") {
  output = { results: benchMigrate(baselineArgument() * 4096) };
} else if (section === "thp") {
  output = { results: benchThpMigration() };
} else {
  throw new Error(`unknown benchmark section "${section}": memcpy, faults, migrate or thp`);
}
process.stdout.write(`${JSON.stringify(output)}\n`);
