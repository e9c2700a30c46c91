import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "../../src/base/units.js";
import { MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ } from "../../src/mm/mmap.js";
import { PG_anon, PG_anon_exclusive, PG_dirty, PG_lru, PG_swapbacked } from "../../src/mm/page.js";
import { ZERO_PFN } from "../../src/mm/page_alloc.js";
import { pteDirty, pteSpecial, pteWrite, pteYoung } from "../../src/mm/pgtable.js";
import { SignalError } from "../../src/process.js";
import { drain, pageOf, pfnAt, pteAt, smallSystem } from "./helpers.js";

const P = PAGE_SIZE;

describe("anonymous faults", () => {
  it("a read maps the shared zero page read-only and allocates nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(4 * P);
    expect(proc.read(addr, 4 * P)).toEqual(pageOf(0, 4));
    for (let i = 0; i < 4; i++) {
      const pte = pteAt(proc, addr + i * P);
      expect(pfnAt(proc, addr + i * P)).toBe(ZERO_PFN);
      expect(pteWrite(pte)).toBe(false);
      expect(pteSpecial(pte)).toBe(true);
    }
    expect(system.usedPages).toBe(0);
    expect(system.kernel.stats.zeroPageMaps).toBe(4);
    // The zero page's count does not move with its mappings.
    expect(system.kernel.pages.refcount[ZERO_PFN]).toBe(1);
    expect(system.kernel.pages.mapcount[ZERO_PFN]).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a write after a read copies the zero page: a new zeroed page with the write in it", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.read(addr, 1);
    const cows = system.kernel.stats.cowFaults;
    proc.writeU32(addr + 100, 0xdeadbeef);
    const pfn = pfnAt(proc, addr);
    expect(pfn).not.toBe(ZERO_PFN);
    expect(pteWrite(pteAt(proc, addr))).toBe(true);
    expect(system.kernel.stats.cowFaults).toBe(cows + 1);
    expect(proc.readU32(addr + 100)).toBe(0xdeadbeef);
    const expected = pageOf(0);
    expected.set([0xef, 0xbe, 0xad, 0xde], 100);
    expect(proc.read(addr, P)).toEqual(expected);
    // The zero page itself still reads as zeros.
    const other = proc.mmap(P);
    expect(proc.read(other, P)).toEqual(pageOf(0));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a first write maps a new exclusive anonymous page, counted once by its PTE and once by the LRU batch", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.writeU64(addr, 0x0123456789abcdefn);
    const pfn = pfnAt(proc, addr);
    const pages = system.kernel.pages;
    const pte = pteAt(proc, addr);
    expect(pteWrite(pte) && pteDirty(pte) && pteYoung(pte)).toBe(true);
    expect(pages.has(pfn, PG_anon) && pages.has(pfn, PG_anon_exclusive)).toBe(true);
    expect([pages.refcount[pfn], pages.mapcount[pfn]]).toEqual([2, 1]);
    expect(system.checkInvariants()).toEqual([]);
    drain(system);
    expect([pages.refcount[pfn], pages.mapcount[pfn]]).toEqual([1, 1]);
    expect(pages.has(pfn, PG_lru)).toBe(true);
    expect(proc.mm.rssAnon).toBe(1);
    expect(proc.readU64(addr)).toBe(0x0123456789abcdefn);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a write to a read-only VMA is SIGSEGV and maps nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P, { prot: PROT_READ });
    expect(() => proc.writeU32(addr, 1)).toThrow(SignalError);
    expect(pteAt(proc, addr)).toBe(0);
    expect(proc.readU32(addr)).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("an access that spans pages writes and reads across the boundary", () => {
    const proc = smallSystem().spawn();
    const addr = proc.mmap(2 * P);
    const data = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
    proc.write(addr + P - 100, data);
    expect(proc.read(addr + P - 100, 300)).toEqual(data);
    expect(pfnAt(proc, addr)).not.toBe(pfnAt(proc, addr + P));
  });
});

