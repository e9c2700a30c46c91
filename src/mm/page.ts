/**
 * struct page, as typed arrays indexed by pfn (include/linux/mm_types.h, page-flags.h, page_ref.h).
 *
 * Deliberate differences from the kernel:
 * - `mapcount` holds the number of mappings (the kernel's `_mapcount` is that minus one).
 * - `PG_anon` is a flag; the kernel keeps it as the low bit of `page->mapping`.
 * - Compound pages are of order 0 or HPAGE_PMD_ORDER (9) only, naturally aligned, so compound_head
 *   needs no per-page pointer: a PG_tail page's head is the 512-aligned pfn below it. The large
 *   folio's refcount, PG_lru, PG_locked, PG_dirty, mapping and index live on the head; a tail's
 *   refcount and mapcount stay 0. `entireMapcount` (folio->_entire_mapcount, plus one) counts PMD
 *   mappings, one slot per 512 frames.
 * - `heldRefs` is the model's ledger of references held by kernel threads and drivers (everything
 *   except page-table mappings, the page cache, LRU add batches and GUP), so the invariant checker can
 *   tell a leaked reference from a legitimate one. The kernel keeps no such count.
 */

import { assert, fail } from "../base/assert.js";
import { pageObject } from "../sched/objects.js";

/** PG_locked: the page is locked (lock_page); others wait on its bit. */
export const PG_locked = 1 << 0;
/** PG_referenced: the page was accessed recently (mark_page_accessed). */
export const PG_referenced = 1 << 1;
/** PG_uptodate: the page's contents are valid. */
export const PG_uptodate = 1 << 2;
/** PG_dirty: the page's contents differ from its backing store. */
export const PG_dirty = 1 << 3;
/** PG_lru: the page is on an LRU list. */
export const PG_lru = 1 << 4;
/** PG_active: the page is on an active LRU list. */
export const PG_active = 1 << 5;
/** PG_swapbacked: the page is backed by swap or shmem, not by a file (anonymous and tmpfs pages). */
export const PG_swapbacked = 1 << 6;
/** The shared zero page and other frames that are never allocated or freed. */
export const PG_reserved = 1 << 7;
/** page->mapping points at an anon_vma (PAGE_MAPPING_ANON). */
export const PG_anon = 1 << 8;
/** Free, owned by the page allocator (PageBuddy). */
export const PG_buddy = 1 << 9;
/** The page belongs to ZONE_DEVICE (is_zone_device_page), fixed for the life of the system. */
export const PG_zone_device = 1 << 10;
/** PageAnonExclusive: this anonymous page is mapped by exactly one process and may be reused on write. */
export const PG_anon_exclusive = 1 << 11;
/**
 * Model of folio->memcg_data being NULL because mem_cgroup_migrate moved the charge to the page this
 * one migrated to (6.x). Putting such a page on an LRU list is what VM_WARNs in folio_lruvec_lock, the
 * symptom behind 41cddf83d8b0 (defect S11). Cleared when the page is freed.
 */
export const PG_memcg_moved = 1 << 12;
/**
 * The page is ZONE_DEVICE memory of a MEMORY_DEVICE_COHERENT pagemap (is_device_coherent_page): memory
 * the CPU maps with ordinary PTEs. The kernel reads page_pgmap(page)->type; hmmsim caches the type here,
 * set by memremap_pages beside PG_zone_device and fixed for the life of the pagemap, so that the hot
 * paths need not look the pagemap up. A ZONE_DEVICE page without it is device-private.
 */
export const PG_device_coherent = 1 << 13;

/** PG_head: the first page of a compound page (folio_test_large on the folio). */
export const PG_head = 1 << 14;
/** PageTail: a page of a compound page other than its first. */
export const PG_tail = 1 << 15;
/**
 * folio_test_hugetlb (the page type PGTY_hugetlb), on the head: a folio of the hugetlb pool, free in
 * it or mapped by a hugetlbfs mapping; it never reaches the buddy allocator while in the pool.
 */
export const PG_hugetlb = 1 << 16;

/** HPAGE_PMD_ORDER: the order of a PMD-sized transparent huge page (2 MiB of 4 KiB pages). */
export const HPAGE_PMD_ORDER = 9;
/** HPAGE_PMD_NR: pages in a PMD-sized folio. */
export const HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER;

