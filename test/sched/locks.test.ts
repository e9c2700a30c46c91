import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/base/assert.js";
import { KeyedWaitQueues, Lock, LockTable, RwSem, WaitQueue } from "../../src/sched/locks.js";
import { OBJ_PTE_TABLE } from "../../src/sched/objects.js";
import { type Chooser, Scheduler, ThreadFailure } from "../../src/sched/scheduler.js";
import { BLOCKED, type Kfn, PREEMPT, type Thread } from "../../src/sched/thread.js";

const roundRobin: Chooser = (runnable, choiceIndex) => choiceIndex % runnable.length;

/** The AssertionError behind a ThreadFailure thrown by `run`. */
function failureCause(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ThreadFailure);
    return (error as ThreadFailure).cause;
  }
  throw new Error("expected the thread to fail");
}

describe("Lock", () => {
  it("lets one thread in at a time and wakes the waiter on unlock", () => {
    const sched = new Scheduler({ chooser: roundRobin });
    const lock = new Lock(sched, "mutex");
    let inside = 0;
    let maxInside = 0;
    const order: string[] = [];
    function* worker(name: string): Kfn<void> {
      for (let round = 0; round < 3; round++) {
        yield* lock.lock();
        inside++;
        maxInside = Math.max(maxInside, inside);
        order.push(name);
        yield PREEMPT;
        inside--;
        lock.unlock();
        yield PREEMPT;
      }
    }
    for (const name of ["a", "b", "c"]) sched.spawn(name, worker(name));
    sched.runAll();
    expect(maxInside).toBe(1);
    expect(order.length).toBe(9);
    expect(new Set(order)).toEqual(new Set(["a", "b", "c"]));
    expect(lock.locked).toBe(false);
  });

  it("trylock takes a free lock and fails on a held one without sleeping", () => {
    const sched = new Scheduler();
    const lock = new Lock(sched, "spin");
    const results: boolean[] = [];
    sched.call(
      "t",
      (function* (): Kfn<void> {
        results.push(lock.tryLock());
        results.push(lock.tryLock());
        expect(lock.heldBy(sched.current())).toBe(true);
        expect(lock.holders()).toEqual([sched.current()]);
        lock.unlock();
        results.push(lock.tryLock());
        lock.unlock();
      })(),
    );
    expect(results).toEqual([true, false, true]);
    expect(lock.holders()).toEqual([]);
  });

  it("refuses a recursive lock and an unlock by a non-holder", () => {
    const sched = new Scheduler();
    const lock = new Lock(sched, "L");
    const recursive = failureCause(() =>
      sched.call(
        "twice",
        (function* (): Kfn<void> {
          yield* lock.lock();
          yield* lock.lock();
        })(),
      ),
    );
    expect(recursive).toBeInstanceOf(AssertionError);
    expect(String(recursive)).toMatch(/recursive lock: thread 1 "twice" on L/);
    const stranger = new Lock(sched, "M");
    const notHeld = failureCause(() =>
      sched.call(
        "stranger",
        (function* (): Kfn<void> {
          stranger.unlock();
        })(),
      ),
    );
    expect(String(notHeld)).toMatch(/unlock of a lock not held by this thread/);
  });
});

