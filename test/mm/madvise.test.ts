/**
 * madvise(2) as mm/madvise.c answers it: do_madvise's checks (madvise_behavior_valid,
 * check_input_range), madvise_walk_vmas, MADV_DONTNEED, MADV_FREE (madvise_free_pte_range),
 * MADV_HUGEPAGE and MADV_NOHUGEPAGE (hugepage_madvise, madvise_update_vma).
 */
import { describe, expect, it } from "vitest";
import { EPERM } from "../../src/base/errno.js";
import { PAGE_SIZE, TASK_SIZE, type Vpn } from "../../src/base/units.js";
import { VM_HUGEPAGE, VM_NOHUGEPAGE } from "../../src/mm/mm_types.js";
import {
  MADV_DONTNEED,
  MADV_FREE,
  MADV_HUGEPAGE,
  MADV_HWPOISON,
  MADV_NOHUGEPAGE,
  MADV_NORMAL,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
} from "../../src/mm/mmap.js";
import {
  EVENT_NAMES,
  type MmuIntervalNotifier,
  type MmuNotifierRange,
  mmuIntervalNotifierInsert,
  mmuIntervalSetSeq,
} from "../../src/mm/mmu_notifier.js";
import { PG_dirty, PG_lru, PG_swapbacked } from "../../src/mm/page.js";
import { ZERO_PFN } from "../../src/mm/page_alloc.js";
import { pteDirty, pteFrame, pteYoung } from "../../src/mm/pgtable.js";
import { LRU_INACTIVE_FILE } from "../../src/mm/swap.js";
import type { Kfn } from "../../src/sched/thread.js";
import { drain, kernelError, pageOf, pfnAt, pteAt, smallSystem, vmaLayout } from "./helpers.js";
import { expectFailsUnchanged } from "./syscall-state.js";

const P = PAGE_SIZE;
const FIXED = 0x10_0000_0000;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

function at(addr: number) {
  return { addr, flags: ANON | MAP_FIXED };
}

describe("madvise argument checks (do_madvise, check_input_range)", () => {
  it("advice is a C int: the low 32 bits count, so 2^32 + MADV_DONTNEED is MADV_DONTNEED", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P, at(FIXED));
    proc.write(addr, pageOf(1));
    proc.madvise(addr, P, 2 ** 32 + MADV_DONTNEED);
    expect(proc.read(addr, P)).toEqual(pageOf(0));
  });

  it("unknown advice, advice hmmsim does not model, or a value no register holds: EINVAL", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P, at(FIXED));
    proc.write(addr, pageOf(1));
    for (const advice of [99, -1, MADV_NORMAL, Number.NaN, 1.5, 4n, "4"]) {
      expectFailsUnchanged(
        system,
        "EINVAL",
        () => proc.madvise(addr, P, advice as number),
        `advice ${String(advice)}`,
      );
    }
  });

  it("unaligned, a length rounding to 0 from just below 2^64, or a wrapping range: EINVAL; length 0 is 0", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, at(FIXED));
    proc.write(addr, pageOf(1, 2));
    expectFailsUnchanged(system, "EINVAL", () => proc.madvise(addr + 1, P, MADV_DONTNEED), "unaligned");
    expectFailsUnchanged(system, "EINVAL", () => proc.madvise(addr, -1, MADV_DONTNEED), "-1 rounds to 0");
    // -4096 from this address wraps: start + len < start.
    expectFailsUnchanged(system, "EINVAL", () => proc.madvise(addr, -P, MADV_DONTNEED), "wraps");
    expectFailsUnchanged(
      system,
      "EINVAL",
      () => proc.madvise(-P, 2 * P, MADV_DONTNEED),
      "negative start wraps",
    );
    // Length 0 succeeds without looking at the range; the advice is still checked first.
    proc.madvise(FIXED + 64 * P, 0, MADV_DONTNEED);
    expectFailsUnchanged(system, "EINVAL", () => proc.madvise(addr, 0, 99), "length 0, bad advice");
    expect(proc.read(addr, 2 * P)).toEqual(pageOf(1, 2));
  });

  it("MADV_HWPOISON needs CAP_SYS_ADMIN (madvise_inject_error): EPERM", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    expect(kernelError(() => proc.madvise(addr, P, MADV_HWPOISON)).errno).toBe(EPERM);
  });
});

