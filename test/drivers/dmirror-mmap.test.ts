/**
 * mmap of the device file itself (dmirror_fops_mmap, vm_insert_page): zeroed pages in a VM_MIXEDMAP
 * VMA with the dummy vm_ops, what the CPU, hmm_range_fault, fork, MADV_DONTNEED and migrate_vma make
 * of them, and the checker's view of such pages.
 */
import { describe, expect, it } from "vitest";
import { EBADF, EINVAL, ENODEV, ENOMEM } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import {
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
  MADV_DONTNEED,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
} from "../../src/index.js";
import { VM_MIXEDMAP } from "../../src/mm/mm_types.js";
import { SignalError } from "../../src/process.js";
import { System } from "../../src/system.js";
import { errnoOf } from "../support/errno-of.js";

function mapped(options: { ram?: string; flags?: number } = {}) {
  const system = new System({ ram: options.ram ?? "16MiB", devices: [{ memory: "4MiB" }] });
  const proc = system.spawn();
  const fd = system.device(0).open(proc);
  const freeBefore = system.kernel.ram.freePages;
  return { system, proc, fd, freeBefore };
}

describe("mmap of the dmirror device file", () => {
  it("maps zeroed pages read-only in a private mapping; a write copies the page, the rest stay the driver's", () => {
    const { system, proc, fd, freeBefore } = mapped();
    const ptr = proc.mmap(3 * PAGE_SIZE, { flags: MAP_PRIVATE, prot: PROT_READ | PROT_WRITE, file: fd });
    const vma = proc.mm.findVma(ptr / PAGE_SIZE);
    expect(vma?.driverFile).toBe("hmm_dmirror0");
    expect((vma!.flags & VM_MIXEDMAP) !== 0).toBe(true);
    expect(vma!.isAnonymous).toBe(false);
    // Three pages inserted at mmap time, before any access: no fault is needed to read them.
    expect(freeBefore - system.kernel.ram.freePages).toBe(3);
    const driverPages = proc.pinPages(ptr, 3, false);
    proc.unpinPages(driverPages);
    const faults = system.kernel.stats.faults;
    expect(Array.from(proc.read(ptr, 3 * PAGE_SIZE)).every((byte) => byte === 0)).toBe(true);
    expect(system.kernel.stats.faults).toBe(faults);
    expect(Array.from(fd.snapshot(ptr, 3))).toEqual([
      HMM_DMIRROR_PROT_READ,
      HMM_DMIRROR_PROT_READ,
      HMM_DMIRROR_PROT_READ,
    ]);
    expect(system.checkInvariants()).toEqual([]);
    // A write to a private mapping: do_wp_page copies the driver's page into a new anonymous one.
    proc.writeU32(ptr + PAGE_SIZE, 0xfeed);
    expect(proc.readU32(ptr + PAGE_SIZE)).toBe(0xfeed);
    // The copied page had no reference but its PTE's: it is freed at once.
    expect(system.kernel.ram.isFree(driverPages[1]!)).toBe(true);
    expect(Array.from(fd.snapshot(ptr, 3))).toEqual([
      HMM_DMIRROR_PROT_READ,
      HMM_DMIRROR_PROT_WRITE,
      HMM_DMIRROR_PROT_READ,
    ]);
    expect(system.checkInvariants()).toEqual([]);
    // A fork shares the driver's pages and the anonymous copy copy-on-write.
    const child = proc.fork();
    expect(child.readU32(ptr + PAGE_SIZE)).toBe(0xfeed);
    child.writeU32(ptr, 1);
    expect(proc.readU32(ptr)).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
    child.exit();
    proc.munmap(ptr, 3 * PAGE_SIZE);
    expect(system.checkInvariants()).toEqual([]);
    // The driver's other pages went back to the allocator with the last of their mappings.
    expect(system.kernel.ram.isFree(driverPages[0]!)).toBe(true);
    expect(system.kernel.ram.isFree(driverPages[2]!)).toBe(true);
  });

  it("has no fault handler: an access after MADV_DONTNEED is SIGBUS, and migrate_vma refuses the VMA", () => {
    const { system, proc, fd } = mapped();
    const ptr = proc.mmap(2 * PAGE_SIZE, { flags: MAP_PRIVATE, file: fd });
    proc.madvise(ptr, PAGE_SIZE, MADV_DONTNEED);
    let signal = "";
    try {
      proc.readU32(ptr);
    } catch (error) {
      if (error instanceof SignalError) signal = error.signal;
    }
    expect(signal).toBe("SIGBUS");
    expect(proc.readU32(ptr + PAGE_SIZE)).toBe(0);
    // migrate_vma_setup: a VM_SPECIAL VMA (VM_MIXEDMAP) is EINVAL.
    expect(errnoOf(() => fd.migrateToDevice(ptr + PAGE_SIZE, 1))).toBe(EINVAL);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("maps writable pages in a shared mapping, written in place", () => {
    const { system, proc, fd } = mapped();
    const ptr = proc.mmap(PAGE_SIZE, { flags: MAP_SHARED, file: fd });
    const pfn = proc.pinPages(ptr, 1, false);
    proc.writeU32(ptr, 42);
    expect(proc.pinPages(ptr, 1, false)).toEqual(pfn);
    proc.unpinPages([...pfn, ...pfn]);
    expect(Array.from(fd.snapshot(ptr, 1))).toEqual([HMM_DMIRROR_PROT_WRITE]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("answers misuse as the kernel does and leaves nothing behind when ->mmap fails", () => {
    const { system, proc, fd, freeBefore } = mapped({ ram: "1MiB" });
    // Another process's descriptor, or a closed one, is a bad fd.
    const other = system.spawn();
    const otherFd = system.device(0).open(other);
    expect(errnoOf(() => proc.mmap(PAGE_SIZE, { flags: MAP_PRIVATE, file: otherFd }))).toBe(EBADF);
    // RAM runs out inside dmirror_fops_mmap: ENOMEM, and the pages it had inserted are unmapped again.
    const vmas = proc.mm.vmas.length;
    expect(errnoOf(() => proc.mmap(512 * PAGE_SIZE, { flags: MAP_PRIVATE, file: fd }))).toBe(ENOMEM);
    expect(proc.mm.vmas.length).toBe(vmas);
    expect(system.kernel.ram.freePages).toBe(freeBefore);
    expect(system.checkInvariants()).toEqual([]);
    fd.close();
    expect(errnoOf(() => proc.mmap(PAGE_SIZE, { flags: MAP_PRIVATE, file: fd }))).toBe(EBADF);
    // Before dmirror_fops_mmap existed the driver had no ->mmap: ENODEV.
    const old = new System({ ram: "16MiB", protocol: "4.14" });
    const oldProc = old.spawn();
    const oldFd = old.device(0).open(oldProc);
    expect(errnoOf(() => oldProc.mmap(PAGE_SIZE, { flags: MAP_PRIVATE, file: oldFd }))).toBe(ENODEV);
    expect(old.checkInvariants()).toEqual([]);
  });

  it("the checker reports a driver's page mapped outside a VM_MIXEDMAP VMA", () => {
    const { system, proc, fd } = mapped();
    const ptr = proc.mmap(PAGE_SIZE, { flags: MAP_PRIVATE, file: fd });
    const vma = proc.mm.findVma(ptr / PAGE_SIZE)!;
    vma.flags &= ~VM_MIXEDMAP;
    expect(system.checkInvariants().join("\n")).toMatch(
      /in no page cache and not anonymous, outside a driver's/,
    );
    vma.flags |= VM_MIXEDMAP;
    expect(system.checkInvariants()).toEqual([]);
  });
});