describe("RwSem", () => {
  it("readers share the lock", () => {
    const sched = new Scheduler({ chooser: roundRobin });
    const sem = new RwSem(sched, "mmap_lock");
    let readers = 0;
    let maxReaders = 0;
    function* reader(): Kfn<void> {
      yield* sem.downRead();
      readers++;
      maxReaders = Math.max(maxReaders, readers);
      yield PREEMPT;
      yield PREEMPT;
      readers--;
      sem.upRead();
    }
    sched.spawn("r1", reader());
    sched.spawn("r2", reader());
    sched.runAll();
    expect(maxReaders).toBe(2);
  });

  it("a reader that arrives while a writer waits queues behind the writer", () => {
    const sched = new Scheduler({ chooser: roundRobin });
    const sem = new RwSem(sched, "mmap_lock");
    const order: string[] = [];
    function* first(): Kfn<void> {
      yield* sem.downRead();
      order.push("r1 in");
      for (let i = 0; i < 6; i++) yield PREEMPT;
      order.push("r1 out");
      sem.upRead();
    }
    function* writer(): Kfn<void> {
      yield PREEMPT;
      yield* sem.downWrite();
      order.push("w in");
      sem.upWrite();
    }
    function* late(): Kfn<void> {
      yield PREEMPT;
      yield PREEMPT;
      yield PREEMPT;
      yield* sem.downRead();
      order.push("r2 in");
      sem.upRead();
    }
    sched.spawn("r1", first());
    sched.spawn("w", writer());
    sched.spawn("r2", late());
    sched.runAll();
    expect(order).toEqual(["r1 in", "r1 out", "w in", "r2 in"]);
  });

  it("reports its state and refuses misuse", () => {
    const sched = new Scheduler();
    const sem = new RwSem(sched, "sem");
    sched.call(
      "t",
      (function* (): Kfn<void> {
        yield* sem.downWrite();
        expect(sem.writeLocked).toBe(true);
        expect(sem.holders()).toEqual([sched.current()]);
        sem.upWrite();
        yield* sem.downRead();
        expect(sem.readLocked).toBe(true);
        sem.upRead();
      })(),
    );
    expect(sem.readLocked || sem.writeLocked).toBe(false);
    const twice = failureCause(() =>
      sched.call(
        "twice",
        (function* (): Kfn<void> {
          yield* sem.downRead();
          yield* sem.downWrite();
        })(),
      ),
    );
    expect(String(twice)).toMatch(/rwsem taken twice by one thread/);
    const sem2 = new RwSem(sched, "sem2");
    const badUp = failureCause(() =>
      sched.call(
        "bad up",
        (function* (): Kfn<void> {
          sem2.upRead();
        })(),
      ),
    );
    expect(String(badUp)).toMatch(/up_read by a thread that holds no read lock/);
  });
});

describe("LockTable", () => {
  it("locks keys independently and lists the held ones", () => {
    const sched = new Scheduler({ chooser: roundRobin });
    const table = new LockTable(sched, "ptl", OBJ_PTE_TABLE);
    const events: string[] = [];
    function* holder(key: number, name: string): Kfn<void> {
      yield* table.lock(key);
      events.push(`${name} got ${key}`);
      yield PREEMPT;
      yield PREEMPT;
      events.push(`${name} drops ${key}`);
      table.unlock(key);
    }
    sched.spawn("a", holder(3, "a"));
    sched.spawn("b", holder(4, "b"));
    sched.spawn("c", holder(3, "c"));
    // Three scheduling points (one per thread), then a takes 3 and b takes 4.
    for (let i = 0; i < 5; i++) sched.step();
    expect([3, 4, 5].map((key) => table.isLocked(key))).toEqual([true, true, false]);
    sched.runAll();
    // a and b overlap (different keys); c gets 3 only after a drops it.
    expect(events.indexOf("b got 4")).toBeLessThan(events.indexOf("a drops 3"));
    expect(events.indexOf("c got 3")).toBeGreaterThan(events.indexOf("a drops 3"));
    expect([3, 4].map((key) => table.isLocked(key))).toEqual([false, false]);
  });

  it("a waiter on a key is described in deadlock reports", () => {
    const sched = new Scheduler({ chooser: roundRobin });
    const table = new LockTable(sched, "ptl", OBJ_PTE_TABLE);
    function* stuck(): Kfn<void> {
      yield* table.lock(9);
      const q = new WaitQueue();
      q.add(sched.current());
      sched.sleep({ describe: () => "nothing", holders: () => [] });
      yield BLOCKED;
    }
    function* waiter(): Kfn<void> {
      yield PREEMPT;
      yield* table.lock(9);
    }
    sched.spawn("holder", stuck());
    sched.spawn("waiter", waiter());
    expect(() => sched.runAll()).toThrow(/thread 2 "waiter" waits on ptl 9 held by thread 1 "holder"/);
  });

  it("trylock does not sleep", () => {
    const sched = new Scheduler();
    const table = new LockTable(sched, "ptl", OBJ_PTE_TABLE);
    const got: boolean[] = [];
    sched.call(
      "t",
      (function* (): Kfn<void> {
        got.push(table.tryLock(1), table.tryLock(1), table.tryLock(2));
        expect(table.holderOf(1)).toBe(sched.current());
        table.unlock(1);
        table.unlock(2);
      })(),
    );
    expect(got).toEqual([true, false, true]);
  });
});

