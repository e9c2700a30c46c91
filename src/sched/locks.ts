/**
 * Sleeping and spinning locks of the kernel, modelled for a scheduler that interleaves threads at
 * scheduling points. A spinning CPU is modelled as a blocked thread: it makes no progress until the
 * holder releases, and a cycle of such waits is reported as a deadlock rather than spinning forever.
 */
import { assert, fail } from "../base/assert.js";
import { OBJ_LOCK, objectId } from "./objects.js";
import type { Scheduler } from "./scheduler.js";
import { BLOCKED, type Kfn, type Thread, type TrackedLocks, type Waitable } from "./thread.js";

/** Threads asleep on one event, woken all at once (the kernel's wake_up_all on a wait_queue_head). */
export class WaitQueue {
  private readonly sleepers: Thread[] = [];

  /** How many threads sleep on the queue. */
  get length(): number {
    return this.sleepers.length;
  }

  /** Adds a thread that is going to sleep on the queue. */
  add(thread: Thread): void {
    this.sleepers.push(thread);
  }

  /** wake_up_all: wakes every thread asleep on the queue and empties it. */
  wakeAll(sched: Scheduler): void {
    if (this.sleepers.length === 0) return;
    // Bounded by the number of sleepers present at the call; woken threads re-add themselves if needed.
    const woken = this.sleepers.splice(0, this.sleepers.length);
    for (const thread of woken) sched.wake(thread);
  }

  /** Removes a thread from the queue, if it is on it. */
  remove(thread: Thread): void {
    const index = this.sleepers.indexOf(thread);
    if (index >= 0) this.sleepers.splice(index, 1);
  }
}

/**
 * A lock with one holder: `spinlock_t` (kind "spin") or `struct mutex` (kind "mutex"). Both sleep in
 * the model; the kind only names it in reports.
 */
export class Lock implements Waitable, TrackedLocks {
  private holder: Thread | null = null;
  private readonly waiters = new WaitQueue();
  /** The lock as a shared object (objects.ts), for schedules and the partial-order reduction. */
  readonly object: number;
  private readonly lockLabel: string;

  constructor(
    private readonly sched: Scheduler,
    private readonly label: string,
  ) {
    sched.trackLocks(this);
    this.object = sched.nameObject(OBJ_LOCK, label);
    this.lockLabel = `lock ${label}`;
  }

  releaseHeldBy(thread: Thread): string[] {
    if (this.holder !== thread) return [];
    this.holder = null;
    this.waiters.wakeAll(this.sched);
    return [this.label];
  }

  heldByGoneThreads(): string[] {
    return this.holder === null || this.holder.live
      ? []
      : [`${this.label} held by ${this.holder}, which no longer runs`];
  }

  describe(): string {
    return this.label;
  }

  holders(): readonly Thread[] {
    return this.holder === null ? [] : [this.holder];
  }

  /** Whether some thread holds the lock. */
  get locked(): boolean {
    return this.holder !== null;
  }

  /** Whether `thread` holds the lock. */
  heldBy(thread: Thread): boolean {
    return this.holder === thread;
  }

  /** spin_lock / mutex_lock: a scheduling point (labelled `site`, if given), then wait until free. */
  *lock(site?: string): Kfn<void> {
    const me = this.sched.current();
    assert(this.holder !== me, "recursive lock", () => `${me} on ${this.label}`);
    if (this.sched.contended) yield this.sched.at(site ?? this.lockLabel, this.object);
    while (this.holder !== null) {
      this.waiters.add(me);
      this.sched.sleep(this);
      yield BLOCKED;
    }
    this.holder = me;
  }

  /** spin_trylock / mutex_trylock: never sleeps. */
  tryLock(): boolean {
    this.sched.touch(this.object);
    if (this.holder !== null) return false;
    this.holder = this.sched.current();
    return true;
  }

  /** spin_unlock / mutex_unlock: releases the lock the running thread holds and wakes its waiters. */
  unlock(): void {
    const me = this.sched.current();
    assert(this.holder === me, "unlock of a lock not held by this thread", () => `${me} on ${this.label}`);
    this.holder = null;
    this.sched.touch(this.object);
    this.waiters.wakeAll(this.sched);
  }
}

/**
 * `struct rw_semaphore` (mmap_lock). Readers share; a writer excludes all. A reader arriving while a
 * writer waits queues behind it, as the kernel's rwsem does to keep writers from starving.
 */
