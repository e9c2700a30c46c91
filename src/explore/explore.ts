/**
 * The explorer: runs a scenario again and again under a strategy until an execution fails or the
 * search is done (or the budget spent), shrinks the failure and makes it a schedule string and a
 * report that replay exactly.
 */
import {
  type Decider,
  defaultChoice,
  type ExecutionResult,
  execute,
  type TraceStep,
  type Violation,
} from "./execution.js";
import { defectConfig, type ExploreConfig, type Scenario } from "./scenario.js";
import { formatSchedule } from "./schedule.js";
import { serialOutcomes } from "./serial.js";
import { DfsStrategy, PctStrategy, RandomStrategy, type Strategy, type StrategyName } from "./strategies.js";

/**
 * How explore() searches: the strategy and its bounds, the seed, the limits on executions and seconds, which
 * operations to keep, shrinking, and progress reports.
 */
export interface ExploreOptions {
  readonly strategy?: StrategyName;
  /** Preemption bound of depth-first search (default: the scenario's, else 2). */
  readonly preemptions?: number;
  /** PCT's bug depth (default 3). */
  readonly depth?: number;
  /** Most executions (default: unbounded for dfs, 100,000 for pct and random). */
  readonly executions?: number;
  /** Time budget in seconds (default 10); measured with `clock`. */
  readonly seconds?: number;
  readonly seed?: number;
  /** Sleep-set reduction in depth-first search (default true). */
  readonly reduction?: boolean;
  /** Run this kernel (default: the defect's when `defect` is true, else the scenario's fixed one). */
  readonly config?: ExploreConfig;
  /** Run with the scenario's defect switched on. */
  readonly defect?: boolean;
  readonly keep?: readonly boolean[];
  /** Shrink a failure before reporting it (default true). */
  readonly shrink?: boolean;
  /** Steps without an operation completing that count as a livelock. */
  readonly livelockSteps?: number;
  /** Run the invariant checker after every step as well as at the end. */
  readonly checkEachStep?: boolean;
  /** Only schedules starting with these choices (a worker's share of a depth-first search). */
  readonly prefix?: readonly number[];
  /** Milliseconds since some origin; the explorer's budget only (the model never reads a clock). */
  readonly clock?: () => number;
  /** Called about every `progressMs` with the search so far. */
  readonly onProgress?: (progress: Progress) => void;
  readonly progressMs?: number;
}

/**
 * What explore() reports while it runs: executions so far, abandoned ones, seconds spent, the current bound.
 */
export interface Progress {
  readonly executions: number;
  readonly abandoned: number;
  readonly seconds: number;
  readonly bound: number;
}

/** A violation explore() found, with the schedule that replays it and the size of that schedule. */
export interface Finding {
  readonly violation: Violation;
  /** The schedule string that replays it. */
  readonly schedule: string;
  readonly choicePoints: number;
  readonly preemptions: number;
  readonly steps: number;
  readonly keep: readonly boolean[];
  readonly deviations: readonly (readonly [number, number])[];
  /** The replayed execution, traced step by step. */
  readonly trace: readonly TraceStep[];
  readonly threadNames: readonly string[];
}

/**
 * What explore() returns: the scenario, protocol, configuration and strategy, the counts, and the finding if
 * any.
 */
export interface ExploreResult {
  readonly scenario: string;
  readonly protocol: string;
  readonly config: ExploreConfig;
  /** "replay" for a replayed schedule. */
  readonly strategy: StrategyName | "replay";
  readonly finding: Finding | null;
  /** Executions judged (abandoned ones not counted). */
  readonly executions: number;
  /** Executions the reduction abandoned part way. */
  readonly abandoned: number;
  /** The whole bounded space was explored (depth-first search only). */
  readonly complete: boolean;
  readonly seconds: number;
  /** The preemption bound reached (dfs). */
  readonly bound: number;
}

/** Replays `deviations` and otherwise runs non-preemptively. */
export function replayDecider(deviations: readonly (readonly [number, number])[]): Decider {
  const byIndex = new Map(deviations.map(([at, thread]) => [at, thread]));
  return {
    choose: (point) => {
      const wanted = byIndex.get(point.index);
      return wanted !== undefined && point.runnable.includes(wanted) ? wanted : defaultChoice(point);
    },
  };
}

const defaultClock = (): number => performance.now();

/** The kernel an exploration runs. */
export function configOf(scenario: Scenario, options: ExploreOptions): ExploreConfig {
  return options.config ?? (options.defect === true ? defectConfig(scenario) : scenario.config);
}

/**
 * Runs a scenario under many schedules chosen by a strategy (default depth-first) and returns the first
 * violation found, or that none was found within the bounds.
 */
