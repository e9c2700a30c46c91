/**
 * Search strategies: each hands out one decider per execution and learns from its result. All are
 * deterministic from a seed.
 *
 * - Depth-first search under a preemption bound (CHESS), optionally with sleep sets (Godefroid's
 *   partial-order reduction): at a choice point, a thread whose step was already explored from here
 *   sleeps in the sibling branches until a step that does not commute with it (their footprints share
 *   an object) runs. Executions that could only go on by running a sleeping thread repeat one already
 *   explored and are abandoned.
 * - PCT (Burckhardt et al., ASPLOS 2010): random thread priorities and d - 1 random priority change
 *   points; it finds a bug of depth d with probability at least 1 / (n k^(d-1)).
 * - Uniform random choice at each point.
 */
import { Rng } from "../base/rng.js";
import {
  type ChoicePoint,
  type Decider,
  defaultChoice,
  type ExecutionResult,
  isPreemption,
} from "./execution.js";

/** The schedule search strategies: depth-first with a preemption bound, PCT, or uniformly random. */
export type StrategyName = "dfs" | "pct" | "random";

export interface Strategy {
  /** The decider of the next execution, or null when the search space is exhausted. */
  next(): Decider | null;
  /** Told the result of the execution the last decider steered. */
  done(result: ExecutionResult): void;
  /** True once the whole (bounded) space has been explored. */
  readonly complete: boolean;
  /** Whether executions must record footprints. */
  readonly footprints: boolean;
}

/** A sleeping thread and the footprint of the step it would take. */
type Sleepers = Map<number, readonly number[]>;

interface DfsNode {
  readonly runnable: readonly number[];
  readonly current: number;
  readonly retrying: boolean;
  readonly preemptionsBefore: number;
  chosen: number;
  /** Threads explored from this node, in order; the last is `chosen`. */
  readonly explored: number[];
  /** Footprint of each explored thread's step from this node. */
  readonly footprints: Map<number, readonly number[]>;
  /** Threads asleep when the node was reached. */
  readonly sleep: Sleepers;
}

function disjoint(a: readonly number[], b: readonly number[]): boolean {
  for (const x of a) if (b.includes(x)) return false;
  return true;
}

export interface DfsOptions {
  /** Most preemptions per execution (Infinity for a plain exhaustive search). */
  readonly preemptions: number;
  /** Sleep-set reduction on (default true). */
  readonly reduction?: boolean;
  /** Permutes the order alternatives are tried in (0 keeps thread order). */
  readonly seed?: number;
  /** Only schedules that begin with these choices (a worker's share of the space). */
  readonly prefix?: readonly number[];
}

/** Depth-first search of the schedules with at most `preemptions` preemptions. */
export class DfsStrategy implements Strategy {
  private readonly stack: DfsNode[] = [];
  private started = false;
  private exhausted = false;
  private readonly rng: Rng | null;
  readonly footprints: boolean;
  private readonly bound: number;
  private readonly prefix: readonly number[];

  constructor(options: DfsOptions) {
    this.bound = options.preemptions;
    this.footprints = options.reduction !== false;
    this.rng = options.seed === undefined || options.seed === 0 ? null : new Rng(options.seed);
    this.prefix = options.prefix ?? [];
  }

  get complete(): boolean {
    return this.exhausted;
  }

  next(): Decider | null {
    if (this.exhausted) return null;
    if (this.started && !this.backtrack()) {
      this.exhausted = true;
      return null;
    }
    this.started = true;
    return this.decider();
  }

  done(_result: ExecutionResult): void {
    // The stack already holds what the execution chose; backtracking happens in next().
  }

  /** Moves the deepest node that has an untried alternative to it; false when none is left. */
  private backtrack(): boolean {
    const stack = this.stack;
    while (stack.length > this.prefix.length) {
      const node = stack[stack.length - 1]!;
      const alternative = this.alternative(node);
      if (alternative >= 0) {
        node.chosen = alternative;
        node.explored.push(alternative);
        return true;
      }
      stack.pop();
    }
    return false;
  }

  /** An untried thread at `node` within the bound and not asleep, or -1. */
  private alternative(node: DfsNode): number {
    const candidates = node.runnable.filter(
      (thread) =>
        !node.explored.includes(thread) &&
        !node.sleep.has(thread) &&
        node.preemptionsBefore + (this.preempts(node, thread) ? 1 : 0) <= this.bound,
    );
    if (candidates.length === 0) return -1;
    return this.rng === null ? candidates[0]! : candidates[this.rng.below(candidates.length)]!;
  }

  private preempts(node: DfsNode, thread: number): boolean {
    return isPreemption(node, thread);
  }

