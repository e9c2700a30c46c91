/**
 * ZONE_DEVICE memory (mm/memremap.c, include/linux/memremap.h): a device's memory gets struct pages
 * in a pfn range of its own, described by a dev_pagemap with an owner and the driver's callbacks.
 *
 * Refcount era: 6.1 and later (ef233450898f, "free device private pages have zero refcount"): a free
 * device page has refcount 0, and zone_device_page_init hands the driver a page with refcount 1,
 * locked. Before it, 27674ef6c73f (5.18) had already dropped the extra reference of an allocated page
 * but reset free pages to 1; 4.14 to 5.17 kept a base reference throughout. hmmsim uses the 6.1 era in
 * every protocol version (see migrate_device.ts for what that changes in 4.14's checks).
 */
import { assert } from "../base/assert.js";
import { EINVAL, ENOMEM, KernelError } from "../base/errno.js";
import { WaitQueue } from "../sched/locks.js";
import { BLOCKED, type Kfn } from "../sched/thread.js";
import type { Kernel } from "./kernel.js";
import type { Vma } from "./mm_types.js";
import {
  assertPage,
  PG_anon,
  PG_anon_exclusive,
  PG_device_coherent,
  PG_dirty,
  PG_locked,
  PG_memcg_moved,
  PG_zone_device,
} from "./page.js";

/** MEMORY_DEVICE_PRIVATE: device memory the CPU cannot map; CPU faults migrate it back to RAM. */
export const MEMORY_DEVICE_PRIVATE = 1;
/** Pagemaps a kernel can hold (ids 1 and up): page->pgmap is a 16-bit id here. */
export const PAGEMAPS_MAX = 2 ** 16;
/** MEMORY_DEVICE_COHERENT: device memory the CPU can map and access directly. */
export const MEMORY_DEVICE_COHERENT = 2;
/** enum memory_type, the kinds of ZONE_DEVICE memory hmmsim models. */
export type MemoryType = typeof MEMORY_DEVICE_PRIVATE | typeof MEMORY_DEVICE_COHERENT;

/** struct vm_fault, the part a migrate_to_ram callback reads. */
export interface VmFault {
  readonly vma: Vma;
  readonly vpn: number;
  readonly flags: number;
  /** The device-private page that faulted. */
  readonly page: number;
  /** The PTE value seen when the fault started. */
  readonly origPte: number;
}

/** struct dev_pagemap_ops. */
export interface DevPagemapOps {
  /** page_free (folio_free since 6.x): the last reference to a device page went. */
  pageFree(pfn: number): void;
  /** migrate_to_ram: a CPU touched a device-private page; move it back. Returns VM_FAULT_* bits. */
  migrateToRam(vmf: VmFault): Kfn<number>;
}

/**
 * struct dev_pagemap. Its lifetime follows the kernel's pgmap->ref: every page handed out by
 * zone_device_page_init holds one reference, free_zone_device_folio drops it; memunmap_pages kills the
 * reference (no page may be handed out after), waits for the pages in use to be freed, then removes the
 * struct pages. A removed pagemap's pages keep their pfns (the range is never reused) so that a use
 * after removal can be named.
 */
export class DevPagemap {
  /** Pages handed out and not yet freed (the per-page references on pgmap->ref). */
  pagesInUse = 0;
  /** percpu_ref_kill has run: memunmap_pages started, no page may be handed out any more. */
  killed = false;
  /** pageunmap_range has run: the struct pages are gone. */
  removed = false;
  /** memunmap_pages sleeps here until the last page in use is freed (pgmap->done). */
  readonly done = new WaitQueue();

  constructor(
    readonly id: number,
    readonly type: MemoryType,
    readonly startPfn: number,
    readonly pages: number,
    /** Compared with migrate_vma.pgmap_owner and hmm_range.dev_private_owner. */
    readonly owner: unknown,
    readonly ops: DevPagemapOps,
  ) {}

  /** The first pfn past the pagemap's range. */
  get endPfn(): number {
    return this.startPfn + this.pages;
  }

  /** Whether `pfn` lies in the pagemap's range. */
  contains(pfn: number): boolean {
    return pfn >= this.startPfn && pfn < this.endPfn;
  }
}

/** The pagemaps of a kernel, indexed by id (page->pgmap in the kernel). */
export class Pagemaps {
  readonly list: (DevPagemap | undefined)[] = [undefined];

  constructor(private readonly k: Kernel) {
    k.devicePageFreer = { freeDevicePage: (pfn) => this.freeDevicePage(pfn) };
  }

  /**
   * page_pgmap: the pagemap of a device page. Its pagemap must not have been removed: reaching a device
   * page through a removed pagemap is a use after free in the kernel (the struct page is gone).
   */
  of(pfn: number): DevPagemap {
    const pgmap = this.list[this.k.pages.pgmapId[pfn]!];
    assertPage(pgmap !== undefined, "page has no dev_pagemap", this.k.pages, pfn);
    assertPage(!pgmap.removed, "device page of a pagemap that memunmap_pages removed", this.k.pages, pfn);
    return pgmap;
  }

  /** The pagemap a pfn belongs or belonged to, removed or not, or undefined (for the checker). */
  lookup(pfn: number): DevPagemap | undefined {
    return this.list[this.k.pages.pgmapId[pfn]!];
  }

  /** free_zone_device_folio: clears what the page carried, tells the driver, drops the pgmap reference. */
  private freeDevicePage(pfn: number): void {
    const pages = this.k.pages;
    pages.clear(pfn, PG_anon | PG_anon_exclusive | PG_dirty | PG_memcg_moved);
    pages.mapping[pfn] = 0;
    pages.index[pfn] = 0;
    const pgmap = this.of(pfn);
    pgmap.ops.pageFree(pfn);
    assertPage(pgmap.pagesInUse > 0, "device page freed with no page of its pagemap in use", pages, pfn);
    // percpu_ref_put_many: the last put after percpu_ref_kill completes pgmap->done.
    if (--pgmap.pagesInUse === 0 && pgmap.killed) pgmap.done.wakeAll(this.k.sched);
  }
}

