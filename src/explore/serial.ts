/**
 * The data oracle's reference: the outcomes of every serial order of a scenario's operations (each
 * runs alone to completion, one after another), as Lincheck checks a concurrent run against a
 * sequential specification. A concurrent execution is correct for the oracle when what its threads
 * saw, and the final state, equal those of one of these orders.
 */
import { KernelError } from "../base/errno.js";
import { ThreadFailure } from "../sched/scheduler.js";
import type { Thread } from "../sched/thread.js";
import { outcomeOf } from "./execution.js";
import type { ExploreConfig, Scenario } from "./scenario.js";

/** Operations beyond which the orders are too many to enumerate (8! = 40,320 builds). */
export const SERIAL_OPERATIONS_MAX = 8;

/** Steps after which a serial order is given up as one that cannot run serially. */
const SERIAL_STEPS_MAX = 100_000;

/**
 * The set of serial outcomes, or null when there is nothing to compare (the scenario observes
 * nothing, turns the oracle off, or has too many operations).
 */
export function serialOutcomes(
  scenario: Scenario,
  config: ExploreConfig,
  keep: readonly boolean[],
): Set<string> | null {
  if (scenario.serialOracle === false) return null;
  const kept: number[] = [];
  keep.forEach((on, op) => {
    if (on) kept.push(op);
  });
  if (kept.length > SERIAL_OPERATIONS_MAX) return null;
  const outcomes = new Set<string>();
  let observes = false;
  for (const order of permutations(kept)) {
    const setup = scenario.build(config, keep);
    const sched = setup.system.kernel.sched;
    // An operation that waits for one that has not run yet would spin for ever alone.
    sched.stepsMax = sched.stepsTaken + SERIAL_STEPS_MAX;
    const threads: Thread[] = [];
    const observers: (((result: unknown) => string) | undefined)[] = [];
    const byOp = new Map(setup.threads.map((spec) => [spec.op, spec]));
    let completed = true;
    for (const op of order) {
      const spec = byOp.get(op)!;
      observers[op] = spec.observe;
      if (spec.observe !== undefined) observes = true;
      const thread = sched.spawn(scenario.operations[op]?.name ?? `op ${op}`, spec.body, spec.cpu);
      threads[op] = thread;
      try {
        sched.runAll();
      } catch (error) {
        // An operation failing as a system call does is its result; anything else (it waits for an
        // operation that has not run yet, say) means this order cannot run serially.
        if (!(error instanceof ThreadFailure && error.cause instanceof KernelError)) {
          completed = false;
          break;
        }
      }
    }
    if (completed) outcomes.add(outcomeOf(setup, threads, observers));
    if (setup.observeFinal !== undefined) observes = true;
  }
  return observes ? outcomes : null;
}

/** Every order of `items` (Heap's algorithm), lazily. */
export function* permutations<T>(items: readonly T[]): Generator<T[]> {
  const a = [...items];
  const c = new Array<number>(a.length).fill(0);
  yield [...a];
  let i = 0;
  while (i < a.length) {
    if (c[i]! < i) {
      const j = i % 2 === 0 ? 0 : c[i]!;
      [a[j], a[i]] = [a[i]!, a[j]!];
      yield [...a];
      c[i]!++;
      i = 0;
    } else {
      c[i] = 0;
      i++;
    }
  }
}
