/**
 * The page allocator for system RAM (mm/page_alloc.c): one node, one zone, order-0 pages only.
 *
 * Deliberate differences: no buddy merging or higher orders (hmmsim has no THP yet); free pages are
 * handed out last-freed-first from a stack and, once that is empty, in pfn order from a high-water mark,
 * so untouched RAM costs nothing and runs are deterministic. Pfn 0 is the shared zero page.
 */
import { assert, assertAbout } from "../base/assert.js";
import {
  assertPage,
  type PageArrays,
  PG_anon,
  PG_anon_exclusive,
  PG_buddy,
  PG_dirty,
  PG_memcg_moved,
  PG_referenced,
  PG_reserved,
  PG_swapbacked,
  PG_uptodate,
} from "./page.js";

export const ZERO_PFN = 0;

/** Flags a page keeps across free and reuse: none but the permanent ones. */
const FLAGS_CLEARED_AT_FREE =
  PG_memcg_moved | PG_anon | PG_anon_exclusive | PG_dirty | PG_referenced | PG_swapbacked | PG_uptodate;

export class PageAllocator {
  /** Frames of RAM, the zero page included. */
  readonly ramPages: number;
  private freeStack: Int32Array;
  private freeTop = 0;
  /** Frames at or above this pfn have never been allocated. */
  private highWater = ZERO_PFN + 1;
  private allocatedCount = 0;
  /** When non-zero, the next allocations fail (fault injection for tests and scenarios). */
  failNext = 0;

  constructor(
    private readonly pages: PageArrays,
    ramPages: number,
  ) {
    assert(Number.isSafeInteger(ramPages) && ramPages >= 2, "RAM must hold at least two pages", () =>
      String(ramPages),
    );
    assert(pages.capacity >= ramPages, "struct page arrays smaller than RAM");
    this.ramPages = ramPages;
    this.freeStack = new Int32Array(1024);
    pages.set(ZERO_PFN, PG_reserved | PG_uptodate);
    pages.refcount[ZERO_PFN] = 1;
  }

  get freePages(): number {
    return this.ramPages - 1 - this.allocatedCount;
  }

  get usedPages(): number {
    return this.allocatedCount;
  }

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
    let pfn: number;
    if (this.freeTop > 0) {
      pfn = this.freeStack[--this.freeTop]!;
    } else if (this.highWater < this.ramPages) {
      pfn = this.highWater++;
    } else {
      return -1;
    }
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

  /** __free_pages: the last reference is gone; the frame returns to the free pool. */
  freePage(pfn: number): void {
    const pages = this.pages;
    assertAbout(
      this.isRam(pfn) && pfn !== ZERO_PFN,
      "freeing a frame that is not allocatable RAM",
      String,
      pfn,
    );
    assertPage(!pages.has(pfn, PG_buddy), "double free", pages, pfn);
    pages.clear(pfn, FLAGS_CLEARED_AT_FREE);
    pages.set(pfn, PG_buddy);
    pages.mapping[pfn] = 0;
    pages.index[pfn] = 0;
    pages.heldRefs[pfn] = 0;
    if (this.freeTop === this.freeStack.length) {
      const grown = new Int32Array(this.freeStack.length * 2);
      grown.set(this.freeStack);
      this.freeStack = grown;
    }
    this.freeStack[this.freeTop++] = pfn;
    this.allocatedCount--;
  }

  /** True when the frame is free (never allocated, or returned). */
  isFree(pfn: number): boolean {
    return pfn >= this.highWater || this.pages.has(pfn, PG_buddy);
  }
}
