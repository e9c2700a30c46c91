/**
 * The seed ("[PATCH 12/15] mm/migrate: new memory migration helper for use with device memory v4"),
 * run as posted, defects included.
 *
 * Its prepare step isolates each collected page from the LRU but never drops the reference collect
 * took, so every page fails the pin check (refcount - 1 > mapcount): nothing ever migrates, dmirror's
 * read-back reports ENOENT, and each collected page keeps one reference nobody will put. These tests
 * document that.
 *
 * S3 (blocking lock_page in prepare, two migrations deadlocking ABBA) is not reproduced here: within
 * one VMA migrate_vma locks pages in ascending address order, which is the order of their page index
 * in every mapping of the page (fork and mremap keep it, and hmmsim merges no VMAs), and locks are
 * dropped between VMAs. So two seed migrations, over the same or overlapping ranges, on one device or
 * two, in one process or in parent and child, take the page locks in one global order. 300 random
 * interleavings of two overlapping seed migrations on devices 0 and 1 all completed. The real kernel
 * can break the order with pages mapped at unrelated indexes (KSM), which hmmsim does not model.
 */
import { describe, expect, it } from "vitest";
import { HMM_DMIRROR_PROT_WRITE } from "../../src/drivers/dmirror.js";
import { lruAddDrainAll } from "../../src/mm/swap.js";
import { errorCode, P, pfnAt, setup } from "./helpers.js";

const NPAGES = 4;
const SEED = 8;

function leakLines(pfns: readonly number[], count: number): string[] {
  return [...pfns]
    .sort((a, b) => a - b)
    .map((pfn) => `pfn ${pfn}: ${count} reference(s) still held with no thread running (leaked)`);
}

describe("the seed protocol", () => {
  it("migrates nothing (ENOENT), keeps the data, and leaks collect's reference on every page", () => {
    const { system, proc, fd } = setup("seed");
    const k = system.kernel;
    const addr = proc.mmap(NPAGES * P);
    proc.fillPages(addr, NPAGES, SEED);
    const pfns = Array.from({ length: NPAGES }, (_, i) => pfnAt(proc, addr + i * P));
    expect(system.checkInvariants()).toEqual([]);
    const collectedBefore = k.stats.migrateCollected;
    const movedBefore = k.stats.migrateMoved;

    expect(errorCode(() => fd.migrateToDevice(addr, NPAGES))).toBe("ENOENT");

    // Collect took every page; none moved; no device memory was used.
    expect(k.stats.migrateCollected - collectedBefore).toBe(NPAGES);
    expect(k.stats.migrateMoved - movedBefore).toBe(0);
    expect(system.device(0).usedPages).toBe(0);
    // Every page is the same system page, mapped writable, with its data.
    expect(Array.from({ length: NPAGES }, (_, i) => pfnAt(proc, addr + i * P))).toEqual(pfns);
    expect(Array.from(fd.snapshot(addr, NPAGES))).toEqual(new Array(NPAGES).fill(HMM_DMIRROR_PROT_WRITE));
    expect(proc.checkPages(addr, NPAGES, SEED)).toEqual([]);

    // One reference per page that no one will ever put: refcount is mapcount + 1 once the LRU add
    // batches are drained, and the checker reports each page's leak, and nothing else.
    lruAddDrainAll(k);
    for (const pfn of pfns) {
      expect(k.pages.mapcount[pfn]).toBe(1);
      expect(k.pages.refcount[pfn]).toBe(2);
      expect(k.pages.heldRefs[pfn]).toBe(1);
    }
    expect(system.checkInvariants()).toEqual(leakLines(pfns, 1));

    // Each further attempt leaks one more, and the pages outlive their mapping.
    expect(errorCode(() => fd.migrateToDevice(addr, NPAGES))).toBe("ENOENT");
    expect(system.checkInvariants()).toEqual(leakLines(pfns, 2));
    fd.close();
    proc.munmap(addr, NPAGES * P);
    lruAddDrainAll(k);
    for (const pfn of pfns) expect(k.pages.refcount[pfn]).toBe(2);
    expect(system.checkInvariants()).toEqual(leakLines(pfns, 2));
  });

  it("leaves pages it cannot see alone: holes and untouched pages are not collected", () => {
    const { system, proc, fd } = setup("seed");
    const addr = proc.mmap(NPAGES * P);
    const collectedBefore = system.kernel.stats.migrateCollected;
    // The seed has no "allocate on empty entry": an untouched buffer has nothing to collect.
    expect(errorCode(() => fd.migrateToDevice(addr, NPAGES))).toBe("ENOENT");
    expect(system.kernel.stats.migrateCollected).toBe(collectedBefore);
    expect(system.checkInvariants()).toEqual([]);
  });
});
