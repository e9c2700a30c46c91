/**
 * The scheduler: at each step it asks a chooser which runnable thread continues, then runs that
 * thread to its next scheduling point. Every choice between two or more threads is recorded, so the
 * schedule (with the system's seed) replays the run exactly.
 */
import { assert } from "../base/assert.js";
import { KernelError } from "../base/errno.js";
import {
  OBJ_LOCK,
  OBJ_NAMED,
  OBJ_PAGE,
  OBJ_PMD,
  OBJ_PTE_TABLE,
  OBJ_TLB,
  objectId,
  objectIndex,
  objectKind,
} from "./objects.js";
import { BLOCKED, type Kfn, PREEMPT, Thread, type TrackedLocks, type Waitable } from "./thread.js";

/** Picks the index, in `runnable` (ordered by thread id), of the thread that runs next. */
export type Chooser = (runnable: readonly Thread[], choiceIndex: number) => number;

/** The default: the lowest-numbered runnable thread continues, so a lone call runs to completion. */
export const firstRunnable: Chooser = () => 0;

/** Replays a recorded schedule; past its end it falls back to `then`. */
export function replayChooser(schedule: readonly number[], then: Chooser = firstRunnable): Chooser {
  return (runnable, choiceIndex) => {
    if (choiceIndex >= schedule.length) return then(runnable, choiceIndex);
    const wantedId = schedule[choiceIndex]!;
    const index = runnable.findIndex((thread) => thread.id === wantedId);
    assert(
      index >= 0,
      "replayed schedule names a thread that cannot run",
      () => `choice ${choiceIndex}: thread ${wantedId}`,
    );
    return index;
  };
}

/** Every live thread is blocked: reported with who waits on what and who holds it. */
export class DeadlockError extends Error {
  override readonly name = "DeadlockError";
  constructor(
    readonly waits: readonly string[],
    readonly schedule: readonly number[],
  ) {
    super(`deadlock: every thread is blocked\n  ${waits.join("\n  ")}`);
  }
}

/**
 * A kernel path that would never return: it spins or retries for ever in the kernel (an unkillable
 * loop, a fault retried without progress), and the model stops it and says why. Like DeadlockError it
 * reports what the kernel would do, not a misuse: a caller gets it instead of a hang.
 */
export class LivelockError extends Error {
  override readonly name: string = "LivelockError";
}

/**
 * A thread threw: the error is wrapped with the thread, the schedule that led to it, and the locks the
 * scheduler released for it (a failed thread releases everything it held, so that the rest of the
 * system stays usable and the checker can look at it).
 */
export class ThreadFailure extends Error {
  override readonly name = "ThreadFailure";
  constructor(
    readonly thread: Thread,
    override readonly cause: unknown,
    readonly schedule: readonly number[],
    readonly released: readonly string[] = [],
  ) {
    super(
      `${thread} failed: ${cause instanceof Error ? cause.message : String(cause)}` +
        (released.length === 0 ? "" : ` (released: ${released.join(", ")})`),
    );
  }
}

/** How a Scheduler is built: the chooser, the CPU count and the step limit. */
export interface SchedulerOptions {
  chooser?: Chooser;
  /** CPUs in the system; threads are placed on them round-robin unless a CPU is given. */
  cpus?: number;
  /** Limit on scheduling steps of one run, so a livelock ends with an error instead of hanging. */
  stepsMax?: number;
}

/**
 * The scheduler: runs kernel threads (generators) one scheduling point at a time, asking a chooser which runs
 * next, and records every choice so a run replays.
 */
export class Scheduler {
  private readonly threads: Thread[] = [];
  private readonly liveById = new Map<number, Thread>();
  private nextThreadId = 1;
  private nextCpu = 0;
  private running: Thread | null = null;
  private chooser: Chooser;
  readonly cpus: number;
  /** Steps one run may take before it is reported as a livelock; the explorer sets its own bound. */
  stepsMax: number;
  /** The thread that ran the last step (a choice of another while it can still run is a preemption). */
  lastRun: Thread | null = null;
  /**
   * When the explorer records footprints: the objects the step now running has touched, starting with
   * the object its scheduling point named. Locks add themselves when released or tried, pages when their
   * reference count changes. Null (the default) records nothing and costs one test.
   */
  footprint: number[] | null = null;
  /** Descriptions of the objects of kind OBJ_LOCK and OBJ_NAMED, by index. */
  private readonly objectNames: string[] = [""];
  /** Thread ids chosen at each point where two or more threads could run. */
  readonly schedule: number[] = [];
  /** Scheduling steps taken so far, all threads together. */
  stepsTaken = 0;
  /** Live threads; when it is 1 a scheduling point has nothing to decide and is skipped. */
  liveCount = 0;
  /** Every kind of lock that registered (see TrackedLocks), in registration order. */
  private readonly trackedLocks: TrackedLocks[] = [];

