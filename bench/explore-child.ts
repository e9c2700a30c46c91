/**
 * The explorer's benchmark, run by bench/explore.ts as a bundled JavaScript file (how the model ships
 * once built) in a fresh node process. Prints one JSON line: executions/s of the canonical scenario
 * (migrate-vs-cpu: 4-page MIGRATE_TO_DEV against a CPU store and a CPU load, tokens store, the
 * invariant checker and the data oracle at the end of every execution) under random search, and the
 * executions of an exhaustive depth-first search at bound 2 with and without the reduction.
 */
import { explore } from "../src/explore/explore.js";
import { migrateVsCpuScenario } from "../src/explore/scenarios/migrate-vs-cpu.js";

const seconds = Number(process.argv[2] ?? 3);
// Warm the JIT, then measure.
explore(migrateVsCpuScenario, { strategy: "random", executions: 3000, seconds: 30 });
const random = explore(migrateVsCpuScenario, { strategy: "random", executions: 1e9, seconds });
const plain = explore(migrateVsCpuScenario, { reduction: false, preemptions: 2, seconds: 120 });
const reduced = explore(migrateVsCpuScenario, { preemptions: 2, seconds: 120 });
process.stdout.write(
  `${JSON.stringify({
    executionsPerSecond: random.executions / random.seconds,
    plainExecutions: plain.executions + plain.abandoned,
    reducedExecutions: reduced.executions + reduced.abandoned,
    complete: plain.complete && reduced.complete,
  })}\n`,
);