const flagNames: readonly [number, string][] = [
  [PG_locked, "locked"],
  [PG_referenced, "referenced"],
  [PG_uptodate, "uptodate"],
  [PG_dirty, "dirty"],
  [PG_lru, "lru"],
  [PG_active, "active"],
  [PG_swapbacked, "swapbacked"],
  [PG_reserved, "reserved"],
  [PG_anon, "anon"],
  [PG_buddy, "buddy"],
  [PG_zone_device, "zone_device"],
  [PG_anon_exclusive, "anon_exclusive"],
  [PG_memcg_moved, "memcg_moved"],
  [PG_device_coherent, "device_coherent"],
  [PG_head, "head"],
  [PG_tail, "tail"],
  [PG_hugetlb, "hugetlb"],
];

/** The names of the PG_* flags set in `flags`, joined with `|` ("none" when none is set). */
export function describeFlags(flags: number): string {
  const names = flagNames.filter(([bit]) => (flags & bit) !== 0).map(([, name]) => name);
  return names.length === 0 ? "none" : names.join("|");
}

/**
 * assert() with the page's description as its details, for hot paths: the description is built only
 * when the check fails, and the caller allocates no closure for it.
 */
export function assertPage(
  condition: unknown,
  message: string,
  pages: PageArrays,
  pfn: number,
): asserts condition {
  if (!condition) failPage(message, pages, pfn);
}

function failPage(message: string, pages: PageArrays, pfn: number): never {
  fail(message, () => pages.describe(pfn));
}

/** GUP_PIN_COUNTING_BIAS (include/linux/mm.h): what one FOLL_PIN adds to the refcount. */
export const GUP_PIN_COUNTING_BIAS = 1024;

/**
 * folio_maybe_dma_pinned for an order-0 page: its references look like at least one GUP pin. False
 * positives (1024 ordinary references) are accepted, as in the kernel.
 */
export function folioMaybeDmaPinned(pages: PageArrays, pfn: number): boolean {
  return pages.refcount[pfn]! >= GUP_PIN_COUNTING_BIAS;
}

/** Where the last reference to a page goes: the buddy allocator or a device's page_free. */
export interface PageFreer {
  /** Takes the page whose last reference was dropped (free_unref_page, or the pagemap's page_free). */
  freePage(pfn: number): void;
}

/** A problem the kernel would report with bad_page() or a VM_BUG_ON and then live with. */
export interface BadPageReport {
  pfn: number;
  reason: string;
}

/**
 * Every struct page of the kernel, RAM and device memory, as typed arrays indexed by pfn: flags, refcount,
 * mapcount and the rest.
 */
export class PageArrays {
  /** Number of frames described, RAM and device together. */
  capacity: number;
  flags: Uint32Array;
  refcount: Int32Array;
  mapcount: Int32Array;
  /** Id of the anon_vma or address_space (see Mappings); 0 when none. */
  mapping: Int32Array;
  /** Page offset: in the file for file pages, the linear page index for anonymous pages. */
  index: Float64Array;
  /** Id of the thread that holds PG_locked, 0 when unlocked (model only, for deadlock reports). */
  lockHolder: Int32Array;
  /** References held by kernel threads and drivers (model only, see the file comment). */
  heldRefs: Int32Array;
  /** LRU list links (model of page->lru); -1 when not on a list. */
  lruNext: Int32Array;
  lruPrev: Int32Array;
  /** Which LRU list the page is on; -1 when none. */
  lruList: Int8Array;
  /** page->zone_device_data: a number the device driver owns. */
  zoneDeviceData: Float64Array;
  /** Index of the dev_pagemap for ZONE_DEVICE pages; 0 for RAM. */
  pgmapId: Uint16Array;
  /**
   * folio->_entire_mapcount + 1 of the large folio whose head is at pfn `i * 512`: how many PMDs map it
   * whole. Zero for every slot whose first frame is not a head.
   */
  entireMapcount: Int32Array;
  readonly badPages: BadPageReport[] = [];
  freer: PageFreer | null = null;
  /** The explorer's footprint of the running step (Kernel.recordFootprints); null when not recording. */
  footprint: number[] | null = null;

