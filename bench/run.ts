/**
 * `npm run bench`: runs every benchmark and prints one JSON document on stdout,
 * `{ "results": [ { name, value, unit, baseline?, ratio? } ] }`; progress goes to stderr.
 */
import { benchFaults } from "./fault.js";
import { benchMemcpy } from "./memcpy.js";
import { benchMigrate } from "./migrate.js";
import { benchPopulate } from "./populate.js";
import type { BenchResult } from "./result.js";

const results: BenchResult[] = [];
const memcpy = benchMemcpy();
results.push(...memcpy.results);
results.push(...benchFaults(memcpy.pagesPerSecond));
results.push(...benchMigrate(memcpy.pagesPerSecond * 4096));
results.push(...benchPopulate());
process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
