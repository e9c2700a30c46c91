import { describe, expect, it } from "vitest";
import { EFAULT } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import { FOLL_GET, getUserPages, putUserPage } from "../../src/mm/gup.js";
import { GUP_PIN_COUNTING_BIAS } from "../../src/mm/memory.js";
import { PROT_READ } from "../../src/mm/mmap.js";
import { PG_anon_exclusive } from "../../src/mm/page.js";
import { ZERO_PFN } from "../../src/mm/page_alloc.js";
import { pteFrame, pteWrite } from "../../src/mm/pgtable.js";
import type { Kfn } from "../../src/sched/thread.js";
import { System } from "../../src/system.js";
import { drain, inThread, kernelError, pageOf, pfnAt, pteAt, smallSystem } from "./helpers.js";
import { expectFailsUnchanged } from "./syscall-state.js";

const P = PAGE_SIZE;

describe("pin_user_pages", () => {
  it("each pin adds GUP_PIN_COUNTING_BIAS (1024) to the refcount; unpin takes it away", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P);
    proc.write(addr, pageOf(1, 2));
    drain(system);
    const pages = system.kernel.pages;
    const pfns = proc.pinPages(addr, 2, true);
    expect(pfns).toEqual([pfnAt(proc, addr), pfnAt(proc, addr + P)]);
    expect(GUP_PIN_COUNTING_BIAS).toBe(1024);
    for (const pfn of pfns) expect(pages.refcount[pfn]).toBe(1 + 1024);
    expect(system.checkInvariants()).toEqual([]);
    const again = proc.pinPages(addr, 1, false);
    expect(pages.refcount[pfns[0]!]).toBe(1 + 2048);
    expect(system.gup.pins.get(pfns[0]!)).toBe(2);
    expect(system.checkInvariants()).toEqual([]);
    proc.unpinPages(again);
    proc.unpinPages(pfns);
    for (const pfn of pfns) expect([pages.refcount[pfn], pages.mapcount[pfn]]).toEqual([1, 1]);
    expect(system.gup.pins.size).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("faults pages in: a write pin allocates, a read pin of untouched memory pins the zero page", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P);
    const [written] = proc.pinPages(addr, 1, true);
    expect(written).not.toBe(ZERO_PFN);
    expect(pteWrite(pteAt(proc, addr))).toBe(true);
    const [read] = proc.pinPages(addr + P, 1, false);
    expect(read).toBe(ZERO_PFN);
    expect(system.checkInvariants()).toEqual([]);
    proc.unpinPages([written!, read!]);
    expect(system.kernel.pages.refcount[ZERO_PFN]).toBe(1);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a write pin breaks COW: the pinned page is the pinner's own and CPU writes show in it", () => {
    const system = smallSystem();
    const parent = system.spawn();
    const addr = parent.mmap(P);
    parent.writeU32(addr, 10);
    const child = parent.fork();
    const shared = pfnAt(parent, addr);
    const [pinned] = parent.pinPages(addr, 1, true);
    expect(pinned).not.toBe(shared);
    expect(pfnAt(child, addr)).toBe(shared);
    parent.writeU32(addr, 11);
    expect(system.kernel.store.word(pinned!)).toBe(11);
    expect(child.readU32(addr)).toBe(10);
    parent.unpinPages([pinned!]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("fork copies a pinned exclusive page for the child at once, so the pin keeps seeing the parent", () => {
    const system = smallSystem();
    const parent = system.spawn();
    const addr = parent.mmap(P);
    parent.writeU32(addr, 1);
    const [pinned] = parent.pinPages(addr, 1, true);
    const child = parent.fork();
    expect(pfnAt(parent, addr)).toBe(pinned);
    expect(pteWrite(pteAt(parent, addr))).toBe(true);
    expect(pfnAt(child, addr)).not.toBe(pinned);
    expect(child.readU32(addr)).toBe(1);
    parent.writeU32(addr, 2);
    expect(system.kernel.store.word(pinned!)).toBe(2);
    expect(child.readU32(addr)).toBe(1);
    expect(system.checkInvariants()).toEqual([]);
    parent.unpinPages([pinned!]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a pinned page outlives its mapping until unpinned", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.write(addr, pageOf(0x99));
    drain(system);
    const [pfn] = proc.pinPages(addr, 1, false);
    proc.munmap(addr, P);
    const pages = system.kernel.pages;
    expect([pages.refcount[pfn!], pages.mapcount[pfn!]]).toEqual([1024, 0]);
    expect(system.kernel.ram.isFree(pfn!)).toBe(false);
    expect(system.kernel.store.word(pfn!)).toBe(0x99999999);
    expect(system.checkInvariants()).toEqual([]);
    proc.unpinPages([pfn!]);
    expect(system.kernel.ram.isFree(pfn!)).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("fails with EFAULT outside a VMA or for a write pin of a read-only VMA, pinning nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P, { prot: PROT_READ });
    expect(kernelError(() => proc.pinPages(addr, 1, true)).errno).toBe(EFAULT);
    expect(kernelError(() => proc.pinPages(addr + 64 * P, 1, false)).errno).toBe(EFAULT);
    expect(system.gup.pins.size).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("pins the pages before a hole and reports how many", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(3 * P);
    proc.munmap(addr + 2 * P, P);
    const pfns = proc.pinPages(addr, 3, true);
    expect(pfns).toHaveLength(2);
    expect(system.checkInvariants()).toEqual([]);
    proc.unpinPages(pfns);
  });

  it("unpinning a page that is not pinned is EINVAL and unpins nothing (the kernel would corrupt it)", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P);
    proc.writeU32(addr, 1);
    proc.writeU32(addr + P, 2);
    const [pinned] = proc.pinPages(addr, 1, true);
    const other = pfnAt(proc, addr + P);
    expectFailsUnchanged(system, "EINVAL", () => proc.unpinPages([other]), "never pinned");
    // All or nothing: the pinned entry is not unpinned when another entry is bad.
    expectFailsUnchanged(system, "EINVAL", () => proc.unpinPages([pinned!, other]), "one good, one bad");
    // One pin, two unpins.
    expectFailsUnchanged(system, "EINVAL", () => proc.unpinPages([pinned!, pinned!]), "twice");
    for (const bad of [Number.NaN, 1.5, -1, "7", 7n, null]) {
      expectFailsUnchanged(system, "EINVAL", () => proc.unpinPages([bad as number]), `entry ${String(bad)}`);
    }
    expectFailsUnchanged(system, "EFAULT", () => proc.unpinPages(null as never), "not an array");
    expectFailsUnchanged(system, "EFAULT", () => proc.unpinPages("12" as never), "a string");
    proc.unpinPages([pinned!]);
    expect(system.gup.pins.size).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("pin_user_pages arguments, as __get_user_pages takes them", () => {
  it("an unaligned address pins the page that holds it; a count of 0 pins nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P);
    proc.write(addr, pageOf(1, 2));
    expect(proc.pinPages(addr + 1, 0, false)).toEqual([]);
    const pfns = proc.pinPages(addr + P + 17, 1, false);
    expect(pfns).toEqual([pfnAt(proc, addr + P)]);
    proc.unpinPages(pfns);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a count beyond the VMA pins up to its end and returns the short count, as the kernel's does", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(3 * P);
    // 2^53 + 2 is an exact unsigned long; -1 is 2^64 - 1: both run into the end of the VMA.
    for (const count of [2 ** 53 + 2, -1, 2 ** 63]) {
      const pfns = proc.pinPages(addr, count, true);
      expect(pfns, String(count)).toHaveLength(3);
      proc.unpinPages(pfns);
    }
    expect(system.gup.pins.size).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("values no register holds, and a write flag that is not a boolean, are EINVAL and pin nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P);
    proc.write(addr, pageOf(1, 2));
    for (const bad of [Number.NaN, 1.5, Number.POSITIVE_INFINITY, 2 ** 64, 4096n, "1", null, undefined]) {
      const v = bad as number;
      expectFailsUnchanged(system, "EINVAL", () => proc.pinPages(addr, v, true), `count ${String(bad)}`);
      expectFailsUnchanged(system, "EINVAL", () => proc.pinPages(v, 1, true), `addr ${String(bad)}`);
    }
    expectFailsUnchanged(system, "EINVAL", () => proc.pinPages(addr, 1, 1 as never), "write 1");
    // An address above user space (a negative one) has no VMA: EFAULT.
    expectFailsUnchanged(system, "EFAULT", () => proc.pinPages(-P, 1, false), "negative address");
    expectFailsUnchanged(system, "EFAULT", () => proc.pinPages(2 ** 60, 1, false), "2^60");
  });
});

describe("get_user_pages (FOLL_GET)", () => {
  it("takes one plain reference per page, recorded in the ledger", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.writeU32(addr, 1);
    drain(system);
    const pfns: number[] = [];
    const mm = proc.mm;
    const ret = inThread(
      system,
      (function* (): Kfn<number> {
        yield* mm.mmapLock.downRead();
        const n = yield* getUserPages(system.faultContext, system.gup, mm, addr / P, 1, FOLL_GET, pfns);
        mm.mmapLock.upRead();
        return n;
      })(),
    );
    expect(ret).toBe(1);
    expect(system.kernel.pages.refcount[pfns[0]!]).toBe(2);
    expect(system.checkInvariants()).toEqual([]);
    putUserPage(system.kernel, system.gup, pfns[0]!);
    expect(system.kernel.pages.refcount[pfns[0]!]).toBe(1);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("pin_user_pages of COW-shared anonymous memory (gup_must_unshare)", () => {
  it("a read pin unshares the page first, so the parent's pin survives the child's and its own writes", () => {
    const system = new System({ ram: "16MiB" });
    const parent = system.spawn();
    const addr = parent.mmap(4096);
    parent.writeU32(addr, 7);
    const child = parent.fork();
    const shared = pteFrame(system.kernel.pt.read(parent.mm.root, addr / 4096));
    expect(pteFrame(system.kernel.pt.read(child.mm.root, addr / 4096))).toBe(shared);
    const [pinned] = parent.pinPages(addr, 1, false);
    // The parent now maps (and pins) a page of its own, still read-only; the child keeps the old one.
    expect(pinned).not.toBe(shared);
    expect(pteFrame(system.kernel.pt.read(parent.mm.root, addr / 4096))).toBe(pinned);
    expect(pteWrite(system.kernel.pt.read(parent.mm.root, addr / 4096))).toBe(false);
    expect(system.kernel.pages.has(pinned!, PG_anon_exclusive)).toBe(true);
    // Writes on either side leave the pinned page as the parent's: the pin sees the parent's data.
    parent.writeU32(addr, 8);
    child.writeU32(addr, 9);
    expect(pteFrame(system.kernel.pt.read(parent.mm.root, addr / 4096))).toBe(pinned);
    expect(system.kernel.store.word(pinned!)).toBe(8);
    expect(child.readU32(addr)).toBe(9);
    parent.unpinPages([pinned!]);
    expect(system.checkInvariants()).toEqual([]);
  });
});