export class RwSem implements Waitable, TrackedLocks {
  private writer: Thread | null = null;
  private readonly readers: Thread[] = [];
  private writersWaiting = 0;
  private readonly waiters = new WaitQueue();
  /** The semaphore as a shared object (objects.ts). */
  readonly object: number;
  private readonly readLabel: string;
  private readonly writeLabel: string;

  constructor(
    private readonly sched: Scheduler,
    private readonly label: string,
  ) {
    sched.trackLocks(this);
    this.object = sched.nameObject(OBJ_LOCK, label);
    this.readLabel = `down_read ${label}`;
    this.writeLabel = `down_write ${label}`;
  }

  releaseHeldBy(thread: Thread): string[] {
    const released: string[] = [];
    if (this.writer === thread) {
      this.writer = null;
      released.push(`${this.label} (write)`);
    }
    const index = this.readers.indexOf(thread);
    if (index >= 0) {
      this.readers.splice(index, 1);
      released.push(`${this.label} (read)`);
    }
    if (released.length > 0) this.waiters.wakeAll(this.sched);
    return released;
  }

  heldByGoneThreads(): string[] {
    const gone = this.holders().filter((holder) => !holder.live);
    return gone.map((holder) => `${this.label} held by ${holder}, which no longer runs`);
  }

  describe(): string {
    return this.label;
  }

  holders(): readonly Thread[] {
    return this.writer === null ? this.readers : [this.writer];
  }

  /** Whether some reader holds the semaphore. */
  get readLocked(): boolean {
    return this.readers.length > 0;
  }

  /** Whether a writer holds the semaphore. */
  get writeLocked(): boolean {
    return this.writer !== null;
  }

  /** Whether `thread` holds the semaphore, as a reader or as the writer. */
  heldBy(thread: Thread): boolean {
    return this.writer === thread || this.readers.includes(thread);
  }

  /** down_read: a scheduling point (labelled `site`, if given), then wait until no writer holds or waits. */
  *downRead(site?: string): Kfn<void> {
    const me = this.sched.current();
    assert(!this.heldBy(me), "rwsem taken twice by one thread", () => `${me} on ${this.label}`);
    if (this.sched.contended) yield this.sched.at(site ?? this.readLabel, this.object);
    while (this.writer !== null || this.writersWaiting > 0) {
      this.waiters.add(me);
      this.sched.sleep(this);
      yield BLOCKED;
    }
    this.readers.push(me);
  }

  /** down_read_trylock: takes the lock for read if no writer holds or waits for it; never sleeps. */
  tryDownRead(): boolean {
    const me = this.sched.current();
    assert(!this.heldBy(me), "rwsem taken twice by one thread", () => `${me} on ${this.label}`);
    this.sched.touch(this.object);
    if (this.writer !== null || this.writersWaiting > 0) return false;
    this.readers.push(me);
    return true;
  }

  /**
   * down_write: a scheduling point (labelled `site`, if given), then wait until nobody holds the semaphore.
   */
  *downWrite(site?: string): Kfn<void> {
    const me = this.sched.current();
    assert(!this.heldBy(me), "rwsem taken twice by one thread", () => `${me} on ${this.label}`);
    if (this.sched.contended) yield this.sched.at(site ?? this.writeLabel, this.object);
    this.writersWaiting++;
    while (this.writer !== null || this.readers.length > 0) {
      this.waiters.add(me);
      this.sched.sleep(this);
      yield BLOCKED;
    }
    this.writersWaiting--;
    this.writer = me;
  }

  /** up_read: releases the running thread's read hold. */
  upRead(): void {
    const me = this.sched.current();
    const index = this.readers.indexOf(me);
    assert(index >= 0, "up_read by a thread that holds no read lock", () => `${me} on ${this.label}`);
    // Removing the last reader without splice, which would allocate an array per call.
    if (index === this.readers.length - 1) this.readers.pop();
    else this.readers.splice(index, 1);
    this.sched.touch(this.object);
    if (this.readers.length === 0) this.waiters.wakeAll(this.sched);
  }

  /** up_write: releases the running thread's write hold. */
  upWrite(): void {
    const me = this.sched.current();
    assert(this.writer === me, "up_write by a thread that is not the writer", () => `${me} on ${this.label}`);
    this.writer = null;
    this.sched.touch(this.object);
    this.waiters.wakeAll(this.sched);
  }
}

/**
 * Wait queues keyed by a number, for locks that live as bits in typed arrays (the page lock, split
 * page-table locks): the kernel hashes such waiters into a table of queues (folio_waitqueue).
 */
export class KeyedWaitQueues {
  private readonly queues = new Map<number, WaitQueue>();

