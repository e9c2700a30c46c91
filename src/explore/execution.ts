/**
 * One execution of a scenario: build it afresh, run its threads under a decider's choices, and judge
 * the outcome with the sanitizers and oracles. Strategies (strategies.ts) are deciders; the explorer
 * (explore.ts) runs executions until one fails or the search is done.
 */
import { AssertionError } from "../base/assert.js";
import { KernelError } from "../base/errno.js";
import { UseAfterFreeError } from "../mm/kasan.js";
import { describeFlags } from "../mm/page.js";
import { describePte, pteFrame } from "../mm/pgtable.js";
import { DeadlockError, LivelockError, ThreadFailure } from "../sched/scheduler.js";
import type { Thread } from "../sched/thread.js";
import type { ExploreConfig, Scenario, ScenarioSetup, ViolationKind } from "./scenario.js";
import { stateFingerprint } from "./state_hash.js";

/** What the explorer found wrong with one execution. */
export interface Violation {
  readonly kind: ViolationKind;
  /** One line, then details: the waits of a deadlock, the cycle of a livelock, the invariant lines. */
  readonly message: string;
}

/** A point where two or more threads could run; threads are named by their index (see ThreadIndex). */
export interface ChoicePoint {
  /** Choice points before this one in the execution. */
  readonly index: number;
  /** Indexes of the runnable threads, ascending. */
  readonly runnable: readonly number[];
  /** The thread that ran the last step, if it can still run; -1 when it cannot (it blocked or ended). */
  readonly current: number;
  /** True when `current` is in a retry loop, waiting for another thread: switching away is fair, not a preemption. */
  readonly retrying: boolean;
  /** The runnable threads themselves, parallel to `runnable` (their labels say what each will do). */
  readonly threads: readonly Thread[];
}

/** How a strategy steers one execution. */
export interface Decider {
  /**
   * The index of the thread to run at this choice point, one of `point.runnable`; -1 abandons the
   * execution (the reduction knows everything below here repeats what was explored).
   */
  choose(point: ChoicePoint): number;
  /**
   * After every step: the thread that ran, the objects the step touched (when recording) and whether
   * the step followed a choice. Returning false abandons the execution (the reduction knows it repeats
   * one already explored).
   */
  afterStep?(ran: number, footprint: readonly number[] | null, chosen: boolean): boolean;
}

/** The thread a non-preemptive scheduler runs next: the current one, unless it waits in a retry loop. */
export function defaultChoice(point: Pick<ChoicePoint, "runnable" | "current" | "retrying">): number {
  const { runnable, current } = point;
  if (current >= 0 && !point.retrying) return current;
  if (current >= 0) {
    // Fair: the next runnable thread after the spinning one, round the table.
    for (const index of runnable) if (index > current) return index;
    for (const index of runnable) if (index !== current) return index;
    return current;
  }
  return runnable[0]!;
}

/**
 * Whether running `chosen` at `point` counts as a preemption: switching away from a thread that could
 * go on, or, where it spins in a retry loop, running any thread but the one a fair scheduler runs next
 * (so that a bounded search cannot starve a thread for free).
 */
export function isPreemption(
  point: Pick<ChoicePoint, "runnable" | "current" | "retrying">,
  chosen: number,
): boolean {
  if (point.current < 0) return false;
  return point.retrying ? chosen !== defaultChoice(point) : chosen !== point.current;
}

/** One row of a traced execution: a step of one thread. */
export interface TraceStep {
  readonly thread: number;
  readonly label: string;
  readonly object: string;
  /** The watched state after the step, when it changed ("" when it did not). */
  readonly state: string;
}

export interface ExecutionOptions {
  /** Record footprints (for the partial-order reduction). */
  readonly footprints?: boolean;
  /** Steps without any operation completing before the execution counts as a livelock. */
  readonly livelockSteps?: number;
  /** Record every step for the report. */
  readonly trace?: boolean;
  /**
   * Run the invariant checker after every step too, not only at the end (the checks that hold only at
   * quiescence, such as leaked references and stale TLB entries, wait for the end).
   */
  readonly checkEachStep?: boolean;
  /** The serial outcomes of the data oracle (computed once per scenario and operation set). */
  readonly serialOutcomes?: ReadonlySet<string> | null;
}

