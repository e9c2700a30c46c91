/**
 * hugetlbfs for MAP_HUGETLB (mm/hugetlb.c): the pool (nr_hugepages), mmap's checks, faults that map a
 * whole 2 MiB folio, boundaries that may not cut a huge page, copy-on-write across fork at 2 MiB, pins
 * on the folio, and the calls that refuse a hugetlb VMA.
 */
import { describe, expect, it } from "vitest";
import { EINVAL, ENOMEM, EOPNOTSUPP, EPERM } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import {
  HMM_DMIRROR_PROT_PMD,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
} from "../../src/drivers/dmirror_uapi.js";
import {
  MADV_DONTNEED,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_HUGE_1GB,
  MAP_HUGE_2MB,
  MAP_HUGETLB,
  MAP_PRIVATE,
  MAP_SHARED,
  MREMAP_MAYMOVE,
  PROT_READ,
  PROT_WRITE,
} from "../../src/mm/mmap.js";
import { HPAGE_PMD_NR, PG_hugetlb } from "../../src/mm/page.js";
import { pteFrame, pteWrite } from "../../src/mm/pgtable.js";
import type { Process } from "../../src/process.js";
import { SignalError } from "../../src/process.js";
import type { System } from "../../src/system.js";
import { expectBytes, kernelError, smallSystem } from "./helpers.js";

const P = PAGE_SIZE;
const HUGE = HPAGE_PMD_NR * P;
const HUGETLB = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;

function leafAt(proc: Process, addr: number): number {
  return proc.system.kernel.pt.readPmdLeaf(proc.mm.root, Math.floor(addr / P));
}

function expectClean(system: System): void {
  expect(system.checkInvariants()).toEqual([]);
}

function pattern(bytes: number, seed = 1): Uint8Array {
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (i * 7 + seed) % 251;
  return data;
}

describe("the hugetlb pool (nr_hugepages)", () => {
  it("takes 2 MiB folios from RAM and gives free ones back; EINVAL for a bad count", () => {
    const system = smallSystem({ ram: "16MiB" });
    const k = system.kernel;
    expect(system.hugepages).toEqual({ total: 0, free: 0 });
    expect(system.setNrHugepages(3)).toBe(3);
    expect(system.hugepages).toEqual({ total: 3, free: 3 });
    expect(k.ram.usedPages).toBe(3 * HPAGE_PMD_NR);
    expectClean(system);
    // More than RAM holds: as many as there are free aligned 2 MiB blocks (7 of 8: the first holds
    // the zero page).
    expect(system.setNrHugepages(100)).toBe(7);
    expect(system.setNrHugepages(1)).toBe(1);
    expect(k.ram.usedPages).toBe(HPAGE_PMD_NR);
    for (const bad of [-1, 1.5, "2", null]) {
      // @ts-expect-error: a JavaScript caller can pass anything
      expect(kernelError(() => system.setNrHugepages(bad)).errno).toBe(EINVAL);
    }
    expect(system.hugepages).toEqual({ total: 1, free: 1 });
    expectClean(system);
  });

  it("keeps a folio in use when shrinking, and frees it to the pool when unmapped", () => {
    const system = smallSystem({ ram: "16MiB", hugepages: 2 });
    const proc = system.spawn();
    const addr = proc.mmap(HUGE, { flags: HUGETLB });
    proc.write(addr, Uint8Array.of(1));
    expect(system.setNrHugepages(0)).toBe(1);
    expect(system.hugepages).toEqual({ total: 1, free: 0 });
    proc.munmap(addr, HUGE);
    expect(system.hugepages).toEqual({ total: 1, free: 1 });
    expectClean(system);
  });
});