  constructor(capacity: number) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, "page array capacity must be positive", () =>
      String(capacity),
    );
    this.capacity = capacity;
    this.flags = new Uint32Array(0);
    this.refcount = new Int32Array(0);
    this.mapcount = new Int32Array(0);
    this.mapping = new Int32Array(0);
    this.index = new Float64Array(0);
    this.lockHolder = new Int32Array(0);
    this.heldRefs = new Int32Array(0);
    this.lruNext = new Int32Array(0);
    this.lruPrev = new Int32Array(0);
    this.lruList = new Int8Array(0);
    this.zoneDeviceData = new Float64Array(0);
    this.pgmapId = new Uint16Array(0);
    this.entireMapcount = new Int32Array(0);
    this.allocate(capacity, 0);
  }

  /**
   * Gives every field `capacity` entries in one ArrayBuffer (one allocation instead of twelve: the
   * explorer builds thousands of small systems a second), keeping the first `kept` entries of each.
   */
  private allocate(capacity: number, kept: number): void {
    // Byte offsets, each field aligned to its element size (the 8-byte fields first).
    const f64 = capacity * 8;
    const i32 = capacity * 4;
    const sizes = [f64, f64, i32, i32, i32, i32, i32, i32, i32, i32, capacity * 2, capacity];
    const buffer = new ArrayBuffer(sizes.reduce((sum, size) => sum + size, 0));
    let at = 0;
    const take = (size: number): number => {
      const offset = at;
      at += size;
      return offset;
    };
    const index = new Float64Array(buffer, take(f64), capacity);
    const zoneDeviceData = new Float64Array(buffer, take(f64), capacity);
    const flags = new Uint32Array(buffer, take(i32), capacity);
    const refcount = new Int32Array(buffer, take(i32), capacity);
    const mapcount = new Int32Array(buffer, take(i32), capacity);
    const mapping = new Int32Array(buffer, take(i32), capacity);
    const lockHolder = new Int32Array(buffer, take(i32), capacity);
    const heldRefs = new Int32Array(buffer, take(i32), capacity);
    const lruNext = new Int32Array(buffer, take(i32), capacity);
    const lruPrev = new Int32Array(buffer, take(i32), capacity);
    const pgmapId = new Uint16Array(buffer, take(capacity * 2), capacity);
    const lruList = new Int8Array(buffer, take(capacity), capacity);
    lruNext.fill(-1, kept);
    lruPrev.fill(-1, kept);
    lruList.fill(-1, kept);
    if (kept > 0) {
      index.set(this.index.subarray(0, kept));
      zoneDeviceData.set(this.zoneDeviceData.subarray(0, kept));
      flags.set(this.flags.subarray(0, kept));
      refcount.set(this.refcount.subarray(0, kept));
      mapcount.set(this.mapcount.subarray(0, kept));
      mapping.set(this.mapping.subarray(0, kept));
      lockHolder.set(this.lockHolder.subarray(0, kept));
      heldRefs.set(this.heldRefs.subarray(0, kept));
      lruNext.set(this.lruNext.subarray(0, kept));
      lruPrev.set(this.lruPrev.subarray(0, kept));
      pgmapId.set(this.pgmapId.subarray(0, kept));
      lruList.set(this.lruList.subarray(0, kept));
    }
    this.index = index;
    this.zoneDeviceData = zoneDeviceData;
    this.flags = flags;
    this.refcount = refcount;
    this.mapcount = mapcount;
    this.mapping = mapping;
    this.lockHolder = lockHolder;
    this.heldRefs = heldRefs;
    this.lruNext = lruNext;
    this.lruPrev = lruPrev;
    this.pgmapId = pgmapId;
    this.lruList = lruList;
    const entireMapcount = new Int32Array(Math.ceil(capacity / HPAGE_PMD_NR));
    entireMapcount.set(
      this.entireMapcount.subarray(0, Math.min(this.entireMapcount.length, entireMapcount.length)),
    );
    this.entireMapcount = entireMapcount;
  }

  /** Extends the arrays to `capacity` frames (memremap_pages adding a device range). */
  grow(capacity: number): void {
    if (capacity <= this.capacity) return;
    this.allocate(capacity, this.capacity);
    this.capacity = capacity;
  }

  /** Whether page `pfn` has flag `bit` set (the PageFoo tests). */
  has(pfn: number, bit: number): boolean {
    return (this.flags[pfn]! & bit) !== 0;
  }

  /** Sets flag `bit` on page `pfn` (SetPageFoo). */
  set(pfn: number, bit: number): void {
    this.flags[pfn]! |= bit;
  }

  /** Clears flag `bit` on page `pfn` (ClearPageFoo). */
  clear(pfn: number, bit: number): void {
    this.flags[pfn]! &= ~bit;
  }

  /** is_zone_device_page: the page is ZONE_DEVICE memory (device-private or device-coherent). */
  isZoneDevice(pfn: number): boolean {
    return (this.flags[pfn]! & PG_zone_device) !== 0;
  }

  /** is_device_private_page: ZONE_DEVICE memory the CPU cannot map. */
  isDevicePrivate(pfn: number): boolean {
    return (this.flags[pfn]! & (PG_zone_device | PG_device_coherent)) === PG_zone_device;
  }

  /** is_device_coherent_page: ZONE_DEVICE memory the CPU maps and reads like RAM. */
  isDeviceCoherent(pfn: number): boolean {
    return (this.flags[pfn]! & PG_device_coherent) !== 0;
  }

  /** compound_head: the head page of the compound page `pfn` belongs to (pfn itself when order 0 or a head). */
  compoundHead(pfn: number): number {
    return (this.flags[pfn]! & PG_tail) === 0 ? pfn : pfn - (pfn % HPAGE_PMD_NR);
  }

  /** folio_test_large of the folio headed at `pfn`: a compound page's first frame. */
  isLargeHead(pfn: number): boolean {
    return (this.flags[pfn]! & PG_head) !== 0;
  }

  /** folio_nr_pages of the folio headed at `pfn` (a head or an order-0 page). */
  folioNrPages(pfn: number): number {
    return (this.flags[pfn]! & PG_head) !== 0 ? HPAGE_PMD_NR : 1;
  }

  /**
   * folio_mapcount of the folio headed at `pfn`: its PMD mappings plus every page's PTE mappings (a large
   * folio's pages are mapped by PTEs only after a split in hmmsim, so one of the two is zero).
   */
  folioMapcount(pfn: number): number {
    if ((this.flags[pfn]! & PG_head) === 0) return this.mapcount[pfn]!;
    let count = this.entireMapcount[pfn / HPAGE_PMD_NR]!;
    for (let i = 0; i < HPAGE_PMD_NR; i++) count += this.mapcount[pfn + i]!;
    return count;
  }

  /**
   * prep_compound_page for an order-9 block at the aligned `head`: PG_head on the first frame, PG_tail
   * on the rest. The allocator has given the head its one reference.
   */
  makeCompound(head: number): void {
    assertPage(
      head % HPAGE_PMD_NR === 0 && head + HPAGE_PMD_NR <= this.capacity,
      "compound page not aligned",
      this,
      head,
    );
    this.flags[head]! |= PG_head;
    for (let pfn = head + 1; pfn < head + HPAGE_PMD_NR; pfn++) {
      assertPage(this.refcount[pfn] === 0 && this.mapcount[pfn] === 0, "tail page in use", this, pfn);
      this.flags[pfn]! |= PG_tail;
    }
    this.entireMapcount[head / HPAGE_PMD_NR] = 0;
  }

  /** Clears PG_head and PG_tail over the folio headed at `head`: the frames are order-0 pages again. */
  clearCompound(head: number): void {
    assertPage(this.isLargeHead(head), "not the head of a compound page", this, head);
    assertPage(
      this.entireMapcount[head / HPAGE_PMD_NR] === 0,
      "splitting a folio still mapped by a PMD",
      this,
      head,
    );
    for (let pfn = head; pfn < head + HPAGE_PMD_NR; pfn++) this.flags[pfn]! &= ~(PG_head | PG_tail);
  }

  /** PageAnon: the page is anonymous memory (page->mapping is an anon_vma). */
  isAnon(pfn: number): boolean {
    return (this.flags[pfn]! & PG_anon) !== 0;
  }

  /** get_page by a kernel thread or driver: the reference is recorded as held. */
  get(pfn: number): void {
    assertPage(this.refcount[pfn]! > 0, "get_page on a page with no references", this, pfn);
    if (this.footprint !== null) this.footprint.push(pageObject(pfn));
    this.refcount[pfn]!++;
    this.heldRefs[pfn]!++;
  }

  /** put_page by a kernel thread or driver, dropping a reference it held. Frees the page at zero. */
  put(pfn: number): void {
    const held = this.heldRefs[pfn]!;
    if (held <= 0) this.reportBad(pfn, "put_page of a reference nobody recorded holding");
    else this.heldRefs[pfn] = held - 1;
    this.dropRef(pfn);
  }

  /** A reference owned by a structure the checker counts itself (a PTE, the page cache, an LRU batch). */
  getStructural(pfn: number): void {
    assertPage(this.refcount[pfn]! > 0, "structural reference to a page with no references", this, pfn);
    if (this.footprint !== null) this.footprint.push(pageObject(pfn));
    this.refcount[pfn]!++;
  }

  /** put_page of a structural reference (one that getStructural took). */
  putStructural(pfn: number): void {
    this.dropRef(pfn);
  }

  /** A held reference now belongs to a structure (the page a fault allocated is now mapped). */
  handOver(pfn: number): void {
    assertPage(this.heldRefs[pfn]! > 0, "handing over a reference that is not held", this, pfn);
    this.heldRefs[pfn]!--;
  }

  /** A structure's reference is now held by the running thread (a PTE cleared, its reference kept). */
  takeOver(pfn: number): void {
    assertPage(
      this.refcount[pfn]! > this.heldRefs[pfn]!,
      "taking over a reference that does not exist",
      this,
      pfn,
    );
    this.heldRefs[pfn]!++;
  }

  /** The page allocator's hand-off: a newly allocated page has one reference, held by the caller. */
  initAllocated(pfn: number): void {
    if (this.footprint !== null) this.footprint.push(pageObject(pfn));
    this.refcount[pfn] = 1;
    this.heldRefs[pfn] = 1;
  }

  private dropRef(pfn: number): void {
    if (this.footprint !== null) this.footprint.push(pageObject(pfn));
    const count = this.refcount[pfn]!;
    if (count <= 0) {
      this.reportBad(pfn, "put_page on a page with no references");
      return;
    }
    this.refcount[pfn] = count - 1;
    if (count === 1) this.release(pfn);
  }

  /** The last reference is gone: checks what free_pages_check would, then hands the page back. */
  private release(pfn: number): void {
    // One test for the three bad states; the reports are out of line.
    if ((this.flags[pfn]! & (PG_reserved | PG_locked | PG_head)) !== 0 || this.mapcount[pfn] !== 0) {
      if (!this.reportBadRelease(pfn)) return;
    }
    assert(this.freer !== null, "page arrays have no allocator");
    this.freer.freePage(pfn);
  }

  /** free_pages_check's reports. Returns false when the page must not be freed (it is reserved). */
  private reportBadRelease(pfn: number): boolean {
    if (this.has(pfn, PG_reserved)) {
      this.reportBad(pfn, "last reference to a reserved page dropped");
      return false;
    }
    if (this.mapcount[pfn] !== 0) this.reportBad(pfn, `freed while mapped ${this.mapcount[pfn]} times`);
    if (this.isLargeHead(pfn) && this.folioMapcount(pfn) !== 0)
      this.reportBad(pfn, `large folio freed while mapped ${this.folioMapcount(pfn)} times`);
    if (this.has(pfn, PG_locked)) this.reportBad(pfn, "freed while locked");
    return true;
  }

  /** Records a bad_page report for `pfn`, with the page's state appended. */
  reportBad(pfn: number, reason: string): void {
    this.badPages.push({ pfn, reason: `${reason} (${this.describe(pfn)})` });
  }

  /** The page's flags, refcount, mapcount and held references in one line (dump_page). */
  describe(pfn: number): string {
    return (
      `pfn ${pfn} flags ${describeFlags(this.flags[pfn]!)} refcount ${this.refcount[pfn]} ` +
      `mapcount ${this.mapcount[pfn]} held ${this.heldRefs[pfn]}` +
      (this.isLargeHead(pfn) ? ` entire_mapcount ${this.entireMapcount[pfn / HPAGE_PMD_NR]}` : "")
    );
  }
}
