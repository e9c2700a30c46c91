import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/base/assert.js";
import { EFAULT, KernelError } from "../../src/base/errno.js";
import { Rng } from "../../src/base/rng.js";
import { Lock, RwSem } from "../../src/sched/locks.js";
import {
  type Chooser,
  DeadlockError,
  firstRunnable,
  replayChooser,
  Scheduler,
  ThreadFailure,
} from "../../src/sched/scheduler.js";
import { type Kfn, PREEMPT } from "../../src/sched/thread.js";

/** A thread body that logs `name:i` and yields after each step. */
function* stepper(log: string[], name: string, steps: number): Kfn<string> {
  for (let i = 0; i < steps; i++) {
    log.push(`${name}${i}`);
    yield PREEMPT;
  }
  return `${name} done`;
}

const roundRobin: Chooser = (runnable, choiceIndex) => choiceIndex % runnable.length;

function seededChooser(seed: number): Chooser {
  const rng = new Rng(seed);
  return (runnable) => rng.below(runnable.length);
}

describe("Scheduler basics", () => {
  it("runs a plain call to completion and returns its result", () => {
    const sched = new Scheduler();
    const log: string[] = [];
    expect(sched.call("t", stepper(log, "a", 3))).toBe("a done");
    expect(log).toEqual(["a0", "a1", "a2"]);
    // A lone thread never needs a choice.
    expect(sched.schedule).toEqual([]);
    expect(sched.liveThreads()).toEqual([]);
  });

  it("places threads on CPUs round-robin unless told, and refuses a CPU that does not exist", () => {
    const sched = new Scheduler({ cpus: 2 });
    const log: string[] = [];
    const cpus = [0, 1, 2].map((i) => sched.spawn(`t${i}`, stepper(log, "x", 0)).cpu);
    expect(cpus).toEqual([0, 1, 0]);
    expect(sched.spawn("pinned", stepper(log, "y", 0), 1).cpu).toBe(1);
    expect(() => sched.spawn("bad", stepper(log, "z", 0), 2)).toThrow(/no such cpu: 2 of 2/);
    expect(() => new Scheduler({ cpus: 0 })).toThrow(AssertionError);
  });

  it("knows no current thread outside a thread", () => {
    const sched = new Scheduler();
    expect(sched.currentOrNull()).toBeNull();
    expect(() => sched.current()).toThrow(/kernel code ran outside a thread/);
  });

  it("gives threads increasing ids and tracks which are live", () => {
    const sched = new Scheduler();
    const log: string[] = [];
    const a = sched.spawn("a", stepper(log, "a", 1));
    const b = sched.spawn("b", stepper(log, "b", 1));
    expect([a.id, b.id]).toEqual([1, 2]);
    expect(sched.contended).toBe(true);
    expect(sched.byId(2)).toBe(b);
    sched.runAll();
    expect(sched.byId(2)).toBeNull();
    expect(a.state).toBe("done");
    expect(b.result).toBe("b done");
    expect(sched.contended).toBe(false);
  });
});

