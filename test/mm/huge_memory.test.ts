/**
 * Transparent huge pages for anonymous memory (mm/huge_memory.c): a THP on the first write fault of an
 * MADV_HUGEPAGE range, the huge zero folio on a read fault and its replacement on a write, the
 * fallback to 4 KiB pages when no 2 MiB block is free, and every way a huge PMD is split (partial
 * munmap, mprotect, MADV_DONTNEED, fork, mremap), each keeping every byte; hmm_range_fault reporting
 * the PMD order; migration of a THP range to a device and back.
 */
import { describe, expect, it } from "vitest";
import { EINVAL, ENOENT } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import {
  HMM_DMIRROR_PROT_PMD,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
} from "../../src/drivers/dmirror_uapi.js";
import { MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE } from "../../src/mm/mman.js";
import {
  MADV_DONTNEED,
  MADV_FREE,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
} from "../../src/mm/mmap.js";
import { HPAGE_PMD_NR, PG_dirty, PG_head, PG_swapbacked, PG_tail } from "../../src/mm/page.js";
import { ZERO_PFN } from "../../src/mm/page_alloc.js";
import { pteDirty, pteFrame, pteWrite } from "../../src/mm/pgtable.js";
import type { Process } from "../../src/process.js";
import type { System } from "../../src/system.js";
import { expectBytes, kernelError, pfnAt, smallSystem } from "./helpers.js";

const P = PAGE_SIZE;
const HUGE = HPAGE_PMD_NR * P;
/** A 2 MiB-aligned address with room for several huge pages. */
const FIXED = 0x10_0000_0000;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

/** The huge PMD leaf that maps addr (0 when a PTE table or nothing is there). */
function leafAt(proc: Process, addr: number): number {
  return proc.system.kernel.pt.readPmdLeaf(proc.mm.root, Math.floor(addr / P));
}

/** 2 MiB * count at FIXED with MADV_HUGEPAGE, in a system with room for several THPs. */
function hugeRange(count = 1, options: Parameters<typeof smallSystem>[0] = {}) {
  const system = smallSystem({ ram: "32MiB", ...options });
  const proc = system.spawn();
  const addr = proc.mmap(count * HUGE, { addr: FIXED, flags: ANON | MAP_FIXED });
  proc.madvise(addr, count * HUGE, MADV_HUGEPAGE);
  return { system, proc, addr };
}

/** Distinct contents for every 4 KiB page of [addr, addr + pages * 4 KiB): page i holds bytes of i + seed. */
function pattern(pages: number, seed = 1): Uint8Array {
  const data = new Uint8Array(pages * P);
  for (let i = 0; i < pages; i++) data.fill((i + seed) % 251, i * P, (i + 1) * P);
  return data;
}

function expectClean(system: System): void {
  expect(system.checkInvariants()).toEqual([]);
}

