/**
 * mremap(2) as mm/mremap.c answers it today: check_mremap_params, check_prep_vma, mremap_at,
 * mremap_to, remap_move, move_vma and MREMAP_DONTUNMAP (dontunmap_complete).
 */
import { describe, expect, it } from "vitest";
import { PAGE_SIZE, TASK_SIZE } from "../../src/base/units.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  MREMAP_DONTUNMAP,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PROT_READ,
} from "../../src/mm/mmap.js";
import { SignalError } from "../../src/process.js";
import { pageOf, pfnAt, pteAt, smallSystem, vmaLayout } from "./helpers.js";
import { expectFailsUnchanged, stateOf } from "./syscall-state.js";

const P = PAGE_SIZE;
const FIXED = 0x10_0000_0000;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const MOVE = MREMAP_MAYMOVE;

function at(addr: number) {
  return { addr, flags: ANON | MAP_FIXED };
}

describe("mremap argument checks (check_mremap_params)", () => {
  it("a negative new address is above TASK_SIZE - new_len: EINVAL, and nothing moves", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, at(FIXED));
    proc.write(addr, pageOf(5, 2));
    for (const newAddr of [-P, -2 * P, 2 ** 63, TASK_SIZE - P]) {
      expectFailsUnchanged(
        system,
        "EINVAL",
        () => proc.mremap(addr, 2 * P, 2 * P, MOVE | MREMAP_FIXED, newAddr),
        `new address ${newAddr}`,
      );
    }
    // MREMAP_DONTUNMAP alone takes the address as a hint, but check_mremap_params checks it all the same.
    expectFailsUnchanged(
      system,
      "EINVAL",
      () => proc.mremap(addr, 2 * P, 2 * P, MOVE | MREMAP_DONTUNMAP, -P),
      "hint",
    );
    expect(proc.read(addr, 2 * P)).toEqual(pageOf(5, 2));
  });

  it("flags are an unsigned long: a bit above 32 is unknown (EINVAL), not dropped", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P, at(FIXED));
    proc.mmap(P, at(FIXED + P));
    for (const flags of [2 ** 32 + MOVE, 2 ** 40, -1, 8, Number.NaN, 1.5]) {
      expectFailsUnchanged(system, "EINVAL", () => proc.mremap(addr, P, 4 * P, flags), `flags ${flags}`);
    }
  });

  it("in the kernel's order: unaligned address, new length 0 or above TASK_SIZE, then the new address", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, at(FIXED));
    expectFailsUnchanged(system, "EINVAL", () => proc.mremap(addr + 1, P, P), "unaligned");
    expectFailsUnchanged(system, "EINVAL", () => proc.mremap(addr, P, 0), "new_len 0");
    // -1 rounds up to 0: new_len 0.
    expectFailsUnchanged(system, "EINVAL", () => proc.mremap(addr, P, -1), "new_len -1");
    expectFailsUnchanged(system, "EINVAL", () => proc.mremap(addr, P, TASK_SIZE + P), "new_len > TASK_SIZE");
    expectFailsUnchanged(
      system,
      "EINVAL",
      () => proc.mremap(addr, P, P, MOVE | MREMAP_FIXED, FIXED + 16 * P + 1),
      "unaligned new address",
    );
    // MREMAP_FIXED or MREMAP_DONTUNMAP without MREMAP_MAYMOVE.
    expectFailsUnchanged(
      system,
      "EINVAL",
      () => proc.mremap(addr, P, P, MREMAP_FIXED, FIXED + 16 * P),
      "FIXED",
    );
    expectFailsUnchanged(system, "EINVAL", () => proc.mremap(addr, P, P, MREMAP_DONTUNMAP), "DONTUNMAP");
    // MREMAP_DONTUNMAP cannot resize.
    expectFailsUnchanged(
      system,
      "EINVAL",
      () => proc.mremap(addr, P, 2 * P, MOVE | MREMAP_DONTUNMAP),
      "resize",
    );
    // Overlap, with the old range's end wrapping past 2^64 (old_len = 2^64 - 4096).
    expectFailsUnchanged(
      system,
      "EINVAL",
      () => proc.mremap(addr, -P, P, MOVE | MREMAP_FIXED, addr - 2 * P),
      "wrapping overlap",
    );
  });

  it("below mmap_min_addr MREMAP_FIXED is EPERM (get_unmapped_area with MAP_FIXED), after the checks", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P, at(FIXED));
    proc.write(addr, pageOf(3));
    expectFailsUnchanged(
      system,
      "EPERM",
      () => proc.mremap(addr, P, P, MOVE | MREMAP_FIXED, 0x1000),
      "0x1000",
    );
    expectFailsUnchanged(system, "EPERM", () => proc.mremap(addr, P, 2 * P, MOVE | MREMAP_FIXED, 0), "0");
  });
});

