import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/base/assert.js";
import {
  describeFlags,
  PageArrays,
  PG_anon,
  PG_buddy,
  PG_dirty,
  PG_locked,
  PG_reserved,
} from "../../src/mm/page.js";
import { PageAllocator, ZERO_PFN } from "../../src/mm/page_alloc.js";
import { drain, smallSystem } from "./helpers.js";

function allocator(ramPages: number): { pages: PageArrays; ram: PageAllocator; freed: number[] } {
  const pages = new PageArrays(ramPages);
  const ram = new PageAllocator(pages, ramPages);
  const freed: number[] = [];
  pages.freer = {
    freePage: (pfn) => {
      freed.push(pfn);
      ram.freePage(pfn);
    },
  };
  return { pages, ram, freed };
}

describe("page allocator", () => {
  it("reserves pfn 0 as the zero page and hands out the rest with one held reference", () => {
    const { pages, ram } = allocator(4);
    expect(pages.has(ZERO_PFN, PG_reserved)).toBe(true);
    expect(ram.freePages).toBe(3);
    const pfn = ram.allocPage();
    expect(pfn).toBe(1);
    expect([pages.refcount[pfn], pages.heldRefs[pfn]]).toEqual([1, 1]);
    expect(ram.usedPages).toBe(1);
    expect(ram.isFree(pfn)).toBe(false);
    expect(ram.isFree(3)).toBe(true);
  });

  it("returns -1 when RAM is exhausted, and when told to fail", () => {
    const { ram } = allocator(3);
    expect([ram.allocPage(), ram.allocPage(), ram.allocPage()]).toEqual([1, 2, -1]);
    const other = allocator(8).ram;
    other.failNext = 2;
    expect([other.allocPage(), other.allocPage(), other.allocPage()]).toEqual([-1, -1, 1]);
  });

  it("the last put frees the page, clearing what it carried, and the frame is reused first", () => {
    const { pages, ram, freed } = allocator(8);
    const pfn = ram.allocPage();
    pages.set(pfn, PG_anon | PG_dirty);
    pages.mapping[pfn] = 3;
    pages.get(pfn);
    pages.put(pfn);
    expect(freed).toEqual([]);
    pages.put(pfn);
    expect(freed).toEqual([pfn]);
    expect(ram.isFree(pfn)).toBe(true);
    expect(pages.has(pfn, PG_buddy)).toBe(true);
    expect(pages.has(pfn, PG_anon | PG_dirty)).toBe(false);
    expect(pages.mapping[pfn]).toBe(0);
    expect(ram.allocPage()).toBe(pfn);
    expect(pages.badPages).toEqual([]);
  });

  it("hands out the lowest free frame first, as the buddy allocator does after frees merge", () => {
    const { pages, ram } = allocator(16);
    const taken = Array.from({ length: 8 }, () => ram.allocPage());
    expect(taken).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (const pfn of [7, 2, 5]) pages.put(pfn);
    expect([ram.allocPage(), ram.allocPage(), ram.allocPage(), ram.allocPage()]).toEqual([2, 5, 7, 9]);
    expect(ram.usedPages).toBe(9);
    expect(ram.freePages).toBe(6);
  });

  it("refuses a double free, the zero page and a frame never handed out", () => {
    const { ram } = allocator(4);
    const pfn = ram.allocPage();
    ram.freePage(pfn);
    expect(() => ram.freePage(pfn)).toThrow(/double free/);
    expect(() => ram.freePage(ZERO_PFN)).toThrow(AssertionError);
    // A frame never handed out cannot be freed (it would be handed out twice).
    expect(() => ram.freePage(3)).toThrow(/not allocated RAM/);
  });

  it("a fault that finds RAM exhausted fails without leaking (the OOM killer takes the only process)", () => {
    const system = smallSystem({ ram: "16KiB" });
    const proc = system.spawn();
    const addr = proc.mmap(8 * 4096);
    proc.touch(addr, 3, true);
    expect(system.kernel.ram.freePages).toBe(0);
    expect(() => proc.touch(addr + 3 * 4096, 1, true)).toThrow(/SIGKILL/);
    expect(proc.exited).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
    drain(system);
    const next = system.spawn();
    next.touch(next.mmap(3 * 4096), 3, true);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("struct page references", () => {
  it("a put nobody recorded holding, or on a free page, is reported as a bad page", () => {
    const { pages, ram } = allocator(4);
    const pfn = ram.allocPage();
    pages.getStructural(pfn);
    pages.put(pfn);
    pages.put(pfn);
    expect(pages.badPages.map((b) => b.reason)).toEqual([
      expect.stringMatching(/^put_page of a reference nobody recorded holding \(pfn 1 /),
    ]);
    pages.putStructural(pfn);
    expect(pages.badPages[1]!.reason).toMatch(/put_page on a page with no references/);
  });

  it("freeing a mapped or locked page is reported; the zero page's last reference is never dropped", () => {
    const { pages, ram } = allocator(4);
    const pfn = ram.allocPage();
    pages.mapcount[pfn] = 1;
    pages.set(pfn, PG_locked);
    pages.put(pfn);
    expect(pages.badPages.map((b) => b.reason.split(" (")[0])).toEqual([
      "freed while mapped 1 times",
      "freed while locked",
    ]);
    pages.putStructural(ZERO_PFN);
    expect(pages.badPages[2]!.reason).toMatch(/last reference to a reserved page dropped/);
    expect(() => pages.get(3)).toThrow(/get_page on a page with no references/);
  });

  it("grows its arrays and keeps what they held", () => {
    const pages = new PageArrays(4);
    pages.refcount[3] = 7;
    pages.set(3, PG_dirty);
    pages.grow(1000);
    expect(pages.capacity).toBe(1000);
    expect(pages.refcount[3]).toBe(7);
    expect(pages.has(3, PG_dirty)).toBe(true);
    expect(pages.lruList[999]).toBe(-1);
    expect(pages.lruNext[999]).toBe(-1);
    expect(describeFlags(PG_dirty | PG_anon)).toBe("dirty|anon");
    expect(describeFlags(0)).toBe("none");
  });
});