export function explore(scenario: Scenario, options: ExploreOptions = {}): ExploreResult {
  const clock = options.clock ?? defaultClock;
  const started = clock();
  const config = configOf(scenario, options);
  const keep = options.keep ?? scenario.operations.map(() => true);
  const strategyName = options.strategy ?? "dfs";
  const seconds = options.seconds ?? 10;
  const executionsMax = options.executions ?? (strategyName === "dfs" ? Number.POSITIVE_INFINITY : 100_000);
  const seed = options.seed ?? 1;
  const maxBound = options.preemptions ?? scenario.preemptions ?? 2;
  const serial = serialOutcomes(scenario, config, keep);
  const progressMs = options.progressMs ?? 1000;
  let lastProgress = started;
  let executions = 0;
  let abandoned = 0;
  let complete = false;
  let failure: ExecutionResult | null = null;
  let bound = strategyName === "dfs" ? 0 : maxBound;
  const outOfBudget = (): boolean =>
    executions + abandoned >= executionsMax || (clock() - started) / 1000 >= seconds;

  // Depth-first search deepens its bound one preemption at a time, so the first failure it finds
  // has the fewest preemptions any failure has.
  for (; bound <= maxBound && failure === null; bound++) {
    const strategy = makeStrategy(strategyName, {
      seed,
      bound,
      depth: options.depth ?? 3,
      executionsMax,
      options,
    });
    complete = false;
    for (;;) {
      if (outOfBudget()) break;
      const decider = strategy.next();
      if (decider === null) break;
      const result = execute(scenario, config, keep, decider, {
        footprints: strategy.footprints,
        livelockSteps: options.livelockSteps,
        checkEachStep: options.checkEachStep,
        serialOutcomes: serial,
      });
      strategy.done(result);
      if (result.abandoned) abandoned++;
      else executions++;
      if (result.violation !== null) {
        failure = result;
        break;
      }
      if (options.onProgress !== undefined && clock() - lastProgress >= progressMs) {
        lastProgress = clock();
        options.onProgress({ executions, abandoned, seconds: (lastProgress - started) / 1000, bound });
      }
    }
    complete = strategy.complete;
    if (!complete || strategyName !== "dfs") break;
  }
  bound = Math.min(bound, maxBound);
  let finding: Finding | null = null;
  if (failure !== null) {
    const shrunk =
      options.shrink === false
        ? { keep, deviations: failure.deviations }
        : shrink(scenario, config, keep, failure, options.livelockSteps, options.checkEachStep);
    finding = replayFinding(
      scenario,
      config,
      shrunk.keep,
      shrunk.deviations,
      options.livelockSteps,
      options.checkEachStep,
    );
  }
  return {
    scenario: scenario.name,
    protocol: config.protocol,
    config,
    strategy: strategyName,
    finding,
    executions,
    abandoned,
    complete: finding === null && complete,
    seconds: (clock() - started) / 1000,
    bound,
  };
}

function makeStrategy(
  name: StrategyName,
  settings: { seed: number; bound: number; depth: number; executionsMax: number; options: ExploreOptions },
): Strategy {
  if (name === "pct") return new PctStrategy(settings.seed, settings.depth, settings.executionsMax);
  if (name === "random") return new RandomStrategy(settings.seed, settings.executionsMax);
  return new DfsStrategy({
    preemptions: settings.bound,
    reduction: settings.options.reduction,
    seed: settings.seed === 1 ? 0 : settings.seed,
    prefix: settings.options.prefix,
  });
}

/**
 * The threads that can run at the first choice point of `scenario` (empty when it has none): a
 * depth-first search splits over workers by these first choices.
 */
export function firstChoices(scenario: Scenario, config: ExploreConfig, keep: readonly boolean[]): number[] {
  let runnable: number[] = [];
  execute(scenario, config, keep, {
    choose: (point) => {
      if (point.index === 0) runnable = [...point.runnable];
      return -1;
    },
  });
  return runnable;
}

/** Replays a schedule with the trace on: the report's execution. */
export function replayFinding(
  scenario: Scenario,
  config: ExploreConfig,
  keep: readonly boolean[],
  deviations: readonly (readonly [number, number])[],
  livelockSteps?: number,
  checkEachStep?: boolean,
): Finding | null {
  const result = execute(scenario, config, keep, replayDecider(deviations), {
    trace: true,
    livelockSteps,
    checkEachStep,
    serialOutcomes: serialOutcomes(scenario, config, keep),
  });
  if (result.violation === null) return null;
  return {
    violation: result.violation,
    schedule: formatSchedule({ scenario: scenario.name, config, keep, deviations: result.deviations }),
    choicePoints: result.choices.length,
    preemptions: result.preemptions,
    steps: result.steps,
    keep,
    deviations: result.deviations,
    trace: result.trace,
    threadNames: result.threadNames,
  };
}

interface Candidate {
  readonly keep: readonly boolean[];
  readonly deviations: readonly (readonly [number, number])[];
  readonly preemptions: number;
  readonly steps: number;
  readonly ops: number;
}

/** Replays attempted while shrinking one failure, at most. */
const SHRINK_ATTEMPTS_MAX = 400;
/** Executions of the small search that looks for a failure once an operation is dropped. */
const SHRINK_SEARCH_MAX = 300;

/**
 * Shrinks a failure: fewest preemptions first, then fewest steps, then fewest operations (an operation
 * is dropped while the failure, of the same kind, remains).
 */