/**
 * memremap_pages: creates struct pages for `pages` frames of device memory of the given type and
 * returns the pagemap. Pages start free (refcount 0). A driver's mistakes are answered as the kernel
 * answers them, with KernelError: EINVAL for a type hmmsim does not model (only MEMORY_DEVICE_PRIVATE
 * and MEMORY_DEVICE_COHERENT), a range without pages, or ops without page_free (and, for private
 * memory, migrate_to_ram: the kernel's WARN_ONCE and -EINVAL); ENOMEM once the pfn space for pagemaps
 * is used up. Deliberate difference: the kernel returns ERR_PTR, hmmsim throws.
 */
export function memremapPages(
  k: Kernel,
  maps: Pagemaps,
  type: MemoryType,
  pages: number,
  owner: unknown,
  ops: DevPagemapOps,
): DevPagemap {
  if (type !== MEMORY_DEVICE_PRIVATE && type !== MEMORY_DEVICE_COHERENT)
    throw new KernelError(EINVAL, `memremap_pages: unsupported memory type ${String(type)}`);
  if (!Number.isSafeInteger(pages) || pages <= 0)
    throw new KernelError(EINVAL, `memremap_pages: a range of ${String(pages)} pages`);
  const opsObject = typeof ops === "object" && ops !== null ? ops : null;
  if (opsObject === null || typeof opsObject.pageFree !== "function")
    throw new KernelError(EINVAL, "memremap_pages: ops must have pageFree");
  if (type === MEMORY_DEVICE_PRIVATE && typeof opsObject.migrateToRam !== "function")
    throw new KernelError(EINVAL, "memremap_pages: device-private memory needs ops.migrateToRam");
  if (maps.list.length >= PAGEMAPS_MAX)
    throw new KernelError(ENOMEM, `memremap_pages: ${maps.list.length} pagemaps already`);
  const startPfn = k.nextDevicePfn;
  // Ranges are aligned to a PMD (memory sections in the kernel are far larger).
  k.nextDevicePfn = startPfn + Math.ceil(pages / 512) * 512;
  k.growPfnSpace(k.nextDevicePfn);
  const pgmap = new DevPagemap(maps.list.length, type, startPfn, pages, owner, ops);
  maps.list.push(pgmap);
  const typeFlags = type === MEMORY_DEVICE_COHERENT ? PG_zone_device | PG_device_coherent : PG_zone_device;
  for (let pfn = startPfn; pfn < startPfn + pages; pfn++) {
    k.pages.flags[pfn] = typeFlags;
    k.pages.pgmapId[pfn] = pgmap.id;
  }
  return pgmap;
}

/** is_device_private_page (the pagemap must not have been removed: see Pagemaps.of). */
export function isDevicePrivatePage(k: Kernel, maps: Pagemaps, pfn: number): boolean {
  return k.pages.isZoneDevice(pfn) && maps.of(pfn).type === MEMORY_DEVICE_PRIVATE;
}

/** is_device_coherent_page (the pagemap must not have been removed: see Pagemaps.of). */
export function isDeviceCoherentPage(k: Kernel, maps: Pagemaps, pfn: number): boolean {
  return k.pages.isZoneDevice(pfn) && maps.of(pfn).type === MEMORY_DEVICE_COHERENT;
}

/**
 * memunmap_pages: kills the pagemap's reference (zone_device_page_init refuses it from now on), sleeps
 * until every page in use has been freed (wait_for_completion(&pgmap->done)), then removes the struct
 * pages (pageunmap_range). The driver must first have evicted what it can (test_hmm.c's
 * dmirror_device_evict_chunk); a page still mapped keeps the caller asleep until someone frees it.
 */
export function* memunmapPages(k: Kernel, pgmap: DevPagemap): Kfn<void> {
  assert(!pgmap.killed, "memunmap_pages on a pagemap already being removed", () => `pagemap ${pgmap.id}`);
  pgmap.killed = true;
  // Bounded: each wake follows a free, and no page can be handed out once killed.
  while (pgmap.pagesInUse > 0) {
    pgmap.done.add(k.sched.current());
    k.sched.sleep({
      describe: () => `memunmap_pages of pagemap ${pgmap.id} (${pgmap.pagesInUse} pages still in use)`,
      holders: () => [],
    });
    yield BLOCKED;
  }
  pgmap.removed = true;
}

/**
 * zone_device_page_init: the driver takes a free device page: refcount 1 held by the driver, locked by
 * the calling thread, and one reference on its pagemap.
 */
export function zoneDevicePageInit(k: Kernel, maps: Pagemaps, pfn: number): void {
  const pages = k.pages;
  assertPage(pages.isZoneDevice(pfn), "zone_device_page_init on a RAM page", pages, pfn);
  assertPage(pages.refcount[pfn] === 0, "zone_device_page_init on a page in use", pages, pfn);
  const pgmap = maps.of(pfn);
  // The kernel WARNs: "Drivers shouldn't be allocating pages after calling memunmap_pages()".
  assertPage(!pgmap.killed, "zone_device_page_init after memunmap_pages", pages, pfn);
  pgmap.pagesInUse++;
  pages.initAllocated(pfn);
  pages.flags[pfn] = (pages.flags[pfn]! & PG_device_coherent) | PG_zone_device | PG_locked;
  pages.lockHolder[pfn] = k.sched.current().id;
}