export interface ExecutionResult {
  readonly violation: Violation | null;
  /** Abandoned by the decider (a repeat the reduction pruned), so not judged. */
  readonly abandoned: boolean;
  /** The thread index chosen at each choice point. */
  readonly choices: readonly number[];
  /** Choice points where the choice differed from defaultChoice: [choice index, thread index]. */
  readonly deviations: readonly (readonly [number, number])[];
  readonly preemptions: number;
  readonly steps: number;
  /** Observations of the data oracle ("" when the execution was not judged). */
  readonly outcome: string;
  readonly trace: readonly TraceStep[];
  /** Thread names by index, for the report. */
  readonly threadNames: readonly string[];
}

const DEFAULT_LIVELOCK_STEPS = 2000;
/** Steps without progress before the lasso starts fingerprinting states. */
const LASSO_AFTER_STEPS = 6;
/** Steps of the trace kept to show a livelock's cycle. */
const CYCLE_WINDOW = 240;

/** Runs one execution of `scenario` with operations `keep` under `config`, steered by `decider`. */
export function execute(
  scenario: Scenario,
  config: ExploreConfig,
  keep: readonly boolean[],
  decider: Decider,
  options: ExecutionOptions = {},
): ExecutionResult {
  const setup = scenario.build(config, keep);
  const k = setup.system.kernel;
  const sched = k.sched;
  const footprints = options.footprints === true;
  k.recordFootprints(footprints);
  const indexById = new Map<number, number>();
  const threadNames: string[] = [];
  const observers: (((result: unknown) => string) | undefined)[] = [];
  const threads: Thread[] = [];
  for (const spec of setup.threads) {
    const name = scenario.operations[spec.op]?.name ?? `op ${spec.op}`;
    const thread = sched.spawn(name, spec.body, spec.cpu);
    indexById.set(thread.id, spec.op);
    threadNames[spec.op] = name;
    observers[spec.op] = spec.observe;
    threads[spec.op] = thread;
  }
  let nextDynamic = scenario.operations.length;
  const indexOf = (thread: Thread): number => {
    let index = indexById.get(thread.id);
    if (index === undefined) {
      index = nextDynamic++;
      indexById.set(thread.id, index);
      threadNames[index] = thread.name;
      threads[index] = thread;
    }
    return index;
  };
  const choices: number[] = [];
  const deviations: [number, number][] = [];
  let preemptions = 0;
  let choseThisStep = false;
  let abandonAtChoice = false;
  const runnableIndexes: number[] = [];
  sched.setChooser((runnable) => {
    runnableIndexes.length = 0;
    for (const thread of runnable) runnableIndexes.push(indexOf(thread));
    const last = sched.lastRun;
    const lastIndex = last !== null && last.state === "runnable" ? indexOf(last) : -1;
    const point: ChoicePoint = {
      index: choices.length,
      runnable: runnableIndexes,
      current: lastIndex,
      retrying: last?.retrying === true,
      threads: runnable,
    };
    const chosen = decider.choose(point);
    if (chosen === -1) {
      abandonAtChoice = true;
      return 0;
    }
    const at = runnableIndexes.indexOf(chosen);
    if (at < 0) throw new AssertionError(`the strategy chose thread ${chosen}, which cannot run`);
    if (chosen !== defaultChoice(point)) deviations.push([choices.length, chosen]);
    if (isPreemption(point, chosen)) preemptions++;
    choices.push(chosen);
    choseThisStep = true;
    return at;
  });
  const livelockSteps = options.livelockSteps ?? DEFAULT_LIVELOCK_STEPS;
  const trace: TraceStep[] = [];
  const recentThreads = new Int32Array(CYCLE_WINDOW);
  const recentLabels = new Array<string>(CYCLE_WINDOW).fill("");
  const recent = (): string[] => {
    const lines: string[] = [];
    for (let i = Math.max(0, steps - CYCLE_WINDOW) + 1; i <= steps; i++) {
      const at = i % CYCLE_WINDOW;
      lines.push(`${threadNames[recentThreads[at]!]}: ${recentLabels[at]}`);
    }
    return lines;
  };
  let violation: Violation | null = null;
  let abandoned = false;
  let steps = 0;
  let sinceProgress = 0;
  const threadOfId = (id: number): string => {
    const index = indexById.get(id);
    return index === undefined ? `thread ${id}` : `T${index}`;
  };
  const watchedBefore = { state: options.trace === true ? watchedState(setup, threadOfId) : "" };
  const labels = new Map<Thread, [string, number]>();
  /** Fingerprints of the states seen since an operation last completed, with the step of each. */
  const seenStates = new Map<string, number>();
  /**
   * The lasso: the state after this step was seen before (once some thread has gone round a retry
   * loop), with no operation completed since and every thread that could run having run in between,
   * so a fair scheduler can repeat the same steps for ever.
   */
  let retriedSinceProgress = false;
  const lasso = (): Violation | null => {
    const key = stateFingerprint(k);
    const before = seenStates.get(key);
    if (before === undefined) {
      seenStates.set(key, steps);
      return null;
    }
    const cycle = steps - before;
    if (cycle > CYCLE_WINDOW) return null;
    const ranInCycle = new Set<number>();
    for (let i = before + 1; i <= steps; i++) ranInCycle.add(recentThreads[i % CYCLE_WINDOW]!);
    for (const thread of sched.liveThreads()) {
      if (thread.state === "runnable" && !ranInCycle.has(indexOf(thread))) return null;
    }
    const lines = recent().slice(-cycle);
    return {
      kind: "livelock",
      message:
        `livelock: the state after step ${before} came back after step ${steps} with no operation completed, ` +
        `every runnable thread having run: a fair scheduler can repeat these ${cycle} steps for ever\n  ${lines.join("\n  ")}`,
    };
  };
  for (;;) {
    if (options.trace === true) {
      labels.clear();
      for (const thread of sched.liveThreads()) labels.set(thread, [thread.label, thread.object]);
    }
    choseThisStep = false;
    let more: boolean;
    try {
      more = sched.step();
    } catch (error) {
      const ran = sched.lastRun;
      if (abandonAtChoice) {
        abandoned = true;
        break;
      }
      if (error instanceof ThreadFailure && isOperationError(error.cause)) {
        // The operation failed as a system call fails: its result, not a violation.
        more = true;
      } else {
        violation = classify(error, recent());
        if (options.trace === true && ran !== null) recordStep(ran);
        break;
      }
    }
    if (abandonAtChoice) {
      abandoned = true;
      break;
    }
    if (!more) break;
    steps++;
    const ran = sched.lastRun!;
    const ranIndex = indexOf(ran);
    if (options.trace === true) recordStep(ran);
    // A ring of the last steps (thread and label, no strings built), for a livelock's cycle.
    recentThreads[steps % CYCLE_WINDOW] = ranIndex;
    recentLabels[steps % CYCLE_WINDOW] = ran.label;
    if (decider.afterStep !== undefined && !decider.afterStep(ranIndex, sched.footprint, choseThisStep)) {
      abandoned = true;
      break;
    }
    if (options.checkEachStep === true && scenario.invariants !== false) {
      const lines = setup.system.checkInvariants();
      if (lines.length > 0) {
        violation = {
          kind: "invariant",
          message: `invariant violated after step ${steps}: ${lines.join("\n  ")}`,
        };
        break;
      }
    }
    if (ran.retrying) retriedSinceProgress = true;
    if (!ran.live) {
      sinceProgress = 0;
      seenStates.clear();
      retriedSinceProgress = false;
      continue;
    }
    // The lasso's fingerprint costs a pass over the system: taken only once a thread has retried and
    // a few steps have gone by without progress (no cycle is shorter than what it repeats).
    violation = retriedSinceProgress && sinceProgress >= LASSO_AFTER_STEPS ? lasso() : null;
    if (violation !== null) break;
    if (++sinceProgress > livelockSteps) {
      violation = {
        kind: "livelock",
        message: `livelock: no operation completed in ${livelockSteps} steps under a fair scheduler\n${describeCycle(recent())}`,
      };
      break;
    }
  }
  sched.setChooser(() => 0);
  let outcome = "";
  if (violation === null && !abandoned) {
    k.recordFootprints(false);
    const judged = judge(scenario, setup, threads, observers, options.serialOutcomes ?? null);
    violation = judged.violation;
    outcome = judged.outcome;
  }
  return { violation, abandoned, choices, deviations, preemptions, steps, outcome, trace, threadNames };

  function recordStep(ran: Thread): void {
    const [label, object] = labels.get(ran) ?? [ran.label, ran.object];
    const state = watchedState(setup, threadOfId);
    trace.push({
      thread: indexOf(ran),
      label,
      object: sched.describeObject(object),
      state: state === watchedBefore.state ? "" : state,
    });
    watchedBefore.state = state;
  }
}