describe("THP faults (do_huge_pmd_anonymous_page)", () => {
  it("the first write to an MADV_HUGEPAGE range maps one 2 MiB folio by a huge PMD", () => {
    const { system, proc, addr } = hugeRange();
    const k = system.kernel;
    const used = k.ram.usedPages;
    proc.write(addr + 5 * P, Uint8Array.of(7));
    const leaf = leafAt(proc, addr);
    expect(leaf).not.toBe(0);
    expect(pteWrite(leaf)).toBe(true);
    const head = pteFrame(leaf);
    expect(head % HPAGE_PMD_NR).toBe(0);
    expect(k.pages.has(head, PG_head)).toBe(true);
    expect(k.pages.has(head + 1, PG_tail)).toBe(true);
    expect(k.pages.entireMapcount[head / HPAGE_PMD_NR]).toBe(1);
    expect(k.pages.folioMapcount(head)).toBe(1);
    expect(k.ram.usedPages - used).toBe(HPAGE_PMD_NR);
    expect(proc.mm.rssAnon).toBe(HPAGE_PMD_NR);
    expect(k.stats.thpFaultAlloc).toBe(1);
    // The MMU reaches page 5 of the folio; the rest of the 2 MiB reads back zero.
    expect(pfnAt(proc, addr + 5 * P)).toBe(head + 5);
    const back = proc.read(addr, HUGE);
    expect(back[5 * P]).toBe(7);
    expect(back.reduce((sum, b) => sum + b, 0)).toBe(7);
    expectClean(system);
  });

  it("without MADV_HUGEPAGE (enabled=madvise), with MADV_NOHUGEPAGE, or with enabled=never, 4 KiB pages", () => {
    for (const setup of ["plain", "nohuge", "never"] as const) {
      const system = smallSystem({ ram: "32MiB", thp: { enabled: setup === "never" ? "never" : "madvise" } });
      const proc = system.spawn();
      const addr = proc.mmap(HUGE, { addr: FIXED, flags: ANON | MAP_FIXED });
      if (setup !== "plain") proc.madvise(addr, HUGE, setup === "nohuge" ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
      proc.write(addr, Uint8Array.of(1));
      expect(leafAt(proc, addr), setup).toBe(0);
      expect(system.kernel.ram.usedPages, setup).toBe(1);
      expectClean(system);
    }
  });

  it("enabled=always gives THPs without madvise, but only where a whole aligned 2 MiB is in the VMA", () => {
    const system = smallSystem({ ram: "32MiB", thp: { enabled: "always" } });
    const proc = system.spawn();
    const addr = proc.mmap(HUGE + P, { addr: FIXED, flags: ANON | MAP_FIXED });
    proc.write(addr, Uint8Array.of(1));
    proc.write(addr + HUGE, Uint8Array.of(2));
    expect(leafAt(proc, addr)).not.toBe(0);
    expect(leafAt(proc, addr + HUGE)).toBe(0);
    expect(system.kernel.ram.usedPages).toBe(HPAGE_PMD_NR + 1);
    expectClean(system);
  });

  it("a read maps the huge zero folio read-only; a write then replaces it with a new THP", () => {
    const { system, proc, addr } = hugeRange();
    const k = system.kernel;
    expect(proc.read(addr + 3 * P, 4)).toEqual(new Uint8Array(4));
    const zeroLeaf = leafAt(proc, addr);
    expect(pteFrame(zeroLeaf)).toBe(k.hugeZeroPfn);
    expect(pteWrite(zeroLeaf)).toBe(false);
    expect(proc.mm.rssAnon).toBe(0);
    const fd = system.device(0).open(proc);
    // hmm_range_fault reports the huge zero folio as a read-only PMD mapping (not HMM_DMIRROR_PROT_ZERO,
    // which is the 4 KiB zero page's).
    expect(fd.snapshot(addr, 2)).toEqual(
      Uint8Array.of(
        HMM_DMIRROR_PROT_READ | HMM_DMIRROR_PROT_PMD,
        HMM_DMIRROR_PROT_READ | HMM_DMIRROR_PROT_PMD,
      ),
    );
    proc.write(addr + P, Uint8Array.of(9));
    const leaf = leafAt(proc, addr);
    expect(pteFrame(leaf)).not.toBe(k.hugeZeroPfn);
    expect(pteWrite(leaf)).toBe(true);
    expect(proc.read(addr + P, 2)).toEqual(Uint8Array.of(9, 0));
    expect(proc.mm.rssAnon).toBe(HPAGE_PMD_NR);
    expect(fd.snapshot(addr, 1)).toEqual(Uint8Array.of(HMM_DMIRROR_PROT_WRITE | HMM_DMIRROR_PROT_PMD));
    expectClean(system);
  });

  it("a device mirroring the huge zero folio reads the CPU's write once a THP replaces it", () => {
    const { system, proc, addr } = hugeRange();
    const fd = system.device(0).open(proc);
    proc.read(addr, 1);
    const before = new Uint8Array(P).fill(0xff);
    expect(fd.read(addr, 1, before).cpages).toBe(1);
    expect(before.every((b) => b === 0)).toBe(true);
    // do_huge_zero_wp_pmd's MMU_NOTIFY_CLEAR drops the mirror's entries for the zero folio.
    proc.write(addr, Uint8Array.of(42));
    const after = new Uint8Array(P);
    fd.read(addr, 1, after);
    expect(after[0]).toBe(42);
    expectClean(system);
  });

  it("with no 2 MiB block free the fault falls back to a 4 KiB page (thp_fault_fallback), data intact", () => {
    const { system, proc, addr } = hugeRange();
    const k = system.kernel;
    k.ram.failNextLarge = 1;
    proc.write(addr, pattern(4));
    expect(leafAt(proc, addr)).toBe(0);
    expect(k.stats.thpFaultFallback).toBe(1);
    expect(k.ram.usedPages).toBe(4);
    expectBytes(proc.read(addr, 4 * P), pattern(4));
    expectClean(system);
  });

  it("use_zero_page=0: a read fault allocates a THP; setTransparentHugepage checks its values", () => {
    const { system, proc, addr } = hugeRange();
    system.setTransparentHugepage({ useZeroPage: false });
    proc.read(addr, 1);
    expect(pteFrame(leafAt(proc, addr))).not.toBe(system.kernel.hugeZeroPfn);
    expect(system.kernel.hugeZeroPfn).toBe(-1);
    for (const bad of [{ enabled: "sometimes" }, { useZeroPage: 1 }, null]) {
      // @ts-expect-error: a JavaScript caller can pass anything
      expect(kernelError(() => system.setTransparentHugepage(bad)).errno).toBe(EINVAL);
    }
    expect(system.transparentHugepage).toEqual({ enabled: "madvise", useZeroPage: false });
    expectClean(system);
  });
});

describe("page tables freed at munmap (free_pgtables)", () => {
  it("a 2 MiB span mapped by 4 KiB pages and unmapped takes a THP when mapped again", () => {
    const { system, proc, addr } = hugeRange();
    proc.madvise(addr, HUGE, MADV_NOHUGEPAGE);
    proc.write(addr, Uint8Array.of(1));
    expect(leafAt(proc, addr)).toBe(0);
    const k = system.kernel;
    expect(k.pt.lookupTable(proc.mm.root, addr / P)).toBeGreaterThanOrEqual(0);
    proc.munmap(addr, HUGE);
    expect(k.pt.lookupTable(proc.mm.root, addr / P)).toBe(-1);
    proc.mmap(HUGE, { addr, flags: ANON | MAP_FIXED });
    proc.madvise(addr, HUGE, MADV_HUGEPAGE);
    proc.write(addr, Uint8Array.of(2));
    expect(leafAt(proc, addr)).not.toBe(0);
    expectClean(system);
  });

  it("a PTE table that a neighbouring VMA still uses stays, with the neighbour's pages", () => {
    const system = smallSystem({ ram: "32MiB" });
    const proc = system.spawn();
    const addr = proc.mmap(8 * P, { addr: FIXED, flags: ANON | MAP_FIXED });
    proc.fillPages(addr, 4, 1);
    proc.fillPages(addr + 4 * P, 4, 3);
    const k = system.kernel;
    const table = k.pt.lookupTable(proc.mm.root, addr / P);
    proc.munmap(addr, 4 * P);
    expect(k.pt.lookupTable(proc.mm.root, addr / P)).toBe(table);
    expect(proc.checkPages(addr + 4 * P, 4, 3)).toEqual([]);
    expectClean(system);
  });
});

describe("splitting a huge PMD keeps every byte", () => {
  /** A written THP at addr: pages 0..511 hold pattern(512). */
  function writtenThp() {
    const range = hugeRange(2);
    range.proc.write(range.addr, pattern(HPAGE_PMD_NR));
    expect(leafAt(range.proc, range.addr)).not.toBe(0);
    return { ...range, head: pteFrame(leafAt(range.proc, range.addr)) };
  }

  it("munmap of the second half: the first half stays mapped by PTEs; the rest is freed", () => {
    const { system, proc, addr, head } = writtenThp();
    const k = system.kernel;
    proc.munmap(addr + HUGE / 2, HUGE / 2);
    expect(leafAt(proc, addr)).toBe(0);
    expect(k.pages.has(head, PG_head)).toBe(false);
    expect(k.pages.has(head + 1, PG_tail)).toBe(false);
    expect(k.ram.usedPages).toBe(HPAGE_PMD_NR / 2);
    expect(k.stats.thpSplitPmd).toBe(1);
    expect(pfnAt(proc, addr + 7 * P)).toBe(head + 7);
    expectBytes(proc.read(addr, HUGE / 2), pattern(HPAGE_PMD_NR).subarray(0, HUGE / 2));
    expectClean(system);
  });

  it("munmap of the whole 2 MiB frees the folio without splitting it (zap_huge_pmd)", () => {
    const { system, proc, addr } = writtenThp();
    proc.munmap(addr, HUGE);
    expect(system.kernel.ram.usedPages).toBe(0);
    expect(system.kernel.stats.thpSplitPmd).toBe(0);
    expectClean(system);
  });

  it("MADV_DONTNEED of a few pages zeroes them and keeps the rest", () => {
    const { system, proc, addr } = writtenThp();
    proc.madvise(addr + 10 * P, 3 * P, MADV_DONTNEED);
    const expected = pattern(HPAGE_PMD_NR);
    expected.fill(0, 10 * P, 13 * P);
    expectBytes(proc.read(addr, HUGE), expected);
    expect(system.kernel.ram.usedPages).toBe(HPAGE_PMD_NR - 3);
    expectClean(system);
  });

  it("MADV_FREE of the whole 2 MiB keeps the PMD and makes the folio lazily free; of part of it, splits", () => {
    const { system, proc, addr, head } = writtenThp();
    const k = system.kernel;
    expect(pteDirty(leafAt(proc, addr))).toBe(true);
    proc.madvise(addr, HUGE, MADV_FREE);
    // The PMD is kept, clean (pmd_mkclean), and so is the folio.
    expect(pteFrame(leafAt(proc, addr))).toBe(head);
    expect(pteDirty(leafAt(proc, addr))).toBe(false);
    expect(k.pages.has(head, PG_dirty)).toBe(false);
    // folio_mark_lazyfree: off the swap-backed lists (hmmsim never reclaims, so the data stays).
    expect(k.pages.has(head, PG_swapbacked)).toBe(false);
    expect(k.stats.thpSplitPmd).toBe(0);
    expectBytes(proc.read(addr, HUGE), pattern(HPAGE_PMD_NR));
    proc.madvise(addr, 4 * P, MADV_FREE);
    expect(leafAt(proc, addr)).toBe(0);
    expectBytes(proc.read(addr, HUGE), pattern(HPAGE_PMD_NR));
    expectClean(system);
  });

  it("a pin takes the whole THP without splitting it; a split later moves each pin to its page", () => {
    const { system, proc, addr, head } = writtenThp();
    const k = system.kernel;
    const pfns = proc.pinPages(addr + 300 * P, 2, true);
    expect(pfns).toEqual([head + 300, head + 301]);
    expect(pteFrame(leafAt(proc, addr))).toBe(head);
    expect(k.stats.thpSplitPmd).toBe(0);
    expect(k.pages.refcount[head + 300]).toBe(0);
    expectClean(system);
    // A partial munmap splits the THP: the pinned pages hold their pins themselves.
    proc.munmap(addr + 256 * P, 256 * P);
    expect(k.pages.refcount[head + 300]! > 0).toBe(true);
    expect(k.ram.usedPages).toBe(HPAGE_PMD_NR / 2 + 2);
    expectClean(system);
    proc.unpinPages(pfns);
    expect(k.ram.usedPages).toBe(HPAGE_PMD_NR / 2);
    expectClean(system);
  });

  it("mprotect of the whole 2 MiB keeps the huge PMD (change_huge_pmd); of part of it, splits", () => {
    const { system, proc, addr } = writtenThp();
    proc.mprotect(addr, HUGE, PROT_READ);
    const leaf = leafAt(proc, addr);
    expect(leaf).not.toBe(0);
    expect(pteWrite(leaf)).toBe(false);
    // Writable again: the first write reuses the exclusive THP (do_huge_pmd_wp_page).
    proc.mprotect(addr, HUGE, PROT_READ | PROT_WRITE);
    proc.write(addr, Uint8Array.of(200));
    expect(pteWrite(leafAt(proc, addr))).toBe(true);
    proc.mprotect(addr + P, P, PROT_READ);
    expect(leafAt(proc, addr)).toBe(0);
    const expected = pattern(HPAGE_PMD_NR);
    expected[0] = 200;
    expectBytes(proc.read(addr, HUGE), expected);
    expectClean(system);
  });

  it("fork splits the THP; parent and child each keep their own writes (COW)", () => {
    const { system, proc, addr } = writtenThp();
    const child = proc.fork();
    child.write(addr + 100 * P, Uint8Array.of(250));
    proc.write(addr + 200 * P, Uint8Array.of(251));
    const parentView = pattern(HPAGE_PMD_NR);
    parentView[200 * P] = 251;
    const childView = pattern(HPAGE_PMD_NR);
    childView[100 * P] = 250;
    expectBytes(proc.read(addr, HUGE), parentView);
    expectBytes(child.read(addr, HUGE), childView);
    expectClean(system);
  });

  it("mremap of the whole 2 MiB to an aligned address moves the huge PMD; of half, splits", () => {
    const { system, proc, addr } = writtenThp();
    const to = FIXED + 8 * HUGE;
    const moved = proc.mremap(addr, HUGE, HUGE, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    expect(moved).toBe(to);
    expect(leafAt(proc, to)).not.toBe(0);
    expect(system.kernel.stats.thpSplitPmd).toBe(0);
    expectBytes(proc.read(to, HUGE), pattern(HPAGE_PMD_NR));
    const half = proc.mremap(
      to + HUGE / 2,
      HUGE / 2,
      HUGE / 2,
      MREMAP_MAYMOVE | MREMAP_FIXED,
      FIXED + 12 * HUGE,
    );
    expect(leafAt(proc, to)).toBe(0);
    expectBytes(proc.read(to, HUGE / 2), pattern(HPAGE_PMD_NR).subarray(0, HUGE / 2));
    expectBytes(proc.read(half, HUGE / 2), pattern(HPAGE_PMD_NR).subarray(HUGE / 2));
    expectClean(system);
  });

  it("a read-faulted huge zero PMD split by a partial munmap maps the 4 KiB zero page", () => {
    const { system, proc, addr } = hugeRange();
    proc.read(addr, 1);
    proc.munmap(addr + HUGE - P, P);
    expect(leafAt(proc, addr)).toBe(0);
    expect(pfnAt(proc, addr)).toBe(ZERO_PFN);
    expectBytes(proc.read(addr, HUGE - P), new Uint8Array(HUGE - P));
    expectClean(system);
  });
});

describe("a THP and the device", () => {
  it("migrated to the device and back (4 KiB entries, no MIGRATE_VMA_SELECT_COMPOUND): every byte kept", () => {
    for (const store of ["bytes", "tokens"] as const) {
      const { system, proc, addr } = hugeRange(1, { store });
      proc.fillPages(addr, HPAGE_PMD_NR, 0x5eed);
      expect(leafAt(proc, addr), store).not.toBe(0);
      const fd = system.device(0).open(proc);
      const result = fd.migrateToDevice(addr, HPAGE_PMD_NR);
      expect(result.cpages, store).toBe(HPAGE_PMD_NR);
      expect(leafAt(proc, addr), store).toBe(0);
      expect(system.kernel.stats.thpSplitPmd, store).toBe(1);
      expectClean(system);
      // A CPU fault on part of it brings those pages back; the rest comes back by MIGRATE_TO_SYS.
      expect(proc.checkPages(addr, 4, 0x5eed), store).toEqual([]);
      fd.migrateToSystem(addr, HPAGE_PMD_NR);
      expect(proc.checkPages(addr, HPAGE_PMD_NR, 0x5eed), store).toEqual([]);
      expectClean(system);
    }
  });

  it("today's collect leaves a THP whole when system memory is not selected (MIGRATE_TO_SYS over it)", () => {
    const { system, proc, addr } = hugeRange(2);
    proc.fillPages(addr, 2 * HPAGE_PMD_NR, 9);
    const fd = system.device(0).open(proc);
    // The second 2 MiB goes to the device (split, 512 pages); then MIGRATE_TO_SYS over both brings it
    // back and skips the first, still a THP (migrate_vma_collect_huge_pmd without SELECT_SYSTEM).
    expect(fd.migrateToDevice(addr + HUGE, HPAGE_PMD_NR).cpages).toBe(HPAGE_PMD_NR);
    expect(system.kernel.stats.thpSplitPmd).toBe(1);
    fd.migrateToSystem(addr, 2 * HPAGE_PMD_NR);
    expect(leafAt(proc, addr)).not.toBe(0);
    expect(system.kernel.stats.thpSplitPmd).toBe(1);
    expect(proc.checkPages(addr, 2 * HPAGE_PMD_NR, 9)).toEqual([]);
    expectClean(system);
  });

  it("today's collect takes the huge zero PMD for a hole; the device gets zeroed pages", () => {
    const { system, proc, addr } = hugeRange();
    proc.read(addr, 1);
    const fd = system.device(0).open(proc);
    const mirror = new Uint8Array(HUGE).fill(0xff);
    expect(fd.migrateToDevice(addr, HPAGE_PMD_NR, mirror).cpages).toBe(HPAGE_PMD_NR);
    expect(mirror.every((b) => b === 0)).toBe(true);
    expect(leafAt(proc, addr)).toBe(0);
    expectBytes(proc.read(addr, HUGE), new Uint8Array(HUGE));
    expectClean(system);
  });

  it("a THP with a pinned page is skipped by the collect (its split would fail): nothing moves", () => {
    const { system, proc, addr } = hugeRange(1, { store: "tokens" });
    proc.fillPages(addr, HPAGE_PMD_NR, 4);
    const pfns = proc.pinPages(addr + 7 * P, 1, false);
    const fd = system.device(0).open(proc);
    // No page migrates, so dmirror's read-back finds none mirrored.
    expect(kernelError(() => fd.migrateToDevice(addr, HPAGE_PMD_NR)).errno).toBe(ENOENT);
    expect(leafAt(proc, addr)).not.toBe(0);
    expect(system.kernel.stats.thpSplitPmd).toBe(0);
    expectClean(system);
    proc.unpinPages(pfns);
    expect(fd.migrateToDevice(addr, HPAGE_PMD_NR).cpages).toBe(HPAGE_PMD_NR);
    expect(proc.checkPages(addr, HPAGE_PMD_NR, 4)).toEqual([]);
    expectClean(system);
  });

  it("the seed's collect takes a huge PMD for a hole: nothing migrates, the read-back fails, the THP stays", () => {
    const { system, proc, addr } = hugeRange(1, { protocol: "seed" });
    proc.write(addr, pattern(HPAGE_PMD_NR));
    const fd = system.device(0).open(proc);
    // migrate_vma_collect_pmd: pmd_trans_unstable() sends a huge PMD to migrate_vma_collect_hole, whose
    // empty entries migrate nothing; dmirror's read-back then finds no mirrored page.
    expect(kernelError(() => fd.migrateToDevice(addr, HPAGE_PMD_NR)).errno).toBe(ENOENT);
    expect(leafAt(proc, addr)).not.toBe(0);
    expectBytes(proc.read(addr, HUGE), pattern(HPAGE_PMD_NR));
    expectClean(system);
  });
});

describe("THP-aligned placement (__get_unmapped_area)", () => {
  it("mmap without a hint of a multiple of 2 MiB is 2 MiB-aligned and, under enabled=always, takes THPs", () => {
    const system = smallSystem({ ram: "32MiB", thp: { enabled: "always" } });
    const proc = system.spawn();
    const first = proc.mmap(HUGE);
    const second = proc.mmap(2 * HUGE);
    expect(first % HUGE).toBe(0);
    expect(second % HUGE).toBe(0);
    proc.write(first, Uint8Array.of(1));
    expect(leafAt(proc, first)).not.toBe(0);
    // Other lengths, and a shared mapping, are placed by the plain top-down search, right below the
    // last mapping.
    const odd = proc.mmap(HUGE + P);
    expect(odd + HUGE + P).toBe(second);
    const shared = proc.mmap(HUGE, { flags: MAP_SHARED | MAP_ANONYMOUS });
    expect(shared + HUGE).toBe(odd);
    // mremap that moves private anonymous memory to a new 2 MiB multiple finds a 2 MiB-aligned place.
    proc.mmap(P, { addr: first + HUGE, flags: ANON | MAP_FIXED });
    const moved = proc.mremap(first, HUGE, 2 * HUGE, MREMAP_MAYMOVE);
    expect(moved).not.toBe(first);
    expect(moved % HUGE).toBe(0);
    expect(proc.read(moved, 1)).toEqual(Uint8Array.of(1));
    expectClean(system);
  });
});