  private decider(): Decider {
    const stack = this.stack;
    let depth = 0;
    let preemptions = 0;
    let sleep: Sleepers = new Map();
    let pending: DfsNode | null = null;
    const reduction = this.footprints;
    return {
      choose: (point: ChoicePoint): number => {
        let node: DfsNode;
        if (depth < stack.length) {
          node = stack[depth]!;
        } else {
          const forced = depth < this.prefix.length ? this.prefix[depth]! : -1;
          node = {
            runnable: [...point.runnable],
            current: point.current,
            retrying: point.retrying,
            preemptionsBefore: preemptions,
            chosen: -1,
            explored: [],
            footprints: new Map(),
            sleep,
          };
          let first = forced;
          if (first < 0) {
            const fallback = defaultChoice(point);
            first =
              !sleep.has(fallback) && preemptions + (isPreemption(point, fallback) ? 1 : 0) <= this.bound
                ? fallback
                : this.alternative(node);
          }
          if (first < 0) {
            // Every thread that could run is asleep or past the bound: nothing new below here.
            pending = null;
            return -1;
          }
          node.chosen = first;
          node.explored.push(first);
          stack.push(node);
        }
        if (isPreemption(point, node.chosen)) preemptions++;
        pending = node;
        return node.chosen;
      },
      afterStep: (ran: number, footprint: readonly number[] | null, chosen: boolean): boolean => {
        if (chosen) {
          const node = pending;
          if (node === null) return false;
          depth++;
          if (!reduction || footprint === null) return true;
          const fp = [...footprint];
          node.footprints.set(ran, fp);
          const next: Sleepers = new Map();
          for (const [thread, theirs] of node.sleep) if (disjoint(theirs, fp)) next.set(thread, theirs);
          for (const thread of node.explored) {
            if (thread === ran) continue;
            const theirs = node.footprints.get(thread);
            if (theirs !== undefined && disjoint(theirs, fp)) next.set(thread, theirs);
          }
          sleep = next;
          return true;
        }
        if (!reduction || footprint === null || sleep.size === 0) return true;
        if (sleep.has(ran)) return false;
        for (const [thread, theirs] of sleep) if (!disjoint(theirs, footprint)) sleep.delete(thread);
        return true;
      },
    };
  }
}

/** Probabilistic concurrency testing with bug depth `depth`. */
export class PctStrategy implements Strategy {
  readonly complete = false;
  readonly footprints = false;
  private execution = 0;
  /** Longest execution seen, in choice points: where change points are drawn from. */
  private length = 16;

  constructor(
    private readonly seed: number,
    private readonly depth: number,
    private readonly executionsMax = Number.POSITIVE_INFINITY,
  ) {}

  next(): Decider | null {
    if (this.execution >= this.executionsMax) return null;
    const rng = new Rng(mix(this.seed, this.execution++));
    const priorities = new Map<number, number>();
    const changes = new Map<number, number>();
    for (let i = 1; i < this.depth; i++) changes.set(rng.below(this.length), this.depth - i);
    return {
      choose: (point: ChoicePoint): number => {
        for (const thread of point.runnable) {
          // Fresh threads get a random priority above every change point's.
          if (!priorities.has(thread)) priorities.set(thread, this.depth + rng.nextFloat());
        }
        const lowered = changes.get(point.index);
        if (lowered !== undefined && point.current >= 0) priorities.set(point.current, lowered);
        let best = -1;
        let bestPriority = Number.NEGATIVE_INFINITY;
        for (const thread of point.runnable) {
          // A thread spinning in a retry loop lets the others go first, as a fair scheduler does.
          const priority = priorities.get(thread)! - (point.retrying && thread === point.current ? 1e9 : 0);
          if (priority > bestPriority) {
            best = thread;
            bestPriority = priority;
          }
        }
        return best;
      },
    };
  }

  done(result: ExecutionResult): void {
    if (result.choices.length > this.length) this.length = result.choices.length;
  }
}

/** Uniform random choice among the runnable threads. */
export class RandomStrategy implements Strategy {
  readonly complete = false;
  readonly footprints = false;
  private execution = 0;

  constructor(
    private readonly seed: number,
    private readonly executionsMax = Number.POSITIVE_INFINITY,
  ) {}

  next(): Decider | null {
    if (this.execution >= this.executionsMax) return null;
    const rng = new Rng(mix(this.seed, this.execution++));
    return {
      choose: (point: ChoicePoint): number => {
        const { runnable } = point;
        if (point.retrying && runnable.length > 1) {
          const others = runnable.filter((thread) => thread !== point.current);
          return others[rng.below(others.length)]!;
        }
        return runnable[rng.below(runnable.length)]!;
      },
    };
  }

  done(_result: ExecutionResult): void {}
}

/** A seed for execution `n` of a run seeded `seed` (distinct, deterministic). */
function mix(seed: number, n: number): number {
  let x = (seed ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0 || 1;
}