describe("copy-on-write after fork", () => {
  it("both processes share the page read-only until one writes; the writer gets a copy", () => {
    const system = smallSystem();
    const parent = system.spawn();
    const addr = parent.mmap(2 * P);
    parent.write(addr, pageOf(0xaa, 2));
    drain(system);
    const shared = pfnAt(parent, addr);
    const child = parent.fork();
    const pages = system.kernel.pages;
    expect(pfnAt(child, addr)).toBe(shared);
    expect(pteWrite(pteAt(parent, addr))).toBe(false);
    expect(pteWrite(pteAt(child, addr))).toBe(false);
    expect([pages.refcount[shared], pages.mapcount[shared]]).toEqual([2, 2]);
    expect(pages.has(shared, PG_anon_exclusive)).toBe(false);
    expect(child.read(addr, 2 * P)).toEqual(pageOf(0xaa, 2));
    expect(system.checkInvariants()).toEqual([]);

    child.write(addr, pageOf(0xcc).subarray(0, 16));
    const copy = pfnAt(child, addr);
    expect(copy).not.toBe(shared);
    expect(pfnAt(parent, addr)).toBe(shared);
    expect(parent.read(addr, P)).toEqual(pageOf(0xaa));
    const childView = pageOf(0xaa);
    childView.fill(0xcc, 0, 16);
    expect(child.read(addr, P)).toEqual(childView);
    drain(system);
    expect([pages.refcount[shared], pages.mapcount[shared]]).toEqual([1, 1]);
    expect([pages.refcount[copy], pages.mapcount[copy]]).toEqual([1, 1]);
    expect(system.checkInvariants()).toEqual([]);

    // The parent is now the page's only user: its write reuses the page in place.
    const cows = system.kernel.stats.cowFaults;
    parent.writeU32(addr, 7);
    expect(pfnAt(parent, addr)).toBe(shared);
    expect(system.kernel.stats.cowFaults).toBe(cows);
    expect(child.readU32(addr)).toBe(0xcccccccc);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("after the child exits the parent's write reuses the page", () => {
    const system = smallSystem();
    const parent = system.spawn();
    const addr = parent.mmap(P);
    parent.writeU32(addr, 1);
    drain(system);
    const pfn = pfnAt(parent, addr);
    const child = parent.fork();
    expect(system.kernel.pages.mapcount[pfn]).toBe(2);
    child.exit();
    expect(child.exited).toBe(true);
    expect([system.kernel.pages.refcount[pfn], system.kernel.pages.mapcount[pfn]]).toEqual([1, 1]);
    parent.writeU32(addr, 2);
    expect(pfnAt(parent, addr)).toBe(pfn);
    expect(parent.readU32(addr)).toBe(2);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("fork copies a zero page mapping; each side's write then gets its own zeroed page", () => {
    const system = smallSystem();
    const parent = system.spawn();
    const addr = parent.mmap(2 * P);
    parent.writeU32(addr, 1); // an anonymous page, so fork copies this VMA's page tables
    parent.read(addr + P, 1); // the zero page
    const child = parent.fork();
    expect(pfnAt(child, addr + P)).toBe(ZERO_PFN);
    expect(pteWrite(pteAt(child, addr + P))).toBe(false);
    child.writeU32(addr + P, 5);
    expect(pfnAt(parent, addr + P)).toBe(ZERO_PFN);
    expect(parent.readU32(addr + P)).toBe(0);
    parent.writeU32(addr + P, 6);
    expect([child.readU32(addr + P), parent.readU32(addr + P)]).toEqual([5, 6]);
    expect(pfnAt(child, addr + P)).not.toBe(pfnAt(parent, addr + P));
    expect([child.readU32(addr), parent.readU32(addr)]).toEqual([1, 1]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a private mapping forked many times keeps every process's writes apart", () => {
    const system = smallSystem();
    const root = system.spawn();
    const addr = root.mmap(P);
    root.writeU32(addr, 100);
    const kids = [root.fork(), root.fork(), root.fork()];
    kids.forEach((kid, i) => {
      kid.writeU32(addr, i);
    });
    expect(kids.map((kid) => kid.readU32(addr))).toEqual([0, 1, 2]);
    expect(root.readU32(addr)).toBe(100);
    for (const kid of kids) kid.exit();
    root.exit();
    drain(system);
    expect(system.usedPages).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("file faults", () => {
  it("a private file mapping reads the file; a write makes an anonymous copy and the file is unchanged", () => {
    const system = smallSystem();
    const file = system.createFile("lib.so", 2 * P);
    file.write(0, pageOf(0x61, 2));
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, { file, flags: MAP_PRIVATE });
    expect(proc.read(addr, 2 * P)).toEqual(pageOf(0x61, 2));
    const cached = file.space.pages.get(0)!;
    expect(pfnAt(proc, addr)).toBe(cached);
    expect(pteWrite(pteAt(proc, addr))).toBe(false);

    proc.write(addr + 10, Uint8Array.from([1, 2, 3]));
    const copy = pfnAt(proc, addr);
    expect(copy).not.toBe(cached);
    expect(system.kernel.pages.isAnon(copy)).toBe(true);
    expect(file.read(0, 2 * P)).toEqual(pageOf(0x61, 2));
    expect(proc.read(addr + 9, 5)).toEqual(Uint8Array.from([0x61, 1, 2, 3, 0x61]));
    // The cached page is no longer mapped by this process.
    expect(system.kernel.pages.mapcount[cached]).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a write fault straight to a private file mapping copies the file page too", () => {
    const system = smallSystem();
    const file = system.createFile("data", P);
    file.write(0, pageOf(0x30));
    const proc = system.spawn();
    const addr = proc.mmap(P, { file, flags: MAP_PRIVATE });
    proc.writeU32(addr, 0);
    expect(proc.read(addr + 4, 4)).toEqual(Uint8Array.from([0x30, 0x30, 0x30, 0x30]));
    expect(file.read(0, 4)).toEqual(Uint8Array.from([0x30, 0x30, 0x30, 0x30]));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("shared file mapping writes reach the file, and pwrite reaches the mapping", () => {
    const system = smallSystem();
    const file = system.createFile("shared", 2 * P);
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, { file, flags: MAP_SHARED });
    proc.write(addr + P + 5, Uint8Array.from([9, 8, 7]));
    expect(file.read(P + 4, 5)).toEqual(Uint8Array.from([0, 9, 8, 7, 0]));
    const pfn = pfnAt(proc, addr + P);
    expect(pfn).toBe(file.space.pages.get(1));
    expect(system.kernel.pages.has(pfn, PG_dirty)).toBe(true);
    expect(system.kernel.pages.has(pfn, PG_swapbacked)).toBe(true);
    expect(system.kernel.pages.isAnon(pfn)).toBe(false);
    file.write(0, Uint8Array.from([0x55]));
    expect(proc.read(addr, 1)).toEqual(Uint8Array.from([0x55]));
    expect(proc.mm.rssFile).toBe(2);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("two processes mapping one file shared see each other's writes in one page", () => {
    const system = smallSystem();
    const file = system.createFile("ipc", P);
    const a = system.spawn();
    const b = system.spawn();
    const addrA = a.mmap(P, { file });
    const addrB = b.mmap(P, { file });
    a.writeU32(addrA, 0x1234);
    expect(b.readU32(addrB)).toBe(0x1234);
    b.writeU32(addrB + 4, 0x5678);
    expect(a.readU32(addrA + 4)).toBe(0x5678);
    const pfn = pfnAt(a, addrA);
    expect(pfnAt(b, addrB)).toBe(pfn);
    drain(system);
    // Two PTEs and the page cache.
    expect([system.kernel.pages.refcount[pfn], system.kernel.pages.mapcount[pfn]]).toEqual([3, 2]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a shared mapping read-faulted first becomes writable on the write fault, in the same page", () => {
    const system = smallSystem();
    const file = system.createFile("f", P);
    const proc = system.spawn();
    const addr = proc.mmap(P, { file });
    proc.read(addr, 1);
    const pfn = pfnAt(proc, addr);
    proc.writeU32(addr, 3);
    expect(pfnAt(proc, addr)).toBe(pfn);
    expect(file.read(0, 1)).toEqual(Uint8Array.from([3]));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("MAP_SHARED|MAP_ANONYMOUS memory stays shared across fork", () => {
    const system = smallSystem();
    const parent = system.spawn();
    const addr = parent.mmap(P, { flags: MAP_SHARED | MAP_ANONYMOUS });
    parent.writeU32(addr, 1);
    const child = parent.fork();
    child.writeU32(addr, 2);
    expect(parent.readU32(addr)).toBe(2);
    expect(pfnAt(child, addr)).toBe(pfnAt(parent, addr));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a private file mapping forked: the child's write copies, the parent and the file keep theirs", () => {
    const system = smallSystem();
    const file = system.createFile("f", P);
    file.write(0, Uint8Array.from([1]));
    const parent = system.spawn();
    const addr = parent.mmap(P, { file, flags: MAP_PRIVATE });
    parent.write(addr, Uint8Array.from([2]));
    const child = parent.fork();
    child.write(addr, Uint8Array.from([3]));
    expect([parent.read(addr, 1)[0], child.read(addr, 1)[0], file.read(0, 1)[0]]).toEqual([2, 3, 1]);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("teardown", () => {
  it("exit frees every anonymous page and leaves the page cache", () => {
    const system = smallSystem();
    const file = system.createFile("f", 2 * P);
    const proc = system.spawn();
    const anon = proc.mmap(3 * P);
    proc.write(anon, pageOf(1, 3));
    const mapped = proc.mmap(2 * P, { file });
    proc.write(mapped, pageOf(2, 2));
    proc.exit();
    drain(system);
    expect(system.usedPages).toBe(2);
    expect(file.read(0, 2 * P)).toEqual(pageOf(2, 2));
    expect(system.kernel.mms.size).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });
});