describe("mremap on one VMA (check_prep_vma, mremap_at)", () => {
  it("EFAULT without a VMA at the address, or when a growing range runs past the VMA", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, at(FIXED));
    expectFailsUnchanged(system, "EFAULT", () => proc.mremap(addr + 8 * P, P, 2 * P, MOVE), "no VMA");
    expectFailsUnchanged(system, "EFAULT", () => proc.mremap(-P, P, 2 * P, MOVE), "negative address");
    expectFailsUnchanged(system, "EFAULT", () => proc.mremap(addr, 3 * P, 4 * P, MOVE), "past the VMA");
  });

  it("a shrink unmaps the tail even across VMAs (check_prep_vma only checks a remap that maps new space)", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const a = proc.mmap(2 * P, at(FIXED));
    proc.mmap(P, at(FIXED + 2 * P));
    proc.write(a, pageOf(1, 3));
    expect(proc.mremap(a, 3 * P, P)).toBe(a);
    expect(vmaLayout(proc).map((v) => [v.start * P, v.end * P])).toEqual([[a, a + P]]);
    expect(proc.read(a, P)).toEqual(pageOf(1));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a shrink whose tail runs past TASK_SIZE fails in do_vmi_munmap (EINVAL) and changes nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const a = proc.mmap(2 * P, at(FIXED));
    proc.write(a, pageOf(1, 2));
    expectFailsUnchanged(system, "EINVAL", () => proc.mremap(a, -P, P), "old_len 2^64 - 4096");
  });

  it("the same size is a no-op that asks nothing of the old range", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const a = proc.mmap(P, at(FIXED));
    const before = stateOf(system);
    expect(proc.mremap(a, 64 * P, 64 * P)).toBe(a);
    expect(stateOf(system)).toEqual(before);
  });

  it("old_len 0 duplicates a shared mapping (MREMAP_MAYMOVE) and is EINVAL for a private one", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const file = system.createFile("f", 2 * P);
    const shared = proc.mmap(2 * P, { file, flags: MAP_SHARED });
    proc.write(shared, pageOf(7, 2));
    const dup = proc.mremap(shared, 0, 2 * P, MOVE);
    expect(dup).not.toBe(shared);
    expect(proc.read(dup, 2 * P)).toEqual(pageOf(7, 2));
    proc.write(dup + P, pageOf(8));
    expect(proc.read(shared + P, P)).toEqual(pageOf(8));
    // Without MREMAP_MAYMOVE it cannot grow in place: ENOMEM.
    expectFailsUnchanged(system, "ENOMEM", () => proc.mremap(shared, 0, P), "no MAYMOVE");
    const priv = proc.mmap(P);
    expectFailsUnchanged(system, "EINVAL", () => proc.mremap(priv, 0, P, MOVE), "private");
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("MREMAP_FIXED moves of the same size (remap_move)", () => {
  it("move every VMA of the range, keeping the gaps, and leave what lies in the target's gaps", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const src = FIXED;
    const dst = FIXED + 64 * P;
    proc.mmap(2 * P, at(src));
    proc.mmap(P, { ...at(src + 3 * P), prot: PROT_READ });
    proc.write(src, pageOf(1, 2));
    // Something already mapped where the source's gap lands survives; what a VMA lands on is replaced.
    proc.mmap(P, at(dst + 2 * P));
    proc.write(dst + 2 * P, pageOf(9));
    proc.mmap(P, at(dst));
    const moved = [pfnAt(proc, src), pfnAt(proc, src + P)];
    expect(proc.mremap(src, 4 * P, 4 * P, MOVE | MREMAP_FIXED, dst)).toBe(dst);
    expect(vmaLayout(proc).map((v) => [(v.start * P - dst) / P, (v.end * P - dst) / P])).toEqual([
      [0, 2],
      [2, 3],
      [3, 4],
    ]);
    expect([pfnAt(proc, dst), pfnAt(proc, dst + P)]).toEqual(moved);
    expect(proc.read(dst + 2 * P, P)).toEqual(pageOf(9));
    expect(proc.readU32(dst + 3 * P)).toBe(0);
    expect(() => proc.write(dst + 3 * P, pageOf(1).subarray(0, 1))).toThrow(SignalError);
    expect(() => proc.read(src, 1)).toThrow(SignalError);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a range that starts in a gap, or holds no VMA, is EFAULT and moves nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    proc.mmap(P, at(FIXED + P));
    proc.write(FIXED + P, pageOf(2));
    expectFailsUnchanged(
      system,
      "EFAULT",
      () => proc.mremap(FIXED, 2 * P, 2 * P, MOVE | MREMAP_FIXED, FIXED + 64 * P),
      "starts in a gap",
    );
    expectFailsUnchanged(
      system,
      "EFAULT",
      () => proc.mremap(FIXED + 8 * P, P, P, MOVE | MREMAP_FIXED, FIXED + 64 * P),
      "no VMA",
    );
  });
});

