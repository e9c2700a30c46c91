/**
 * `hmmsim explore --workers N`: the search split over N worker threads. Random and PCT split by seed
 * (worker i explores seeds of its own, its share of the executions); depth-first search splits by the
 * first choice (worker i explores the schedules that begin with the threads dealt to it). Each worker
 * is deterministic, so the pooled result is too: the finding reported is the one with the fewest
 * preemptions, then choice points, then the lowest worker.
 */
import { type ExploreOptions, type ExploreResult, firstChoices } from "../explore/explore.js";
import type { Scenario } from "../explore/scenario.js";
import type { ExploreJob } from "./explore.js";
import { startModuleWorker } from "./run_in_worker.js";

/** What one pool worker is asked to do. */
export interface PoolTask {
  job: ExploreJob;
  scenarioName: string;
  options: ExploreOptions;
  /** DFS: the first choices of this worker's share (each explored in turn). */
  prefixes: number[][] | null;
}

export async function runPool(
  job: ExploreJob,
  scenario: Scenario,
  options: ExploreOptions,
): Promise<ExploreResult> {
  const started = performance.now();
  const keep = scenario.operations.map(() => true);
  const tasks: PoolTask[] = [];
  if (job.strategy === "dfs") {
    const first = firstChoices(scenario, options.config ?? scenario.config, keep);
    const shares: number[][][] = Array.from({ length: job.workers }, () => []);
    first.forEach((thread, i) => {
      shares[i % job.workers]!.push([thread]);
    });
    for (const share of shares)
      if (share.length > 0) tasks.push({ job, scenarioName: scenario.name, options, prefixes: share });
    if (tasks.length === 0) tasks.push({ job, scenarioName: scenario.name, options, prefixes: null });
  } else {
    const executions = options.executions ?? 100_000;
    for (let i = 0; i < job.workers; i++) {
      tasks.push({
        job,
        scenarioName: scenario.name,
        options: {
          ...options,
          seed: (options.seed ?? 1) + i * 0x9e37,
          executions: Math.ceil(executions / job.workers),
        },
        prefixes: null,
      });
    }
  }
  const results = await Promise.all(tasks.map((task) => runTask(task)));
  let best: ExploreResult | null = null;
  for (const result of results) {
    const finding = result.finding;
    if (finding === null) continue;
    const bestFinding = best?.finding ?? null;
    if (
      bestFinding === null ||
      finding.preemptions < bestFinding.preemptions ||
      (finding.preemptions === bestFinding.preemptions && finding.choicePoints < bestFinding.choicePoints)
    )
      best = result;
  }
  const base = best ?? results[0]!;
  return {
    ...base,
    executions: results.reduce((sum, result) => sum + result.executions, 0),
    abandoned: results.reduce((sum, result) => sum + result.abandoned, 0),
    complete: best === null && results.every((result) => result.complete),
    bound: Math.min(...results.map((result) => result.bound)),
    seconds: (performance.now() - started) / 1000,
  };
}

function runTask(task: PoolTask): Promise<ExploreResult> {
  return new Promise((resolve, reject) => {
    const worker = startModuleWorker("explore_worker");
    let result: ExploreResult | null = null;
    worker.on("message", (message: ExploreResult) => {
      result = message;
    });
    worker.on("error", reject);
    worker.on("exit", (code) => {
      if (result !== null) resolve(result);
      else reject(new Error(`an explore worker exited with code ${code} before it reported`));
    });
    worker.postMessage(task);
  });
}