describe("mmap(MAP_HUGETLB)", () => {
  it("rounds the length up to 2 MiB and places the mapping 2 MiB-aligned; no RSS, no THP", () => {
    const system = smallSystem({ ram: "16MiB", hugepages: 2 });
    const proc = system.spawn();
    const addr = proc.mmap(P, { flags: HUGETLB | MAP_HUGE_2MB });
    expect(addr % HUGE).toBe(0);
    const vma = proc.mm.findVma(addr / P)!;
    expect(vma.end - vma.start).toBe(HPAGE_PMD_NR);
    expect(proc.read(addr + HUGE - 4, 4)).toEqual(new Uint8Array(4));
    expect(proc.mm.rssAnon).toBe(0);
    expect(system.kernel.stats.thpFaultAlloc).toBe(0);
    expectClean(system);
  });

  it("refuses what hmmsim's hugetlbfs has not, and a pool too small, changing nothing", () => {
    const system = smallSystem({ ram: "16MiB", hugepages: 1 });
    const proc = system.spawn();
    const file = system.createFile("f", HUGE);
    const cases: [number, Parameters<Process["mmap"]>[1]][] = [
      [EINVAL, { flags: HUGETLB | MAP_HUGE_1GB }],
      [EINVAL, { flags: MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB }],
      [EINVAL, { flags: MAP_PRIVATE | MAP_HUGETLB, file }],
      [EINVAL, { flags: HUGETLB | MAP_FIXED, addr: 0x10_0000_0000 + P }],
      // hugetlb_get_unmapped_area's alignment check comes before mmap_min_addr's EPERM.
      [EINVAL, { flags: HUGETLB | MAP_FIXED, addr: P }],
    ];
    for (const [errno, options] of cases)
      expect(kernelError(() => proc.mmap(HUGE, options)).errno).toBe(errno);
    expect(kernelError(() => proc.mmap(2 * HUGE, { flags: HUGETLB })).errno).toBe(ENOMEM);
    // A failed MAP_FIXED leaves what it would have replaced.
    const old = proc.mmap(HUGE, { addr: 0x10_0000_0000, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.write(old, Uint8Array.of(5));
    expect(kernelError(() => proc.mmap(2 * HUGE, { flags: HUGETLB | MAP_FIXED, addr: old })).errno).toBe(
      ENOMEM,
    );
    expect(proc.read(old, 1)).toEqual(Uint8Array.of(5));
    expect(proc.mm.vmas.length).toBe(1);
    expectClean(system);
  });
});

describe("hugetlb faults and VMA boundaries", () => {
  function mapped(hugepages = 2) {
    const system = smallSystem({ ram: "16MiB", hugepages });
    const proc = system.spawn();
    const addr = proc.mmap(HUGE, { flags: HUGETLB });
    return { system, proc, addr };
  }

  it("a read maps a zeroed folio read-only, a write then makes it writable; the device sees PMD codes", () => {
    const { system, proc, addr } = mapped();
    expect(proc.read(addr, 8)).toEqual(new Uint8Array(8));
    const leaf = leafAt(proc, addr);
    expect(pteWrite(leaf)).toBe(false);
    expect(system.kernel.pages.has(pteFrame(leaf), PG_hugetlb)).toBe(true);
    expect(system.hugepages.free).toBe(1);
    const data = pattern(HUGE);
    proc.write(addr, data);
    expect(pteFrame(leafAt(proc, addr))).toBe(pteFrame(leaf));
    expectBytes(proc.read(addr, HUGE), data);
    const fd = system.device(0).open(proc);
    expect(fd.snapshot(addr, 2)).toEqual(
      Uint8Array.of(
        HMM_DMIRROR_PROT_WRITE | HMM_DMIRROR_PROT_PMD,
        HMM_DMIRROR_PROT_WRITE | HMM_DMIRROR_PROT_PMD,
      ),
    );
    proc.mprotect(addr, HUGE, PROT_READ);
    expect(fd.snapshot(addr, 1)).toEqual(Uint8Array.of(HMM_DMIRROR_PROT_READ | HMM_DMIRROR_PROT_PMD));
    // Writable again: the first write reuses the exclusive folio (hugetlb_wp).
    proc.mprotect(addr, HUGE, PROT_READ | PROT_WRITE);
    proc.write(addr, Uint8Array.of(200));
    expect(pteFrame(leafAt(proc, addr))).toBe(pteFrame(leaf));
    expect(system.hugepages.free).toBe(1);
    expectClean(system);
  });

  it("munmap, mprotect and madvise that would cut a huge page fail with EINVAL and change nothing", () => {
    const { system, proc, addr } = mapped();
    proc.write(addr, Uint8Array.of(9));
    expect(kernelError(() => proc.munmap(addr, P)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.munmap(addr + P, HUGE - P)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mprotect(addr, P, PROT_READ)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.madvise(addr, P, MADV_DONTNEED)).errno).toBe(EINVAL);
    expect(kernelError(() => proc.mremap(addr, HUGE, 2 * HUGE, MREMAP_MAYMOVE)).errno).toBe(EINVAL);
    expect(proc.read(addr, 1)).toEqual(Uint8Array.of(9));
    expect(pteWrite(leafAt(proc, addr))).toBe(true);
    proc.munmap(addr, HUGE);
    expect(system.hugepages.free).toBe(2);
    expectClean(system);
  });

  it("fork shares the folio read-only; each side's write copies or reuses it (COW at 2 MiB)", () => {
    const { system, proc, addr } = mapped(3);
    const data = pattern(HUGE, 3);
    proc.write(addr, data);
    const child = proc.fork();
    const head = pteFrame(leafAt(proc, addr));
    expect(pteFrame(leafAt(child, addr))).toBe(head);
    expect(pteWrite(leafAt(proc, addr))).toBe(false);
    expectClean(system);
    child.write(addr + 5, Uint8Array.of(77));
    expect(pteFrame(leafAt(child, addr))).not.toBe(head);
    expect(system.hugepages.free).toBe(1);
    expect(proc.read(addr + 5, 1)).toEqual(data.subarray(5, 6));
    const childView = data.slice();
    childView[5] = 77;
    expectBytes(child.read(addr, HUGE), childView);
    // The parent is now the folio's only mapping: its write reuses it.
    proc.write(addr, Uint8Array.of(1));
    expect(pteFrame(leafAt(proc, addr))).toBe(head);
    child.exit();
    expect(system.hugepages.free).toBe(2);
    expectClean(system);
  });

  it("a device mirroring the folio follows a COW copy and loses write access on mprotect (notifiers)", () => {
    const { system, proc, addr } = mapped(3);
    proc.write(addr, Uint8Array.of(1));
    const child = proc.fork();
    const fd = system.device(0).open(proc);
    const into = new Uint8Array(P);
    fd.read(addr, 1, into);
    expect(into[0]).toBe(1);
    // hugetlb_wp's MMU_NOTIFY_CLEAR: the mirror drops the shared folio the parent copies away from.
    proc.write(addr, Uint8Array.of(2));
    fd.read(addr, 1, into);
    expect(into[0]).toBe(2);
    expectClean(system);
    child.exit();
    // hugetlb_change_protection's MMU_NOTIFY_PROTECTION_VMA: after PROT_READ the device cannot write.
    fd.write(addr, 1, new Uint8Array(P).fill(3));
    proc.mprotect(addr, HUGE, PROT_READ);
    expectClean(system);
    // hmm_vma_fault: a write fault in a VMA without VM_WRITE is EPERM.
    expect(kernelError(() => fd.write(addr, 1, new Uint8Array(P).fill(4))).errno).toBe(EPERM);
    expect(proc.read(addr, 1)).toEqual(Uint8Array.of(3));
    expectClean(system);
  });

  it("a COW with the pool empty is SIGBUS, and the data stays", () => {
    const { system, proc, addr } = mapped(1);
    proc.write(addr, Uint8Array.of(4));
    const child = proc.fork();
    expect(() => child.write(addr, Uint8Array.of(5))).toThrow(SignalError);
    expect(child.read(addr, 1)).toEqual(Uint8Array.of(4));
    child.exit();
    expectClean(system);
  });

  it("a pin holds the folio: pinned pages are the folio's, counted on its head", () => {
    const { system, proc, addr } = mapped();
    const pfns = proc.pinPages(addr + 3 * P, 2, true);
    const head = pteFrame(leafAt(proc, addr));
    expect(pfns).toEqual([head + 3, head + 4]);
    expectClean(system);
    proc.munmap(addr, HUGE);
    expect(system.hugepages.free).toBe(1);
    expectClean(system);
    proc.unpinPages(pfns);
    expect(system.hugepages.free).toBe(2);
    expectClean(system);
  });

  it("migration and device-exclusive access refuse a hugetlb VMA", () => {
    const { system, proc, addr } = mapped();
    proc.write(addr, Uint8Array.of(1));
    const fd = system.device(0).open(proc);
    expect(kernelError(() => fd.migrateToDevice(addr, 4)).errno).toBe(EINVAL);
    expect(kernelError(() => fd.exclusive(addr, 1)).errno).toBe(EOPNOTSUPP);
    expect(proc.read(addr, 1)).toEqual(Uint8Array.of(1));
    expectClean(system);
  });
});