  constructor(options: SchedulerOptions = {}) {
    this.chooser = options.chooser ?? firstRunnable;
    this.cpus = options.cpus ?? 2;
    this.stepsMax = options.stepsMax ?? 2 ** 40;
    assert(Number.isInteger(this.cpus) && this.cpus >= 1 && this.cpus <= 256, "cpus must be 1 to 256", () =>
      String(options.cpus),
    );
  }

  /** Registers locks whose holders the scheduler releases when a thread fails, and reports when gone. */
  trackLocks(locks: TrackedLocks): void {
    this.trackedLocks.push(locks);
  }

  /** Stops tracking locks that go away with their owner (an exited mm's mmap_lock, a released mirror's mutex). */
  untrackLocks(locks: TrackedLocks): void {
    const index = this.trackedLocks.indexOf(locks);
    if (index >= 0) this.trackedLocks.splice(index, 1);
  }

  /** How many kinds of lock are tracked: stays bounded while processes and files come and go. */
  get trackedLockCount(): number {
    return this.trackedLocks.length;
  }

  /** One line per tracked lock held by a thread that has finished or failed. */
  locksHeldByGoneThreads(): string[] {
    const lines: string[] = [];
    for (const locks of this.trackedLocks) lines.push(...locks.heldByGoneThreads());
    return lines;
  }

  private releaseHeldBy(thread: Thread): string[] {
    const released: string[] = [];
    for (const locks of this.trackedLocks) released.push(...locks.releaseHeldBy(thread));
    return released;
  }

  /**
   * A scheduling point of the running thread: records what it is about to do and the shared object it
   * touches, and returns the value to yield. Call it only when `contended`, so a lone thread pays
   * nothing: `if (sched.contended) yield sched.at("do_swap_page: pte_offset_map_lock", object)`.
   */
  at(label: string, object: number): typeof PREEMPT {
    const thread = this.current();
    thread.label = label;
    thread.object = object;
    return PREEMPT;
  }

  /**
   * A scheduling point in a retry loop: the thread waits for another to make progress (it refaults,
   * or hmm_range_fault saw -EBUSY). A fair scheduler lets another thread run here; the explorer does.
   */
  atRetry(label: string, object: number): typeof PREEMPT {
    const thread = this.current();
    thread.label = label;
    thread.object = object;
    thread.retrying = true;
    return PREEMPT;
  }

  /** Records that the running step touched `object` (when footprints are being recorded). */
  touch(object: number): void {
    const footprint = this.footprint;
    if (footprint !== null) footprint.push(object);
  }

  /** A new object id of kind OBJ_LOCK or OBJ_NAMED, described by `description` in reports. */
  nameObject(kind: typeof OBJ_LOCK | typeof OBJ_NAMED, description: string): number {
    this.objectNames.push(description);
    return objectId(kind, this.objectNames.length - 1);
  }

  /** An object in words, for schedules and reports. */
  describeObject(object: number): string {
    const index = objectIndex(object);
    switch (objectKind(object)) {
      case OBJ_LOCK:
      case OBJ_NAMED:
        return this.objectNames[index] ?? `object ${object}`;
      case OBJ_PTE_TABLE:
        return `PTE table ${index}`;
      case OBJ_PAGE:
        return `pfn ${index}`;
      case OBJ_TLB:
        return `TLBs of mm ${index}`;
      case OBJ_PMD:
        return `PMD ${index}`;
      default:
        return object === 0 ? "nothing shared" : `object ${object}`;
    }
  }

  /** Replaces the chooser that decides the following scheduling points. */
  setChooser(chooser: Chooser): void {
    this.chooser = chooser;
  }

  /** True when more than one thread is alive, so a scheduling point must be offered to the chooser. */
  get contended(): boolean {
    return this.liveCount > 1;
  }

  /** The thread now running. Kernel code runs only inside a thread. */
  current(): Thread {
    const thread = this.running;
    assert(thread !== null, "kernel code ran outside a thread");
    return thread;
  }

  /** The running thread, or null outside any thread. */
  currentOrNull(): Thread | null {
    return this.running;
  }

  /** Creates a runnable thread named `name` running `body`, on `cpu` or the next CPU round-robin. */
  spawn<T>(name: string, body: Kfn<T>, cpu?: number): Thread {
    const onCpu = cpu ?? this.nextCpu++ % this.cpus;
    assert(onCpu >= 0 && onCpu < this.cpus, "no such cpu", () => `${onCpu} of ${this.cpus}`);
    const thread = new Thread(this.nextThreadId++, name, onCpu, body);
    this.threads.push(thread);
    this.liveById.set(thread.id, thread);
    this.liveCount++;
    return thread;
  }

  /** Marks the running thread asleep on `on`; the caller then yields BLOCKED. */
  sleep(on: Waitable): void {
    const thread = this.current();
    assert(thread.state === "runnable", "only a running thread can sleep", () => thread.toString());
    thread.state = "blocked";
    thread.waitingOn = on;
  }

