/**
 * A user page fault that runs out of memory (VM_FAULT_OOM): x86's mm_fault_error never raises SIGBUS
 * for it; pagefault_out_of_memory either runs the OOM killer (4.14) or warns and retries (today, where
 * the allocator's OOM killer has already run). hmmsim's RAM has no reclaim, so an exhausted RAM gets the
 * OOM killer in both eras (mm/oom_kill.ts says what stands in for it); a transient failure retries today.
 */
import { describe, expect, it } from "vitest";
import { Rng } from "../../src/base/rng.js";
import { type Process, SignalError } from "../../src/process.js";
import { LivelockError } from "../../src/sched/scheduler.js";
import type { Kfn } from "../../src/sched/thread.js";
import { System } from "../../src/system.js";
import { P, PROTOCOLS } from "./helpers.js";

/** A system with 64 pages of RAM and no device. */
function small(protocol: (typeof PROTOCOLS)[number]): System {
  return new System({ ram: "256KiB", protocol, devices: [] });
}

/** The signal a call ends with. */
function signalOf(call: () => unknown): string {
  try {
    call();
  } catch (error) {
    expect(error).toBeInstanceOf(SignalError);
    return (error as SignalError).signal;
  }
  return "none";
}

describe.each(PROTOCOLS)("out of memory in a user fault [%s]", (protocol) => {
  it("kills the faulting process when it is the largest (SIGKILL, never SIGBUS) and frees its memory", () => {
    const system = small(protocol);
    const proc = system.spawn();
    const addr = proc.mmap(128 * P);
    // 63 frames are free (the zero page is reserved); the 64th write has nowhere to go.
    expect(signalOf(() => proc.fillPages(addr, 128, 1))).toBe("SIGKILL");
    expect(proc.exited).toBe(true);
    expect(system.kernel.stats.oomKills).toBe(1);
    expect(system.checkInvariants()).toEqual([]);
    // Its memory came back: another process gets 60 pages.
    const next = system.spawn();
    const again = next.mmap(60 * P);
    next.fillPages(again, 60, 6);
    expect(next.checkPages(again, 60, 6)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("kills the process with the highest oom_badness, and the faulting access then succeeds", () => {
    const system = small(protocol);
    const hog = system.spawn();
    const hogAddr = hog.mmap(60 * P);
    hog.fillPages(hogAddr, 40, 2);
    const proc = system.spawn();
    const addr = proc.mmap(32 * P);
    // The first 20 or so pages fit; then RAM runs out and the hog (40 pages) is the victim.
    proc.fillPages(addr, 32, 3);
    expect(hog.exited).toBe(true);
    expect(proc.exited).toBe(false);
    expect(proc.checkPages(addr, 32, 3)).toEqual([]);
    expect(system.kernel.stats.oomKills).toBe(1);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("an allocation that fails with RAM to spare: retried today, the OOM killer in 4.14", () => {
    const system = small(protocol);
    const proc = system.spawn();
    const addr = proc.mmap(4 * P);
    proc.fillPages(addr, 2, 4);
    system.kernel.ram.failNext = 1;
    if (protocol === "modern") {
      // pagefault_out_of_memory: "Huh VM_FAULT_OOM leaked out to the #PF handler. Retrying PF".
      proc.fillPages(addr + 2 * P, 1, 5);
      expect(system.kernel.stats.oomRetries).toBe(1);
      expect(proc.checkPages(addr + 2 * P, 1, 5)).toEqual([]);
    } else {
      // out_of_memory() runs whatever the free memory: the only candidate is the faulting process.
      expect(signalOf(() => proc.fillPages(addr + 2 * P, 1, 5))).toBe("SIGKILL");
      expect(proc.exited).toBe(true);
    }
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("out of memory in two faults at once (modern)", () => {
  /** Each thread writes `count` pages of its process and returns how the accesses ended. */
  function* writer(proc: Process, addr: number, count: number): Kfn<string> {
    for (let i = 0; i < count; i++) {
      const pfn = yield* proc.accessPage(addr / P + i, true);
      if (pfn < 0) return pfn === -3 ? "SIGKILL" : `signal ${pfn}`;
    }
    return "done";
  }

  it("kills one victim for both, and a victim faulting in its own thread dies of SIGKILL, over 200 schedules", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const system = small("modern");
      const hog = system.spawn();
      hog.fillPages(hog.mmap(60 * P), 40, 2);
      const b = system.spawn();
      const c = system.spawn();
      const bAddr = b.mmap(30 * P);
      const cAddr = c.mmap(20 * P);
      const sched = system.kernel.sched;
      const rng = new Rng(seed);
      sched.setChooser((runnable) => rng.below(runnable.length));
      const hogThread = sched.spawn("hog", writer(hog, hog.mmap(8 * P), 8), 0);
      const bThread = sched.spawn("b", writer(b, bAddr, 30), 1);
      const cThread = sched.spawn("c", writer(c, cAddr, 20), 0);
      sched.runAll();
      sched.setChooser(() => 0);
      const where = `seed ${seed}`;
      // 40 + 8 + 30 + 20 pages into 63 frames: the hog goes, once, and the others fit.
      expect(system.kernel.stats.oomKills, where).toBe(1);
      expect(hog.exited, where).toBe(true);
      expect([hogThread.result, bThread.result, cThread.result], where).toEqual([
        expect.stringMatching(/^(SIGKILL|done)$/),
        "done",
        "done",
      ]);
      expect(b.checkPages(bAddr, 30, 0).length, where).toBe(30); // written by accessPage, not filled
      expect(system.checkInvariants(), where).toEqual([]);
      // Page tables came back exactly once: two new processes get tables of their own.
      const x = system.spawn();
      const y = system.spawn();
      const xAddr = x.mmap(P, { addr: 2 ** 40 });
      const yAddr = y.mmap(P, { addr: 2 ** 40 });
      x.fillPages(xAddr, 1, 5);
      y.fillPages(yAddr, 1, 6);
      expect(x.checkPages(xAddr, 1, 5), where).toEqual([]);
      expect(system.checkInvariants(), where).toEqual([]);
    }
  });
});

describe("a fault that can never succeed", () => {
  it("is a LivelockError naming the access, not a hang, where the kernel would retry for ever (modern)", () => {
    const system = small("modern");
    const proc = system.spawn();
    const addr = proc.mmap(P);
    // Every allocation fails while RAM has frames to spare: pagefault_out_of_memory retries each time.
    system.kernel.ram.failNext = 2 ** 30;
    expect(() => proc.touch(addr, 1, true)).toThrow(LivelockError);
    expect(() => proc.touch(addr, 1, true)).toThrow(/retried 10000 times without progress/);
    system.kernel.ram.failNext = 0;
    proc.touch(addr, 1, true);
    expect(system.checkInvariants()).toEqual([]);
  });
});
