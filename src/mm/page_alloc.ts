/**
 * The page allocator for system RAM (mm/page_alloc.c): one node, one zone, order-0 pages only.
 *
 * Free frames are handed out lowest pfn first. That is what the buddy allocator does with memory freed
 * in bulk: freed buddies merge into large blocks, and __rmqueue_smallest with expand() splits a block by
 * returning its first page and putting the upper halves back, so a run of allocations walks up through
 * physical memory. Deliberate differences: no per-cpu page lists (which hand back the last few hundred
 * pages freed on that CPU first), only orders 0 and 9 (HPAGE_PMD_ORDER, for transparent huge pages), no
 * migratetypes, and a freed order-9 block does not merge with its neighbours into larger ones (there is
 * nothing larger to allocate). The order
 * matters beyond fidelity: frames of the bytes store are host memory, where copying 1 GiB in 4 KiB pages
 * took 90 ms with both sides ascending and 145 to 185 ms with either side descending on the development
 * VM (`npm run bench` prints the descending case next to the memcpy baseline). Pfn 0 is the shared zero
 * page.
 */
import { assert, assertAbout } from "../base/assert.js";
import { FreeFrames } from "../base/free_frames.js";
import {
  assertPage,
  HPAGE_PMD_NR,
  type PageArrays,
  PG_anon,
  PG_anon_exclusive,
  PG_buddy,
  PG_dirty,
  PG_head,
  PG_memcg_moved,
  PG_referenced,
  PG_reserved,
  PG_swapbacked,
  PG_uptodate,
} from "./page.js";

/** The pfn of the shared zero page (my_zero_pfn), never allocated or freed. */
export const ZERO_PFN = 0;

/** Flags a page keeps across free and reuse: none but the permanent ones. */
const FLAGS_CLEARED_AT_FREE =
  PG_memcg_moved | PG_anon | PG_anon_exclusive | PG_dirty | PG_referenced | PG_swapbacked | PG_uptodate;

/** The RAM page allocator (the buddy allocator's role: alloc_page, __free_page), lowest free frame first. */
export class PageAllocator {
  /** Frames of RAM, the zero page included. */
  readonly ramPages: number;
  /** Frames returned to the free lists; every one lies below highWater. */
  private readonly free: FreeFrames;
  /** Frames at or above this pfn have never been allocated (so untouched RAM costs nothing). */
  private highWater = ZERO_PFN + 1;
  private allocatedCount = 0;
  /** When non-zero, the next allocations fail (fault injection for tests and scenarios). */
  failNext = 0;
  /**
   * When non-zero, the next order-9 allocations fail while order-0 ones still succeed: fragmented memory,
   * the case THP faults and migrations fall back to 4 KiB pages for.
   */
  failNextLarge = 0;

  constructor(
    private readonly pages: PageArrays,
    ramPages: number,
  ) {
    assert(Number.isSafeInteger(ramPages) && ramPages >= 2, "RAM must hold at least two pages", () =>
      String(ramPages),
    );
    assert(pages.capacity >= ramPages, "struct page arrays smaller than RAM");
    this.ramPages = ramPages;
    this.free = new FreeFrames(ramPages);
    pages.set(ZERO_PFN, PG_reserved | PG_uptodate);
    pages.refcount[ZERO_PFN] = 1;
  }

  /** RAM pages free for allocation (the zero page is never free). */
  get freePages(): number {
    return this.ramPages - 1 - this.allocatedCount;
  }

  /** RAM pages allocated and not yet freed. */
  get usedPages(): number {
    return this.allocatedCount;
  }

  /** Whether `pfn` is a frame of system RAM rather than device memory. */
  isRam(pfn: number): boolean {
    return pfn >= 0 && pfn < this.ramPages;
  }