  /** Makes a blocked thread runnable again (a no-op for a thread that is not blocked). */
  wake(thread: Thread): void {
    if (thread.state !== "blocked") return;
    thread.state = "runnable";
    thread.waitingOn = null;
  }

  /** The live thread with this id, or null (finished, or never existed). */
  byId(id: number): Thread | null {
    return this.liveById.get(id) ?? null;
  }

  /** Threads that have not finished, in id order. */
  liveThreads(): Thread[] {
    return this.threads.filter((thread) => thread.live);
  }

  /** Every thread spawned so far, finished ones included, in id order. */
  allThreads(): readonly Thread[] {
    return this.threads;
  }

  /**
   * Runs one step: chooses a runnable thread and advances it to its next scheduling point.
   * Returns false when no thread is live. Throws DeadlockError when live threads are all blocked.
   */
  step(): boolean {
    if (this.liveCount === 0) return false;
    const runnable = this.threads.filter((thread) => thread.state === "runnable");
    if (runnable.length === 0) throw new DeadlockError(this.describeWaits(), [...this.schedule]);
    let thread: Thread;
    if (runnable.length === 1) {
      thread = runnable[0]!;
    } else {
      const index = this.chooser(runnable, this.schedule.length);
      thread = runnable[index]!;
      assert(
        thread !== undefined,
        "chooser picked no runnable thread",
        () => `index ${index} of ${runnable.length}`,
      );
      this.schedule.push(thread.id);
    }
    this.advance(thread);
    return true;
  }

  /** Runs until `thread` finishes, other threads interleaving as the chooser decides; returns its result. */
  run<T>(thread: Thread): T {
    while (thread.live) this.step();
    this.reap();
    if (thread.state === "failed") throw thread.error;
    return thread.result as T;
  }

  /** Runs until every thread has finished. */
  runAll(): void {
    while (this.step()) {
      // each step advances one thread
    }
    this.reap();
  }

  /** Spawns `body` as a thread and runs it to completion: how plain API calls execute. */
  call<T>(name: string, body: Kfn<T>, cpu?: number): T {
    assert(this.running === null, "a blocking call was made from inside a thread", () => name);
    const thread = this.spawn(name, body, cpu);
    try {
      return this.run<T>(thread);
    } catch (error) {
      // A plain call fails as a system call does: its own KernelError (or SignalError) comes out
      // unwrapped, and so does the LivelockError of a call the kernel would never return from. Any
      // other failure, or another thread's, keeps the ThreadFailure with its schedule.
      if (
        error instanceof ThreadFailure &&
        error.thread === thread &&
        (error.cause instanceof KernelError || error.cause instanceof LivelockError)
      )
        throw error.cause;
      throw error;
    }
  }

  private advance(thread: Thread): void {
    assert(this.running === null, "scheduler re-entered", () => thread.toString());
    this.running = thread;
    this.stepsTaken++;
    thread.steps++;
    thread.retrying = false;
    const footprint = this.footprint;
    if (footprint !== null) {
      footprint.length = 0;
      // Object 0 names nothing shared (a thread's first step, before any point named one).
      if (thread.object !== 0) footprint.push(thread.object);
    }
    try {
      const next = thread.body.next();
      if (next.done === true) {
        thread.state = "done";
        thread.result = next.value;
        this.liveCount--;
        this.liveById.delete(thread.id);
      } else if (next.value === BLOCKED) {
        assert(thread.state === "blocked", "thread yielded BLOCKED without sleeping", () =>
          thread.toString(),
        );
      } else {
        assert(thread.state === "runnable", "thread yielded PREEMPT while asleep", () => thread.toString());
      }
    } catch (error) {
      thread.state = "failed";
      thread.error = error;
      this.liveCount--;
      this.liveById.delete(thread.id);
      this.running = null;
      const released = this.releaseHeldBy(thread);
      throw new ThreadFailure(thread, error, [...this.schedule], released);
    } finally {
      this.running = null;
      this.lastRun = thread;
    }
    if (this.stepsTaken > this.stepsMax) {
      throw new LivelockError(
        `scheduler passed its limit of ${this.stepsMax} steps: livelock?\n  ${this.describeWaits().join("\n  ")}`,
      );
    }
  }

  /** Drops finished threads so long-lived systems do not accumulate them. */
  private reap(): void {
    if (this.threads.length < 64) return;
    let kept = 0;
    for (const thread of this.threads) if (thread.live) this.threads[kept++] = thread;
    this.threads.length = kept;
  }

  /** One line per blocked thread: what it waits on and who holds that. */
  describeWaits(): string[] {
    const lines: string[] = [];
    for (const thread of this.threads) {
      if (thread.state !== "blocked" || thread.waitingOn === null) continue;
      const holders = thread.waitingOn.holders();
      const heldBy = holders.length === 0 ? "" : ` held by ${holders.map(String).join(", ")}`;
      lines.push(`${thread} waits on ${thread.waitingOn.describe()}${heldBy}`);
    }
    return lines;
  }
}