describe("MREMAP_DONTUNMAP (move_vma, dontunmap_complete)", () => {
  it("private anonymous: the pages move, the old VMA stays and reads zeros, RSS and invariants hold", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, at(FIXED));
    proc.write(addr, pageOf(4, 2));
    const pfns = [pfnAt(proc, addr), pfnAt(proc, addr + P)];
    const rss = proc.mm.rssAnon;
    const used = system.usedPages;
    const moved = proc.mremap(addr, 2 * P, 2 * P, MOVE | MREMAP_DONTUNMAP);
    expect(moved).not.toBe(addr);
    expect([pfnAt(proc, moved), pfnAt(proc, moved + P)]).toEqual(pfns);
    expect(proc.read(moved, 2 * P)).toEqual(pageOf(4, 2));
    expect(proc.mm.rssAnon).toBe(rss);
    expect(system.usedPages).toBe(used);
    // The old VMA is still there, whole, and empty.
    const old = proc.mm.findVma(addr / P)!;
    expect([old.start * P, old.end * P]).toEqual([addr, addr + 2 * P]);
    expect(pteAt(proc, addr)).toBe(0);
    // The whole VMA moved, so it left its anon_vma behind: its next fault makes a fresh one.
    expect(old.anonVma).toBeNull();
    expect(proc.read(addr, 2 * P)).toEqual(pageOf(0, 2));
    proc.write(addr, pageOf(6));
    expect(old.anonVma).not.toBeNull();
    expect(old.anonVma).not.toBe(proc.mm.findVma(moved / P)!.anonVma);
    expect(proc.read(moved, P)).toEqual(pageOf(4));
    expect(system.checkInvariants()).toEqual([]);
    // A fork copies both, each with its own contents.
    const child = proc.fork();
    expect(child.read(addr, P)).toEqual(pageOf(6));
    expect(child.read(moved, P)).toEqual(pageOf(4));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("part of a VMA: the VMA is not split and keeps its anon_vma; the hint is taken when free", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(3 * P, at(FIXED));
    proc.write(addr, pageOf(1, 3));
    const anonVma = proc.mm.findVma(addr / P)!.anonVma;
    const hint = FIXED + 32 * P;
    expect(proc.mremap(addr + P, P, P, MOVE | MREMAP_DONTUNMAP, hint)).toBe(hint);
    const old = proc.mm.findVma(addr / P)!;
    expect([old.start * P, old.end * P]).toEqual([addr, addr + 3 * P]);
    expect(old.anonVma).toBe(anonVma);
    expect(proc.read(addr, 3 * P)).toEqual(Uint8Array.from([...pageOf(1), ...pageOf(0), ...pageOf(1)]));
    expect(proc.read(hint, P)).toEqual(pageOf(1));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("with MREMAP_FIXED it lands at the address given; a shared file mapping sees the file again (5.13)", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const file = system.createFile("f", P);
    const addr = proc.mmap(P, { file, flags: MAP_SHARED });
    proc.write(addr, pageOf(0x3c));
    const target = FIXED + 8 * P;
    expect(proc.mremap(addr, P, P, MOVE | MREMAP_DONTUNMAP | MREMAP_FIXED, target)).toBe(target);
    expect(pteAt(proc, addr)).toBe(0);
    expect(proc.read(target, P)).toEqual(pageOf(0x3c));
    // The old VMA faults the page cache page in again: both map one page.
    expect(proc.read(addr, P)).toEqual(pageOf(0x3c));
    expect(pfnAt(proc, addr)).toBe(pfnAt(proc, target));
    expect(system.checkInvariants()).toEqual([]);
  });
});
