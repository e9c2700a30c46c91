/** Shared set-up for the mm tests: a small system, and views of its page tables and pages. */
import { expect } from "vitest";
import { KernelError } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import { pteFrame, ptePresent } from "../../src/mm/pgtable.js";
import { lruAddDrainAll } from "../../src/mm/swap.js";
import type { Process } from "../../src/process.js";
import type { Kfn } from "../../src/sched/thread.js";
import { System, type SystemOptions } from "../../src/system.js";

export function smallSystem(options: SystemOptions = {}): System {
  return new System({ ram: "16MiB", ...options });
}

/** The PTE that maps addr in the process (0 when none). */
export function pteAt(proc: Process, addr: number): number {
  return proc.system.kernel.pt.read(proc.mm.root, Math.floor(addr / PAGE_SIZE));
}

/** The pfn a present PTE maps at addr; fails the test when nothing is mapped. */
export function pfnAt(proc: Process, addr: number): number {
  const pte = pteAt(proc, addr);
  expect(ptePresent(pte), `present PTE at 0x${addr.toString(16)}`).toBe(true);
  return pteFrame(pte);
}

/** The process's VMAs as plain data, for "nothing changed" comparisons. */
export function vmaLayout(proc: Process): { start: number; end: number; flags: number; pgoff: number }[] {
  return proc.mm.vmas.map((vma) => ({ start: vma.start, end: vma.end, flags: vma.flags, pgoff: vma.pgoff }));
}

/** Runs kernel code in a thread of the system's scheduler and returns its result. */
export function inThread<T>(system: System, body: Kfn<T>): T {
  return system.kernel.sched.call("test", body);
}

/** Empties every CPU's LRU add batch, so refcounts show only mappings, the page cache and pins. */
export function drain(system: System): void {
  lruAddDrainAll(system.kernel);
}

/** Runs fn and returns the KernelError it throws; fails the test when it throws anything else. */
export function kernelError(fn: () => unknown): KernelError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(KernelError);
    return error as KernelError;
  }
  throw new Error("expected a KernelError, but the call succeeded");
}

export function bytes(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

/** A page-sized buffer filled with one byte value. */
export function pageOf(value: number, pages = 1): Uint8Array {
  return new Uint8Array(pages * PAGE_SIZE).fill(value);
}

/**
 * Asserts that actual holds exactly expected's bytes, naming the first offset that differs. For
 * megabytes, where toEqual's element-by-element diff takes seconds.
 */
export function expectBytes(actual: Uint8Array, expected: Uint8Array, what = "bytes"): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  if (Buffer.compare(actual, expected) === 0) return;
  const at = actual.findIndex((byte, i) => byte !== expected[i]);
  expect(actual[at], `${what}: byte at offset 0x${at.toString(16)}`).toBe(expected[at]);
}