/** A thread's error that is the result of its operation: the errno or signal a system call returns. */
function isOperationError(cause: unknown): boolean {
  return cause instanceof KernelError;
}

/** The violation a failed step stands for. */
function classify(error: unknown, recent: readonly string[]): Violation {
  if (error instanceof DeadlockError) return { kind: "deadlock", message: error.message };
  const cause = error instanceof ThreadFailure ? error.cause : error;
  const who = error instanceof ThreadFailure ? `${error.thread}: ` : "";
  const text = cause instanceof Error ? cause.message : String(cause);
  if (cause instanceof LivelockError)
    return { kind: "livelock", message: `${who}${text}\n${describeCycle(recent)}` };
  if (cause instanceof UseAfterFreeError) return { kind: "use-after-free", message: `${who}${text}` };
  if (cause instanceof AssertionError)
    return { kind: "assertion", message: `${who}kernel assertion: ${text}` };
  return {
    kind: "assertion",
    message: `${who}model error: ${cause instanceof Error ? `${cause.name}: ${text}` : text}`,
  };
}

/** The shortest cycle the last steps repeat, printed one step a line (a livelock's signature). */
export function describeCycle(recent: readonly string[]): string {
  const n = recent.length;
  for (let period = 1; period <= n / 3; period++) {
    let repeats = true;
    for (let i = n - 2 * period; i < n - period && repeats; i++) {
      if (recent[i] !== recent[i + period]) repeats = false;
    }
    if (repeats) return `repeating cycle of ${period} steps:\n  ${recent.slice(n - period).join("\n  ")}`;
  }
  return `last steps:\n  ${recent.slice(Math.max(0, n - 12)).join("\n  ")}`;
}