describe("madvise_walk_vmas", () => {
  it("a range partly unmapped: every VMA in it is advised, then ENOMEM", () => {
    const system = smallSystem();
    const proc = system.spawn();
    // hole, VMA, hole, VMA
    proc.mmap(P, at(FIXED + P));
    proc.mmap(P, at(FIXED + 3 * P));
    proc.write(FIXED + P, pageOf(1));
    proc.write(FIXED + 3 * P, pageOf(2));
    expect(kernelError(() => proc.madvise(FIXED, 4 * P, MADV_DONTNEED)).code).toBe("ENOMEM");
    expect(pteAt(proc, FIXED + P)).toBe(0);
    expect(pteAt(proc, FIXED + 3 * P)).toBe(0);
    expect(proc.read(FIXED + 3 * P, P)).toEqual(pageOf(0));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a range running past TASK_SIZE (but not wrapping) advises what is mapped, then ENOMEM", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P, at(FIXED));
    proc.write(addr, pageOf(1));
    expect(kernelError(() => proc.madvise(addr, TASK_SIZE, MADV_DONTNEED)).code).toBe("ENOMEM");
    expect(proc.read(addr, P)).toEqual(pageOf(0));
    // Entirely above user space: nothing there, ENOMEM, nothing changed.
    expectFailsUnchanged(system, "ENOMEM", () => proc.madvise(TASK_SIZE + P, P, MADV_DONTNEED), "above");
  });

  it("a VMA the advice does not apply to stops the walk with EINVAL after the VMAs before it", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const file = system.createFile("f", P);
    proc.mmap(P, at(FIXED));
    proc.mmap(P, { addr: FIXED + P, flags: MAP_SHARED | MAP_FIXED, file });
    proc.mmap(P, at(FIXED + 2 * P));
    for (let i = 0; i < 3; i++) proc.writeU32(FIXED + i * P, 1);
    drain(system);
    // MADV_FREE works only on private anonymous memory (vma_is_anonymous).
    expect(kernelError(() => proc.madvise(FIXED, 3 * P, MADV_FREE)).code).toBe("EINVAL");
    expect(pteDirty(pteAt(proc, FIXED))).toBe(false);
    expect(pteDirty(pteAt(proc, FIXED + 2 * P))).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("MADV_FREE (madvise_free_pte_range)", () => {
  it("pages stay readable (hmmsim has no reclaim), lose their dirty and young bits, and go lazy-free", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(3 * P, at(FIXED));
    proc.write(addr, pageOf(0x5a, 2));
    // Page 2 is only read: it maps the zero page, which MADV_FREE leaves alone.
    expect(proc.readU32(addr + 2 * P)).toBe(0);
    const pfn = pfnAt(proc, addr);
    const pages = system.kernel.pages;
    expect(pages.has(pfn, PG_dirty) || pteDirty(pteAt(proc, addr))).toBe(true);
    const used = system.usedPages;
    proc.madvise(addr, 3 * P, MADV_FREE);
    expect(pteDirty(pteAt(proc, addr))).toBe(false);
    expect(pteYoung(pteAt(proc, addr))).toBe(false);
    expect(pages.has(pfn, PG_dirty)).toBe(false);
    expect(pages.has(pfn, PG_swapbacked)).toBe(false);
    expect(pages.has(pfn, PG_lru)).toBe(true);
    expect(pages.lruList[pfn]).toBe(LRU_INACTIVE_FILE);
    expect(pteFrame(pteAt(proc, addr + 2 * P))).toBe(ZERO_PFN);
    // Nothing was freed: the data is still there.
    expect(system.usedPages).toBe(used);
    expect(proc.read(addr, 2 * P)).toEqual(pageOf(0x5a, 2));
    // A later write makes it dirty again (what reclaim would see to keep it).
    proc.writeU32(addr, 7);
    expect(pteDirty(pteAt(proc, addr))).toBe(true);
    expect(proc.readU32(addr)).toBe(7);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a dirty page a fork still shares is left as it was; the notifier hears MMU_NOTIFY_CLEAR", () => {
    const system = smallSystem();
    const parent = system.spawn();
    const addr = parent.mmap(P, at(FIXED));
    parent.writeU32(addr, 3);
    const pfn = pfnAt(parent, addr);
    const pages = system.kernel.pages;
    pages.set(pfn, PG_dirty);
    const child = parent.fork();
    const heard: string[] = [];
    mmuIntervalNotifierInsert(parent.mm, (addr / P) as Vpn, (addr / P + 1) as Vpn, {
      *invalidate(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): Kfn<boolean> {
        mmuIntervalSetSeq(sub, curSeq);
        heard.push(EVENT_NAMES[range.event]!);
        return true;
      },
    });
    parent.madvise(addr, P, MADV_FREE);
    expect(heard).toEqual(["CLEAR"]);
    expect(pages.has(pfn, PG_dirty)).toBe(true);
    expect(pages.has(pfn, PG_swapbacked)).toBe(true);
    expect(child.readU32(addr)).toBe(3);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("shared anonymous memory and file mappings are not anonymous VMAs: EINVAL, nothing changed", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const shared = proc.mmap(P, { flags: MAP_SHARED | MAP_ANONYMOUS });
    proc.writeU32(shared, 1);
    const file = system.createFile("f", P);
    const priv = proc.mmap(P, { file, flags: MAP_PRIVATE });
    proc.writeU32(priv, 2);
    expectFailsUnchanged(system, "EINVAL", () => proc.madvise(shared, P, MADV_FREE), "shared anonymous");
    expectFailsUnchanged(system, "EINVAL", () => proc.madvise(priv, P, MADV_FREE), "private file");
  });
});

describe("MADV_HUGEPAGE and MADV_NOHUGEPAGE (hugepage_madvise)", () => {
  it("set one flag and clear the other on the range, splitting the VMA; no other effect", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(4 * P, at(FIXED));
    proc.write(addr, pageOf(1, 4));
    proc.madvise(addr + P, 2 * P, MADV_HUGEPAGE);
    const flags = () =>
      vmaLayout(proc).map((v) => [v.end - v.start, v.flags & (VM_HUGEPAGE | VM_NOHUGEPAGE)]);
    expect(flags()).toEqual([
      [1, 0],
      [2, VM_HUGEPAGE],
      [1, 0],
    ]);
    proc.madvise(addr + P, P, MADV_NOHUGEPAGE);
    expect(flags()).toEqual([
      [1, 0],
      [1, VM_NOHUGEPAGE],
      [1, VM_HUGEPAGE],
      [1, 0],
    ]);
    // Advising what is already so changes nothing, not even the VMAs.
    const before = vmaLayout(proc);
    proc.madvise(addr + P, P, MADV_NOHUGEPAGE);
    expect(vmaLayout(proc)).toEqual(before);
    expect(proc.read(addr, 4 * P)).toEqual(pageOf(1, 4));
    // fork copies the flags with the VMAs.
    const child = proc.fork();
    expect(vmaLayout(child)).toEqual(vmaLayout(proc));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a hole: the VMAs in the range are advised, then ENOMEM", () => {
    const system = smallSystem();
    const proc = system.spawn();
    proc.mmap(P, at(FIXED));
    proc.mmap(P, at(FIXED + 2 * P));
    expect(kernelError(() => proc.madvise(FIXED, 3 * P, MADV_HUGEPAGE)).code).toBe("ENOMEM");
    expect(vmaLayout(proc).map((v) => v.flags & VM_HUGEPAGE)).toEqual([VM_HUGEPAGE, VM_HUGEPAGE]);
  });
});
