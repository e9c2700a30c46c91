/**
 * Kernel threads as generators. A kernel path that can sleep or be preempted is a generator function
 * (a `Kfn`): it yields at every scheduling point and the scheduler decides who runs next. A path that
 * never sleeps is a plain function.
 */

/** The value a thread yields: a plain scheduling point, or "I put myself to sleep on a wait queue". */
export const PREEMPT = 0;
/** The thread put itself to sleep on a wait queue and yields until woken. */
export const BLOCKED = 1;
/** What a kernel thread yields: PREEMPT or BLOCKED. */
export type SchedPoint = typeof PREEMPT | typeof BLOCKED;

/** A kernel code path that may yield to the scheduler and finally returns a T. */
export type Kfn<T> = Generator<SchedPoint, T, void>;

/** Something a thread can sleep on; it describes itself for deadlock reports. */
export interface Waitable {
  /** "page lock of pfn 17", "mmap_lock of mm 2 (write)". */
  describe(): string;
  /** Threads that hold it, if it is a lock; the deadlock report follows these edges. */
  holders(): readonly Thread[];
}

/** Where a thread is: able to run, asleep, finished, or ended by an exception. */
export type ThreadState = "runnable" | "blocked" | "done" | "failed";

/**
 * A kind of lock the scheduler keeps track of, so that what a failed thread held can be released and
 * what a finished thread still holds can be reported (the kernel's lockdep does the latter: "lock held
 * when returning to user space").
 */
export interface TrackedLocks {
  /** Releases, waking its waiters, everything `thread` holds here; one line per lock released. */
  releaseHeldBy(thread: Thread): string[];
  /** One line per lock held by a thread that is no longer live. */
  heldByGoneThreads(): string[];
}

/** A kernel thread: a generator run by the Scheduler, with its id, name, CPU, state and what it waits on. */
export class Thread {
  state: ThreadState = "runnable";
  /** What the thread sleeps on while blocked. */
  waitingOn: Waitable | null = null;
  result: unknown = undefined;
  error: unknown = undefined;
  /** Scheduling points this thread has passed; bounded by the scheduler's step limit. */
  steps = 0;
  /**
   * What the thread does when it next runs, set where it yields (Scheduler.at): the kernel function
   * and what it is about to touch ("do_swap_page: trylock_page"), and the shared object (objects.ts).
   * A thread that yields without naming one keeps the label of its previous point.
   */
  label = "(thread starts)";
  object = 0;
  /** Set by Scheduler.atRetry for the thread's next step: it spins until another thread progresses. */
  retrying = false;

  constructor(
    readonly id: number,
    readonly name: string,
    /** The CPU it runs on: selects per-CPU state such as the LRU add batches. */
    readonly cpu: number,
    readonly body: Kfn<unknown>,
  ) {}

  /** Whether the thread has not finished (runnable or blocked). */
  get live(): boolean {
    return this.state === "runnable" || this.state === "blocked";
  }

  /** The thread's id and name, for reports. */
  toString(): string {
    return `thread ${this.id} "${this.name}"`;
  }
}