export function shrink(
  scenario: Scenario,
  config: ExploreConfig,
  keep: readonly boolean[],
  failure: ExecutionResult,
  livelockSteps?: number,
  checkEachStep?: boolean,
): { keep: readonly boolean[]; deviations: readonly (readonly [number, number])[] } {
  const kind = failure.violation!.kind;
  const serialCache = new Map<string, Set<string> | null>();
  const serialFor = (mask: readonly boolean[]): Set<string> | null => {
    const key = mask.map((on) => (on ? 1 : 0)).join("");
    if (!serialCache.has(key)) serialCache.set(key, serialOutcomes(scenario, config, mask));
    return serialCache.get(key)!;
  };
  serialCache.set(keep.map((on) => (on ? 1 : 0)).join(""), serialOutcomes(scenario, config, keep));
  let attempts = 0;
  const attempt = (
    mask: readonly boolean[],
    deviations: readonly (readonly [number, number])[],
  ): Candidate | null => {
    attempts++;
    const result = execute(scenario, config, mask, replayDecider(deviations), {
      livelockSteps,
      checkEachStep,
      serialOutcomes: serialFor(mask),
    });
    if (result.violation?.kind !== kind) return null;
    return candidateOf(mask, result);
  };
  let best: Candidate = candidateOf(keep, failure);
  const replayed = attempt(keep, failure.deviations);
  if (replayed !== null) best = replayed;
  const better = (a: Candidate, b: Candidate): boolean =>
    a.preemptions !== b.preemptions
      ? a.preemptions < b.preemptions
      : a.steps !== b.steps
        ? a.steps < b.steps
        : a.ops !== b.ops
          ? a.ops < b.ops
          : a.deviations.length < b.deviations.length;
  // A failure found by sampling may have more preemptions than it needs: look for one with fewer.
  if (best.preemptions > 0) {
    const fewer = searchSmall(
      scenario,
      config,
      best.keep,
      kind,
      best.preemptions - 1,
      serialFor(best.keep),
      livelockSteps,
    );
    if (fewer !== null) best = fewer;
  }
  let improved = true;
  while (improved && attempts < SHRINK_ATTEMPTS_MAX) {
    improved = false;
    // Drop one deviation (fewer preemptions or fewer forced switches).
    for (let i = best.deviations.length - 1; i >= 0 && attempts < SHRINK_ATTEMPTS_MAX; i--) {
      const deviations = best.deviations.filter((_, j) => j !== i);
      const tried = attempt(best.keep, deviations);
      if (tried !== null && !better(best, tried)) {
        if (better(tried, best) || tried.deviations.length < best.deviations.length) {
          best = tried;
          improved = true;
        }
      }
    }
    // Move a deviation earlier (a shorter run before the failure).
    for (let i = 0; i < best.deviations.length && attempts < SHRINK_ATTEMPTS_MAX; i++) {
      for (let back = 1; back <= 3; back++) {
        const [at, thread] = best.deviations[i]!;
        const previous = i === 0 ? -1 : best.deviations[i - 1]![0];
        if (at - back <= previous) break;
        const deviations = best.deviations.map((d, j): readonly [number, number] =>
          j === i ? [at - back, thread] : d,
        );
        const tried = attempt(best.keep, deviations);
        if (tried !== null && better(tried, best)) {
          best = tried;
          improved = true;
          break;
        }
      }
    }
    // Drop an operation.
    for (let op = 0; op < best.keep.length && attempts < SHRINK_ATTEMPTS_MAX; op++) {
      if (!best.keep[op] || best.ops <= 1) continue;
      const mask = best.keep.map((on, j) => on && j !== op);
      let tried = attempt(
        mask,
        best.deviations.filter(([, thread]) => thread !== op),
      );
      if (tried === null)
        tried = searchSmall(scenario, config, mask, kind, best.preemptions, serialFor(mask), livelockSteps);
      attempts++;
      if (tried !== null && tried.preemptions <= best.preemptions) {
        best = tried;
        improved = true;
      }
    }
  }
  return { keep: best.keep, deviations: best.deviations };
}

function candidateOf(keep: readonly boolean[], result: ExecutionResult): Candidate {
  return {
    keep,
    deviations: result.deviations,
    preemptions: result.preemptions,
    steps: result.steps,
    ops: keep.filter((on) => on).length,
  };
}

/** A bounded depth-first search for a failure of `kind` with the operations `keep`. */
function searchSmall(
  scenario: Scenario,
  config: ExploreConfig,
  keep: readonly boolean[],
  kind: string,
  bound: number,
  serial: Set<string> | null,
  livelockSteps?: number,
  checkEachStep?: boolean,
): Candidate | null {
  for (let preemptions = 0; preemptions <= bound; preemptions++) {
    const strategy = new DfsStrategy({ preemptions });
    for (let n = 0; n < SHRINK_SEARCH_MAX; n++) {
      const decider = strategy.next();
      if (decider === null) break;
      const result = execute(scenario, config, keep, decider, {
        footprints: true,
        livelockSteps,
        checkEachStep,
        serialOutcomes: serial,
      });
      if (result.violation?.kind === kind) return candidateOf(keep, result);
    }
  }
  return null;
}