  /** Adds a thread going to sleep on the queue of `key`. */
  add(key: number, thread: Thread): void {
    let queue = this.queues.get(key);
    if (queue === undefined) {
      queue = new WaitQueue();
      this.queues.set(key, queue);
    }
    queue.add(thread);
  }

  /** Wakes every thread asleep on the queue of `key`. */
  wakeAll(key: number, sched: Scheduler): void {
    const queue = this.queues.get(key);
    if (queue === undefined) return;
    this.queues.delete(key);
    queue.wakeAll(sched);
  }

  /** Whether some thread sleeps on the queue of `key`. */
  hasWaiters(key: number): boolean {
    if (this.queues.size === 0) return false;
    return this.queues.has(key);
  }

  /** True when nobody waits on any key. */
  get empty(): boolean {
    return this.queues.size === 0;
  }
}

/**
 * A table of locks indexed by number, each with a holder: split page-table locks, one per PTE table.
 */
export class LockTable implements TrackedLocks {
  private readonly holderByKey: (Thread | null)[] = [];
  private readonly waiters = new KeyedWaitQueues();
  private readonly objectBase: number;
  private readonly lockLabel: string;

  constructor(
    private readonly sched: Scheduler,
    private readonly label: string,
    /** The kind of shared object (objects.ts) each key's lock stands for: OBJ_PTE_TABLE for the PTLs. */
    objectKind: number,
  ) {
    sched.trackLocks(this);
    this.objectBase = objectId(objectKind, 0);
    this.lockLabel = `spin_lock ${label}`;
  }

  releaseHeldBy(thread: Thread): string[] {
    const released: string[] = [];
    this.holderByKey.forEach((holder, key) => {
      if (holder !== thread) return;
      this.holderByKey[key] = null;
      if (this.waiters.hasWaiters(key)) this.waiters.wakeAll(key, this.sched);
      released.push(`${this.label} ${key}`);
    });
    return released;
  }

  heldByGoneThreads(): string[] {
    const lines: string[] = [];
    this.holderByKey.forEach((holder, key) => {
      if (holder !== null && !holder.live)
        lines.push(`${this.label} ${key} held by ${holder}, which no longer runs`);
    });
    return lines;
  }

  /** The thread holding lock `key`, or null. */
  holderOf(key: number): Thread | null {
    return this.holderByKey[key] ?? null;
  }

  /** Whether some thread holds lock `key`. */
  isLocked(key: number): boolean {
    return this.holderOf(key) !== null;
  }

  /** Keeps the holder array packed (no holes), so lookups stay on V8's fast path. */
  private reserve(key: number): void {
    // Bounded by key: each pass adds one slot.
    while (this.holderByKey.length <= key) this.holderByKey.push(null);
  }

  /** spin_lock of lock `key`: a scheduling point (labelled `site`, if given), then wait until it is free. */
  *lock(key: number, site?: string): Kfn<void> {
    const me = this.sched.current();
    this.reserve(key);
    if (this.holderOf(key) === me) this.failOn("recursive lock", key, me);
    if (this.sched.contended) yield this.sched.at(site ?? this.lockLabel, this.objectBase + key);
    while (this.holderOf(key) !== null) {
      this.waiters.add(key, me);
      this.sched.sleep(this.waitable(key));
      yield BLOCKED;
    }
    this.holderByKey[key] = me;
  }

  /** spin_trylock of lock `key`: takes it if free, without waiting; returns whether it did. */
  tryLock(key: number): boolean {
    this.sched.touch(this.objectBase + key);
    if (this.holderOf(key) !== null) return false;
    this.reserve(key);
    this.holderByKey[key] = this.sched.current();
    return true;
  }

  /** spin_unlock of lock `key`, which the running thread must hold; wakes its waiters. */
  unlock(key: number): void {
    const me = this.sched.current();
    if (this.holderOf(key) !== me) this.failOn("unlock of a lock not held by this thread", key, me);
    this.holderByKey[key] = null;
    this.sched.touch(this.objectBase + key);
    if (this.waiters.hasWaiters(key)) this.waiters.wakeAll(key, this.sched);
  }

  /** A failed assertion about lock `key`, out of line so that the hot paths make no closure. */
  private failOn(message: string, key: number, me: Thread): never {
    fail(message, () => `${me} on ${this.label} ${key}`);
  }

  private waitable(key: number): Waitable {
    return {
      describe: () => `${this.label} ${key}`,
      holders: () => {
        const holder = this.holderOf(key);
        return holder === null ? [] : [holder];
      },
    };
  }
}