describe("wait queues", () => {
  it("wakeAll wakes every sleeper once; a woken thread runs again", () => {
    const sched = new Scheduler({ chooser: roundRobin });
    const queue = new WaitQueue();
    let ready = false;
    const woke: string[] = [];
    function* sleeper(name: string): Kfn<void> {
      while (!ready) {
        queue.add(sched.current());
        sched.sleep({ describe: () => "event", holders: () => [] });
        yield BLOCKED;
      }
      woke.push(name);
    }
    function* waker(): Kfn<void> {
      yield PREEMPT;
      yield PREEMPT;
      expect(queue.length).toBe(2);
      ready = true;
      queue.wakeAll(sched);
    }
    sched.spawn("s1", sleeper("s1"));
    sched.spawn("s2", sleeper("s2"));
    sched.spawn("w", waker());
    sched.runAll();
    expect(woke.sort()).toEqual(["s1", "s2"]);
    expect(queue.length).toBe(0);
  });

  it("remove drops a sleeper; keyed queues report and clear their waiters", () => {
    const sched = new Scheduler();
    const queue = new WaitQueue();
    const keyed = new KeyedWaitQueues();
    const t = sched.spawn("t", (function* (): Kfn<void> {})());
    queue.add(t);
    queue.remove(t);
    expect(queue.length).toBe(0);
    keyed.add(17, t as Thread);
    expect(keyed.hasWaiters(17)).toBe(true);
    expect(keyed.hasWaiters(18)).toBe(false);
    keyed.wakeAll(17, sched);
    expect(keyed.hasWaiters(17)).toBe(false);
    keyed.wakeAll(18, sched);
    sched.runAll();
    expect(t.state).toBe("done");
  });
});

describe("a thread that fails releases what it holds", () => {
  it("unlocks its mutex, rwsems and page-table locks, names them, and wakes their waiters", () => {
    const sched = new Scheduler({ chooser: roundRobin });
    const mutex = new Lock(sched, "device mutex");
    const reader = new RwSem(sched, "mmap_lock of mm 1");
    const writer = new RwSem(sched, "mmap_lock of mm 2");
    const table = new LockTable(sched, "page-table lock of PTE table", OBJ_PTE_TABLE);
    let waiterGot = false;
    sched.spawn(
      "doomed",
      (function* (): Kfn<void> {
        yield* mutex.lock();
        yield* reader.downRead();
        yield* writer.downWrite();
        yield* table.lock(7);
        yield PREEMPT;
        throw new Error("kernel BUG");
      })(),
    );
    sched.spawn(
      "waiter",
      (function* (): Kfn<void> {
        yield PREEMPT;
        yield* mutex.lock();
        yield* writer.downRead();
        yield* table.lock(7);
        waiterGot = true;
        table.unlock(7);
        writer.upRead();
        mutex.unlock();
      })(),
    );
    let failure: unknown = null;
    try {
      sched.runAll();
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(ThreadFailure);
    expect((failure as ThreadFailure).released).toEqual([
      "device mutex",
      "mmap_lock of mm 1 (read)",
      "mmap_lock of mm 2 (write)",
      "page-table lock of PTE table 7",
    ]);
    expect((failure as ThreadFailure).message).toContain("released: device mutex");
    // The waiter, asleep on the mutex, was woken and now gets everything.
    sched.runAll();
    expect(waiterGot).toBe(true);
    expect(sched.locksHeldByGoneThreads()).toEqual([]);
  });

  it("a thread that returns with a lock held is reported, not released", () => {
    const sched = new Scheduler();
    const mutex = new Lock(sched, "device mutex");
    const sem = new RwSem(sched, "mmap_lock of mm 3");
    const table = new LockTable(sched, "page-table lock of PTE table", OBJ_PTE_TABLE);
    const leaker = sched.spawn(
      "leaker",
      (function* (): Kfn<void> {
        yield* mutex.lock();
        yield* sem.downRead();
        yield* table.lock(2);
      })(),
    );
    sched.runAll();
    expect(leaker.state).toBe("done");
    expect(sched.locksHeldByGoneThreads()).toEqual([
      `device mutex held by ${leaker}, which no longer runs`,
      `mmap_lock of mm 3 held by ${leaker}, which no longer runs`,
      `page-table lock of PTE table 2 held by ${leaker}, which no longer runs`,
    ]);
  });
});