  /**
   * alloc_page(GFP_HIGHUSER_MOVABLE): a free frame with one reference held by the caller, or -1 when RAM
   * is exhausted (the caller turns that into VM_FAULT_OOM or -ENOMEM). Contents are not cleared.
   */
  allocPage(): number {
    if (this.failNext > 0) {
      this.failNext--;
      return -1;
    }
    // A returned frame is lower than any never allocated, so this is the lowest free frame either way.
    let pfn: number;
    if (this.free.size > 0) pfn = this.free.takeLowest();
    else if (this.highWater < this.ramPages) pfn = this.highWater++;
    else return -1;
    const pages = this.pages;
    assertPage(
      pages.refcount[pfn] === 0 && pages.mapcount[pfn] === 0,
      "allocating a page in use",
      pages,
      pfn,
    );
    pages.clear(pfn, PG_buddy);
    pages.initAllocated(pfn);
    this.allocatedCount++;
    return pfn;
  }

  /**
   * alloc_pages(GFP_TRANSHUGE, HPAGE_PMD_ORDER) with prep_compound_page: the lowest free 512-aligned
   * block of 512 frames as one compound page, its head holding one reference for the caller; -1 when no
   * such block is free. Contents are not cleared.
   */
  allocFolioPmd(): number {
    if (this.failNext > 0 || this.failNextLarge > 0) {
      if (this.failNext > 0) this.failNext--;
      else this.failNextLarge--;
      return -1;
    }
    let head = this.free.size >= HPAGE_PMD_NR ? this.free.takeLowestBlock() : -1;
    if (head < 0) {
      // From never-allocated memory: the frames skipped to reach alignment become free ones.
      const aligned = Math.ceil(this.highWater / HPAGE_PMD_NR) * HPAGE_PMD_NR;
      if (aligned + HPAGE_PMD_NR > this.ramPages) return -1;
      for (let pfn = this.highWater; pfn < aligned; pfn++) this.pages.set(pfn, PG_buddy);
      this.free.addRange(this.highWater, aligned);
      this.highWater = aligned + HPAGE_PMD_NR;
      head = aligned;
    }
    const pages = this.pages;
    for (let pfn = head; pfn < head + HPAGE_PMD_NR; pfn++) {
      assertPage(
        pages.refcount[pfn] === 0 && pages.mapcount[pfn] === 0,
        "allocating a page in use",
        pages,
        pfn,
      );
      pages.clear(pfn, PG_buddy);
    }
    pages.initAllocated(head);
    pages.makeCompound(head);
    this.allocatedCount += HPAGE_PMD_NR;
    return head;
  }

  /** __free_pages of an order-9 folio: its 512 frames return to the free pool as order-0 frames. */
  freeFolio(head: number): void {
    const pages = this.pages;
    assertAbout(
      this.isRam(head) &&
        head % HPAGE_PMD_NR === 0 &&
        head + HPAGE_PMD_NR <= this.highWater &&
        pages.has(head, PG_head),
      "freeing a large folio that is not allocated RAM",
      String,
      head,
    );
    pages.clearCompound(head);
    for (let pfn = head; pfn < head + HPAGE_PMD_NR; pfn++) {
      pages.clear(pfn, FLAGS_CLEARED_AT_FREE);
      pages.set(pfn, PG_buddy);
      pages.mapping[pfn] = 0;
      pages.index[pfn] = 0;
      pages.heldRefs[pfn] = 0;
    }
    this.free.addRange(head, head + HPAGE_PMD_NR);
    this.allocatedCount -= HPAGE_PMD_NR;
  }

  /** __free_pages: the last reference is gone; the frame returns to the free pool. */
  freePage(pfn: number): void {
    const pages = this.pages;
    // Below the high-water mark: a frame never handed out cannot come back.
    assertAbout(
      this.isRam(pfn) && pfn !== ZERO_PFN && pfn < this.highWater,
      "freeing a frame that is not allocated RAM",
      String,
      pfn,
    );
    assertPage(!pages.has(pfn, PG_buddy), "double free", pages, pfn);
    pages.clear(pfn, FLAGS_CLEARED_AT_FREE);
    pages.set(pfn, PG_buddy);
    pages.mapping[pfn] = 0;
    pages.index[pfn] = 0;
    pages.heldRefs[pfn] = 0;
    this.free.add(pfn);
    this.allocatedCount--;
  }

  /** True when the frame is free (never allocated, or returned). */
  isFree(pfn: number): boolean {
    return this.isRam(pfn) && pfn !== ZERO_PFN && (pfn >= this.highWater || this.free.has(pfn));
  }
}