describe("choosers", () => {
  it("firstRunnable runs the lowest-numbered thread until it finishes", () => {
    const sched = new Scheduler({ chooser: firstRunnable });
    const log: string[] = [];
    sched.spawn("a", stepper(log, "a", 3));
    sched.spawn("b", stepper(log, "b", 3));
    sched.runAll();
    expect(log).toEqual(["a0", "a1", "a2", "b0", "b1", "b2"]);
    // Every step with two live threads is a recorded choice of thread 1 (4 steps, the last ends it).
    expect(sched.schedule).toEqual([1, 1, 1, 1]);
  });

  it("a chooser decides the interleaving and sees runnable threads in id order", () => {
    const seen: number[][] = [];
    const indexes: number[] = [];
    const chooser: Chooser = (runnable, choiceIndex) => {
      seen.push(runnable.map((t) => t.id));
      indexes.push(choiceIndex);
      return roundRobin(runnable, choiceIndex);
    };
    const sched = new Scheduler({ chooser });
    const log: string[] = [];
    sched.spawn("a", stepper(log, "a", 2));
    sched.spawn("b", stepper(log, "b", 2));
    sched.runAll();
    expect(log).toEqual(["a0", "b0", "a1", "b1"]);
    expect(seen.every((ids) => ids.join() === "1,2")).toBe(true);
    expect(indexes).toEqual(indexes.map((_, i) => i));
    // The last step, thread 2 alone, needs no choice.
    expect(sched.schedule).toEqual([1, 2, 1, 2, 1]);
  });

  it("setChooser swaps the strategy mid-run", () => {
    const sched = new Scheduler();
    const log: string[] = [];
    sched.spawn("a", stepper(log, "a", 3));
    sched.spawn("b", stepper(log, "b", 3));
    sched.step();
    sched.setChooser((runnable) => runnable.length - 1);
    sched.runAll();
    expect(log).toEqual(["a0", "b0", "b1", "b2", "a1", "a2"]);
  });

  it("a chooser that picks no runnable thread is a bug", () => {
    const sched = new Scheduler({ chooser: () => 5 });
    const log: string[] = [];
    sched.spawn("a", stepper(log, "a", 1));
    sched.spawn("b", stepper(log, "b", 1));
    expect(() => sched.runAll()).toThrow(/chooser picked no runnable thread: index 5 of 2/);
  });

  it("replaying a recorded schedule gives the same run", () => {
    const record = (chooser: Chooser) => {
      const sched = new Scheduler({ chooser });
      const log: string[] = [];
      for (const name of ["a", "b", "c"]) sched.spawn(name, stepper(log, name, 5));
      sched.runAll();
      return { log, schedule: [...sched.schedule] };
    };
    const first = record(seededChooser(1234));
    const replayed = record(replayChooser(first.schedule));
    expect(replayed).toEqual(first);
    // A different seed (almost surely) interleaves differently; replay does not depend on it.
    expect(record(seededChooser(99)).log).not.toEqual(first.log);
  });

  it("a replayed schedule that names a thread that cannot run is reported", () => {
    const sched = new Scheduler({ chooser: replayChooser([7]) });
    const log: string[] = [];
    sched.spawn("a", stepper(log, "a", 1));
    sched.spawn("b", stepper(log, "b", 1));
    expect(() => sched.step()).toThrow(
      /replayed schedule names a thread that cannot run: choice 0: thread 7/,
    );
  });

  it("replay falls back to its default past the end of the schedule", () => {
    const sched = new Scheduler({ chooser: replayChooser([2]) });
    const log: string[] = [];
    sched.spawn("a", stepper(log, "a", 2));
    sched.spawn("b", stepper(log, "b", 2));
    sched.runAll();
    expect(log).toEqual(["b0", "a0", "a1", "b1"]);
  });
});

describe("failures", () => {
  it("a thread that throws is reported with its name, the cause and the schedule", () => {
    const sched = new Scheduler();
    const cause = new Error("bad page");
    function* broken(): Kfn<void> {
      yield PREEMPT;
      throw cause;
    }
    let caught: unknown;
    try {
      sched.call("broken", broken());
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ThreadFailure);
    const failure = caught as ThreadFailure;
    expect(failure.cause).toBe(cause);
    expect(failure.message).toBe('thread 1 "broken" failed: bad page');
    expect(failure.thread.state).toBe("failed");
    expect(sched.liveThreads()).toEqual([]);
    // The scheduler is usable afterwards.
    expect(sched.call("next", stepper([], "n", 1))).toBe("n done");
  });

  it("a plain call that fails as a system call does throws its KernelError itself", () => {
    const sched = new Scheduler();
    const error = new KernelError(EFAULT, "read at 0x1000: SIGBUS");
    function* faulting(): Kfn<void> {
      yield PREEMPT;
      throw error;
    }
    expect(() => sched.call("read", faulting())).toThrow(error);
    expect(sched.liveThreads()).toEqual([]);
  });

  it("a livelock ends at the step limit with an error instead of hanging", () => {
    const sched = new Scheduler({ stepsMax: 50 });
    function* spin(): Kfn<void> {
      for (;;) yield PREEMPT;
    }
    expect(() => sched.call("spinner", spin())).toThrow(/passed its limit of 50 steps: livelock\?/);
  });

  it("a blocking call from inside a thread is refused", () => {
    const sched = new Scheduler();
    function* outer(): Kfn<void> {
      sched.call("inner", stepper([], "i", 1));
    }
    expect(() => sched.call("outer", outer())).toThrow(
      /a blocking call was made from inside a thread: inner/,
    );
  });
});

