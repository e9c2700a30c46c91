/**
 * `hmmsim explore`: the concurrency explorer on the command line. It runs in the CLI's worker thread
 * (job.ts); `--workers N` splits the search over N more worker threads (explore_pool.ts).
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { SCENARIOS, scenarioNamed, scenarioOfDefect } from "../explore/catalogue.js";
import { type ExploreResult, explore, replayFinding } from "../explore/explore.js";
import { exploreJson, formatExplore } from "../explore/report.js";
import { defectConfig, type Scenario } from "../explore/scenario.js";
import { parseSchedule, ScheduleSyntaxError } from "../explore/schedule.js";
import type { StrategyName } from "../explore/strategies.js";
import { runPool } from "./explore_pool.js";

export interface ExploreJob {
  command: "explore";
  list: boolean;
  defect: string | null;
  fixed: boolean;
  scenario: string | null;
  strategy: StrategyName;
  preemptions: number | null;
  depth: number | null;
  executions: number | null;
  seconds: number;
  seed: number;
  replay: string | null;
  workers: number;
  /** Run the invariant checker after every step as well as at the end. */
  checkEachStep: boolean;
  json: boolean;
  /** How often to report progress, in milliseconds (0: never). */
  progressMs: number;
}

/** A refusal of the command line: one line on stderr and the usage status. */
export class ExploreUsageError extends Error {
  override readonly name = "ExploreUsageError";
}

export interface ExploreOutcome {
  text: string;
  /** False when a violation was found (exit status 1). */
  checksHeld: boolean;
}

/** Loads the scenarios a file exports: `default`, `scenario` or `scenarios`, checked for shape. */
export async function loadScenarioFile(file: string): Promise<Scenario[]> {
  const path = resolve(file);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (error) {
    const why = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new ExploreUsageError(`--scenario ${file}: cannot load it: ${why}`);
  }
  const found: unknown[] = [];
  if (module.default !== undefined) found.push(module.default);
  if (module.scenario !== undefined) found.push(module.scenario);
  if (Array.isArray(module.scenarios)) found.push(...module.scenarios);
  if (found.length === 0)
    throw new ExploreUsageError(
      `--scenario ${file}: it exports no scenario (export default, scenario or scenarios)`,
    );
  return found.map((candidate, index) =>
    checkScenario(candidate, `--scenario ${file}, scenario ${index + 1}`),
  );
}

function checkScenario(candidate: unknown, where: string): Scenario {
  const s = candidate as Partial<Scenario> | null;
  const problem =
    typeof s !== "object" || s === null
      ? "is not an object"
      : typeof s.name !== "string" || !/^[A-Za-z0-9_.-]+$/.test(s.name)
        ? "needs a name of letters, digits, '-', '_' and '.'"
        : !Array.isArray(s.operations) || s.operations.length === 0
          ? "needs a non-empty operations array"
          : typeof s.build !== "function"
            ? "needs a build(config, keep) function"
            : typeof s.config !== "object" || s.config === null || typeof s.config.protocol !== "string"
              ? "needs a config { protocol, switches }"
              : null;
  if (problem !== null) throw new ExploreUsageError(`${where}: ${problem}`);
  const scenario = s as Scenario;
  const config = { ...scenario.config, switches: scenario.config.switches ?? {} };
  return { ...scenario, description: scenario.description ?? "", config };
}

/** The scenarios the job can name: a file's, or the catalogue. */
export async function scenariosOf(job: ExploreJob): Promise<readonly Scenario[]> {
  if (job.scenario === null) return SCENARIOS;
  const { file } = splitScenarioArgument(job.scenario);
  if (!existsSync(file) && scenarioNamed(file) !== null) return [scenarioNamed(file)!];
  return loadScenarioFile(file);
}

/** `--scenario FILE#NAME` picks one scenario of a file that exports several (the first by default). */
function splitScenarioArgument(argument: string): { file: string; name: string | null } {
  const hash = argument.lastIndexOf("#");
  return hash < 0
    ? { file: argument, name: null }
    : { file: argument.slice(0, hash), name: argument.slice(hash + 1) };
}