/** The oracles at the end of an execution: invariants, the scenario's checks, the data oracle. */
function judge(
  scenario: Scenario,
  setup: ScenarioSetup,
  threads: readonly Thread[],
  observers: readonly (((result: unknown) => string) | undefined)[],
  serial: ReadonlySet<string> | null,
): { violation: Violation | null; outcome: string } {
  if (scenario.invariants !== false) {
    const lines = setup.system.checkInvariants();
    if (lines.length > 0)
      return {
        violation: { kind: "invariant", message: `invariant violated: ${lines.join("\n  ")}` },
        outcome: "",
      };
  }
  const outcome = outcomeOf(setup, threads, observers);
  if (serial !== null && !serial.has(outcome)) {
    const some = [...serial].slice(0, 3);
    const more = serial.size > 3 ? `\n          ... and ${serial.size - 3} more` : "";
    const message = `data: what the threads saw matches no serial order of the operations\n  seen:   ${outcome}\n  serial: ${some.join("\n          ")}${more}`;
    return { violation: { kind: "data", message }, outcome };
  }
  const checked = setup.check?.() ?? [];
  if (checked.length > 0)
    return { violation: { kind: "invariant", message: `check failed: ${checked.join("\n  ")}` }, outcome };
  return { violation: null, outcome };
}

/** The observations the data oracle compares: each observing operation's result, then the final state. */
export function outcomeOf(
  setup: ScenarioSetup,
  threads: readonly Thread[],
  observers: readonly (((result: unknown) => string) | undefined)[],
): string {
  const parts: string[] = [];
  observers.forEach((observe, op) => {
    if (observe === undefined) return;
    const thread = threads[op]!;
    if (thread.state === "failed") {
      const cause = thread.error;
      parts.push(`${op}:${cause instanceof KernelError ? cause.code : "failed"}`);
    } else parts.push(`${op}:${observe(thread.result)}`);
  });
  if (setup.observeFinal !== undefined) parts.push(`final:${setup.observeFinal()}`);
  return parts.join(" ");
}

/** The watched addresses' PTEs and the pages they name, for the report's state column. */
function watchedState(setup: ScenarioSetup, threadOfId: (id: number) => string): string {
  const watch = setup.watch;
  if (watch === undefined || watch.length === 0) return "";
  const k = setup.system.kernel;
  const parts: string[] = [];
  for (const { process, vpn } of watch) {
    const proc = setup.system.liveProcesses().find((candidate) => candidate.pid === process);
    if (proc === undefined) continue;
    const pte = k.pt.read(proc.mm.root, vpn);
    let text = `vpn 0x${vpn.toString(16)}: ${describePte(pte)}`;
    const pfn = pte === 0 ? -1 : pteFrame(pte);
    if (pfn >= 0 && pfn < k.pages.capacity) {
      const holder = k.pages.lockHolder[pfn]!;
      const locked = holder === 0 ? "" : ` by ${threadOfId(holder)}`;
      text += ` (ref ${k.pages.refcount[pfn]} map ${k.pages.mapcount[pfn]} ${describeFlags(k.pages.flags[pfn]!)}${locked})`;
    }
    parts.push(text);
  }
  return parts.join("; ");
}