describe("deadlock detection", () => {
  function abba(chooser: Chooser) {
    const sched = new Scheduler({ chooser });
    const a = new Lock(sched, "lock A");
    const b = new Lock(sched, "lock B");
    function* take(first: Lock, second: Lock): Kfn<void> {
      yield* first.lock();
      yield PREEMPT;
      yield* second.lock();
      second.unlock();
      first.unlock();
    }
    sched.spawn("T1", take(a, b));
    sched.spawn("T2", take(b, a));
    return sched;
  }

  it("an ABBA on two locks is reported naming both threads and both locks", () => {
    const sched = abba(roundRobin);
    let caught: unknown;
    try {
      sched.runAll();
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(DeadlockError);
    const deadlock = caught as DeadlockError;
    expect([...deadlock.waits].sort()).toEqual([
      'thread 1 "T1" waits on lock B held by thread 2 "T2"',
      'thread 2 "T2" waits on lock A held by thread 1 "T1"',
    ]);
    expect(deadlock.message).toMatch(/^deadlock: every thread is blocked/);
    expect(deadlock.message).toContain('"T1"');
    expect(deadlock.message).toContain('"T2"');
    expect(deadlock.schedule).toEqual(sched.schedule);
  });

  it("the deadlock's schedule replays to the same deadlock", () => {
    const first = abba(roundRobin);
    let schedule: readonly number[] = [];
    let waits: readonly string[] = [];
    try {
      first.runAll();
    } catch (error) {
      schedule = (error as DeadlockError).schedule;
      waits = (error as DeadlockError).waits;
    }
    expect(schedule.length).toBeGreaterThan(0);
    const replay = abba(replayChooser(schedule));
    expect(() => replay.runAll()).toThrow(DeadlockError);
    expect(replay.describeWaits()).toEqual(waits);
  });

  it("the same threads finish when one runs first", () => {
    const sched = abba(firstRunnable);
    sched.runAll();
    expect(sched.allThreads().every((t) => t.state === "done")).toBe(true);
  });
});

describe("rwsem under the scheduler", () => {
  it("a writer excludes readers and other writers in every seeded interleaving", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const sched = new Scheduler({ chooser: seededChooser(seed) });
      const sem = new RwSem(sched, "mmap_lock");
      let readers = 0;
      let writers = 0;
      const violations: string[] = [];
      function* reader(): Kfn<void> {
        yield* sem.downRead();
        readers++;
        if (writers > 0) violations.push("reader with a writer");
        yield PREEMPT;
        yield PREEMPT;
        readers--;
        sem.upRead();
      }
      function* writer(): Kfn<void> {
        yield* sem.downWrite();
        writers++;
        if (writers > 1 || readers > 0) violations.push(`writer with ${readers} readers, ${writers} writers`);
        yield PREEMPT;
        yield PREEMPT;
        writers--;
        sem.upWrite();
      }
      sched.spawn("r1", reader());
      sched.spawn("w1", writer());
      sched.spawn("r2", reader());
      sched.spawn("w2", writer());
      sched.runAll();
      expect(violations, `seed ${seed}`).toEqual([]);
      expect(sem.readLocked || sem.writeLocked).toBe(false);
    }
  });
});