export async function runExploreJob(
  job: ExploreJob,
  progress: (line: string) => void,
): Promise<ExploreOutcome> {
  if (job.list) return listScenarios(job.json);
  const scenarios = await scenariosOf(job);
  if (job.replay !== null) return replay(job, scenarios);
  let scenario: Scenario | null;
  if (job.defect !== null) {
    scenario =
      job.scenario === null
        ? scenarioOfDefect(job.defect)
        : (scenarios.find((candidate) => candidate.defect?.id === job.defect) ?? null);
    if (scenario === null)
      throw new ExploreUsageError(
        `--defect ${job.defect}: no such defect (hmmsim explore --list shows the catalogue)`,
      );
  } else if (job.scenario !== null) {
    const { file, name } = splitScenarioArgument(job.scenario);
    scenario =
      name === null ? scenarios[0]! : (scenarios.find((candidate) => candidate.name === name) ?? null);
    if (scenario === null)
      throw new ExploreUsageError(
        `--scenario ${job.scenario}: ${file} has no scenario named "${name}" (it has ${scenarios.map((s) => s.name).join(", ")})`,
      );
  } else {
    throw new ExploreUsageError(
      "explore: say what to explore: --defect ID, --scenario FILE, --replay STRING or --list",
    );
  }
  const withDefect = job.defect !== null && !job.fixed;
  const options = {
    strategy: job.strategy,
    preemptions: job.preemptions ?? undefined,
    depth: job.depth ?? undefined,
    executions: job.executions ?? undefined,
    seconds: job.seconds,
    seed: job.seed,
    checkEachStep: job.checkEachStep,
    config: withDefect ? defectConfig(scenario) : scenario.config,
  };
  const onProgress =
    job.progressMs > 0
      ? (p: { executions: number; abandoned: number; seconds: number; bound: number }) =>
          progress(
            `hmmsim explore ${scenario.name}: ${p.executions} executions, ${Math.round(p.executions / Math.max(p.seconds, 1e-3))}/s, ` +
              `${p.abandoned} cut short${job.strategy === "dfs" ? `, bound ${p.bound}` : ""}, nothing found yet`,
          )
      : undefined;
  const result =
    job.workers > 1
      ? await runPool(job, scenario, options)
      : explore(scenario, { ...options, onProgress, progressMs: job.progressMs });
  return outcomeOf(result, job);
}

function outcomeOf(result: ExploreResult, job: ExploreJob): ExploreOutcome {
  let text = job.json ? JSON.stringify(exploreJson(result), null, 2) : formatExplore(result);
  // A scenario from a file replays only with the file: say so in the replay line.
  if (!job.json && job.scenario !== null && scenarioNamed(job.scenario) === null) {
    const { file } = splitScenarioArgument(job.scenario);
    text = text.replace(
      "replay: hmmsim explore --replay",
      `replay: hmmsim explore --scenario ${file} --replay`,
    );
  }
  return { text: `${text}\n`, checksHeld: result.finding === null };
}

function listScenarios(json: boolean): ExploreOutcome {
  const entries = SCENARIOS.map((scenario) => ({
    name: scenario.name,
    ...(scenario.defect === undefined ? {} : { defect: scenario.defect.id }),
    description: scenario.description,
  }));
  if (json) return { text: `${JSON.stringify({ scenarios: entries }, null, 2)}\n`, checksHeld: true };
  const width = Math.max(...entries.map((entry) => (entry.defect ?? entry.name).length));
  const lines = ["defect catalogue (hmmsim explore --defect ID; --fixed runs the fixed kernel):"];
  for (const entry of entries)
    if (entry.defect !== undefined) lines.push(`  ${entry.defect.padEnd(width)}  ${entry.description}`);
  lines.push("", "scenarios of the fixed kernel (hmmsim explore --scenario NAME):");
  for (const entry of entries)
    if (entry.defect === undefined) lines.push(`  ${entry.name.padEnd(width)}  ${entry.description}`);
  return { text: `${lines.join("\n")}\n`, checksHeld: true };
}

function replay(job: ExploreJob, scenarios: readonly Scenario[]): ExploreOutcome {
  let schedule: ReturnType<typeof parseSchedule>;
  try {
    schedule = parseSchedule(
      job.replay!,
      (name) => scenarios.find((s) => s.name === name)?.operations.length ?? null,
    );
  } catch (error) {
    if (error instanceof ScheduleSyntaxError) throw new ExploreUsageError(`--replay: ${error.message}`);
    throw error;
  }
  const scenario = scenarios.find((candidate) => candidate.name === schedule.scenario)!;
  const finding = replayFinding(
    scenario,
    schedule.config,
    schedule.keep,
    schedule.deviations,
    undefined,
    job.checkEachStep,
  );
  const result: ExploreResult = {
    scenario: scenario.name,
    protocol: schedule.config.protocol,
    config: schedule.config,
    strategy: "replay",
    finding,
    executions: 1,
    abandoned: 0,
    complete: false,
    seconds: 0,
    bound: finding?.preemptions ?? 0,
  };
  return outcomeOf({ ...result, strategy: "replay" }, job);
}
