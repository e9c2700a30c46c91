/** A pool worker of `hmmsim explore --workers N` (explore_pool.ts): explores its share and reports. */
import { parentPort } from "node:worker_threads";
import { type ExploreResult, explore } from "../explore/explore.js";
import { scenariosOf } from "./explore.js";
import type { PoolTask } from "./explore_pool.js";

const port = parentPort;
if (port === null) throw new Error("src/cli/explore_worker.ts runs only as a worker thread");
const task = await new Promise<PoolTask>((received) => port.once("message", received));
const scenarios = await scenariosOf(task.job);
const scenario = scenarios.find((candidate) => candidate.name === task.scenarioName)!;
let combined: ExploreResult | null = null;
for (const prefix of task.prefixes ?? [null]) {
  const result = explore(scenario, { ...task.options, ...(prefix === null ? {} : { prefix }) });
  combined =
    combined === null
      ? result
      : {
          ...(combined.finding === null ? result : combined),
          executions: combined.executions + result.executions,
          abandoned: combined.abandoned + result.abandoned,
          complete: combined.complete && result.complete,
          bound: Math.min(combined.bound, result.bound),
        };
  if (result.finding !== null) break;
}
port.postMessage(combined);
