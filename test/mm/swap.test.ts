import { describe, expect, it } from "vitest";
import { EBUSY } from "../../src/base/errno.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import { PG_lru, PG_swapbacked } from "../../src/mm/page.js";
import {
  isolateLruPage,
  LRU_INACTIVE_ANON,
  LRU_INACTIVE_FILE,
  lruAddDrain,
  lruAddDrainAll,
  PAGEVEC_SIZE,
  putbackLruPage,
} from "../../src/mm/swap.js";
import type { Kfn } from "../../src/sched/thread.js";
import type { System } from "../../src/system.js";
import { inThread, pfnAt, smallSystem } from "./helpers.js";

const P = PAGE_SIZE;

/** The pfns on one LRU list, head first. */
function lruList(system: System, list: number): number[] {
  const k = system.kernel;
  const out: number[] = [];
  for (let pfn = k.lru.head[list]!; pfn >= 0 && out.length <= k.pages.capacity; pfn = k.pages.lruNext[pfn]!)
    out.push(pfn);
  return out;
}

describe("LRU add batches", () => {
  it("a new page waits in its CPU's batch with a reference of the batch's own", () => {
    const system = smallSystem({ cpus: 2 });
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.writeU32(addr, 1);
    const pfn = pfnAt(proc, addr);
    const k = system.kernel;
    expect(k.lru.addBatches[proc.cpu]).toEqual([pfn]);
    expect(k.pages.has(pfn, PG_lru)).toBe(false);
    expect(k.pages.refcount[pfn]).toBe(2);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a full batch drains by itself onto the anon list, in order", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(PAGEVEC_SIZE * P);
    proc.touch(addr, PAGEVEC_SIZE - 1, true);
    const k = system.kernel;
    expect(k.lru.addBatches[proc.cpu]).toHaveLength(PAGEVEC_SIZE - 1);
    expect(k.lru.sizes[LRU_INACTIVE_ANON]).toBe(0);
    proc.touch(addr + (PAGEVEC_SIZE - 1) * P, 1, true);
    expect(k.lru.addBatches[proc.cpu]).toEqual([]);
    const pfns = Array.from({ length: PAGEVEC_SIZE }, (_, i) => pfnAt(proc, addr + i * P));
    // Each page was added at the head, so the list runs newest first.
    expect(lruList(system, LRU_INACTIVE_ANON)).toEqual([...pfns].reverse());
    expect(k.lru.sizes[LRU_INACTIVE_ANON]).toBe(PAGEVEC_SIZE);
    for (const pfn of pfns) {
      expect(k.pages.has(pfn, PG_lru | PG_swapbacked)).toBe(true);
      expect(k.pages.refcount[pfn]).toBe(1);
    }
    expect(system.checkInvariants()).toEqual([]);
  });

  it("lru_add_drain empties one CPU's batch; lru_add_drain_all empties them all", () => {
    const system = smallSystem({ cpus: 2 });
    const a = system.spawn();
    const b = system.spawn();
    expect([a.cpu, b.cpu]).toEqual([0, 1]);
    const addrA = a.mmap(P);
    const addrB = b.mmap(P);
    a.writeU32(addrA, 1);
    b.writeU32(addrB, 2);
    const k = system.kernel;
    lruAddDrain(k, 0);
    expect(k.lru.addBatches[0]).toEqual([]);
    expect(k.lru.addBatches[1]).toEqual([pfnAt(b, addrB)]);
    expect(k.pages.has(pfnAt(a, addrA), PG_lru)).toBe(true);
    expect(k.pages.has(pfnAt(b, addrB), PG_lru)).toBe(false);
    lruAddDrainAll(k);
    expect(k.lru.addBatches[1]).toEqual([]);
    expect(k.pages.has(pfnAt(b, addrB), PG_lru)).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("tmpfs pages join the anon lists, as shmem's do; nothing lands on the file lists", () => {
    const system = smallSystem();
    const file = system.createFile("f", 2 * P);
    file.write(0, new Uint8Array(2 * P).fill(1));
    lruAddDrainAll(system.kernel);
    expect(system.kernel.lru.sizes[LRU_INACTIVE_ANON]).toBe(2);
    expect(system.kernel.lru.sizes[LRU_INACTIVE_FILE]).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a page freed while on the LRU leaves its list", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(2 * P);
    proc.touch(addr, 2, true);
    lruAddDrainAll(system.kernel);
    const gone = pfnAt(proc, addr);
    const kept = pfnAt(proc, addr + P);
    proc.munmap(addr, P);
    expect(lruList(system, LRU_INACTIVE_ANON)).toEqual([kept]);
    expect(system.kernel.pages.has(gone, PG_lru)).toBe(false);
    expect(system.kernel.ram.isFree(gone)).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("isolation and putback", () => {
  it("isolate takes the page off its list with a reference; putback returns it through the batch", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.writeU32(addr, 5);
    const k = system.kernel;
    lruAddDrainAll(k);
    const pfn = pfnAt(proc, addr);
    inThread(
      system,
      (function* (): Kfn<void> {
        expect(isolateLruPage(k, pfn)).toBe(0);
        expect(k.pages.has(pfn, PG_lru)).toBe(false);
        expect(k.lru.sizes[LRU_INACTIVE_ANON]).toBe(0);
        expect(k.pages.refcount[pfn]).toBe(2);
        // Isolated pages cannot be isolated twice.
        expect(isolateLruPage(k, pfn)).toBe(-EBUSY);
        putbackLruPage(k, pfn, 0);
        expect(k.lru.addBatches[0]).toEqual([pfn]);
      })(),
    );
    expect(k.pages.refcount[pfn]).toBe(2);
    expect(system.checkInvariants()).toEqual([]);
    lruAddDrainAll(k);
    expect(lruList(system, LRU_INACTIVE_ANON)).toEqual([pfn]);
    expect(k.pages.refcount[pfn]).toBe(1);
    expect(proc.readU32(addr)).toBe(5);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a page still in an add batch cannot be isolated until the batch drains", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.writeU32(addr, 5);
    const k = system.kernel;
    const pfn = pfnAt(proc, addr);
    const results = inThread(
      system,
      (function* (): Kfn<number[]> {
        const first = isolateLruPage(k, pfn);
        lruAddDrainAll(k);
        const second = isolateLruPage(k, pfn);
        putbackLruPage(k, pfn, 0);
        return [first, second];
      })(),
    );
    expect(results).toEqual([-EBUSY, 0]);
    expect(system.checkInvariants()).toEqual([]);
  });
});
