/**
 * A user page fault that runs out of memory (VM_FAULT_OOM): x86's mm_fault_error never raises SIGBUS
 * for it; pagefault_out_of_memory either runs the OOM killer (4.14) or warns and retries (today, where
 * the allocator's OOM killer has already run). hmmsim's RAM has no reclaim, so an exhausted RAM gets the
 * OOM killer in both eras (mm/oom_kill.ts says what stands in for it); a transient failure retries today.
 */
import { describe, expect, it } from "vitest";
import { SignalError } from "../../src/process.js";
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
