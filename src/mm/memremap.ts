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
import type { Kfn } from "../sched/thread.js";
import type { Kernel } from "./kernel.js";
import type { Vma } from "./mm_types.js";
import {
  assertPage,
  PG_anon,
  PG_anon_exclusive,
  PG_dirty,
  PG_locked,
  PG_memcg_moved,
  PG_zone_device,
} from "./page.js";

export const MEMORY_DEVICE_PRIVATE = 1;
export const MEMORY_DEVICE_COHERENT = 2;
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

/** struct dev_pagemap. */
export class DevPagemap {
  constructor(
    readonly id: number,
    readonly type: MemoryType,
    readonly startPfn: number,
    readonly pages: number,
    /** Compared with migrate_vma.pgmap_owner and hmm_range.dev_private_owner. */
    readonly owner: unknown,
    readonly ops: DevPagemapOps,
  ) {}

  get endPfn(): number {
    return this.startPfn + this.pages;
  }

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

  of(pfn: number): DevPagemap {
    const pgmap = this.list[this.k.pages.pgmapId[pfn]!];
    assertPage(pgmap !== undefined, "page has no dev_pagemap", this.k.pages, pfn);
    return pgmap;
  }

  /** free_zone_device_folio: clears what the page carried, then tells the driver. */
  private freeDevicePage(pfn: number): void {
    const pages = this.k.pages;
    pages.clear(pfn, PG_anon | PG_anon_exclusive | PG_dirty | PG_memcg_moved);
    pages.mapping[pfn] = 0;
    pages.index[pfn] = 0;
    this.of(pfn).ops.pageFree(pfn);
  }
}

/**
 * memremap_pages: creates struct pages for `pages` frames of device memory of the given type and
 * returns the pagemap. Pages start free (refcount 0).
 */
export function memremapPages(
  k: Kernel,
  maps: Pagemaps,
  type: MemoryType,
  pages: number,
  owner: unknown,
  ops: DevPagemapOps,
): DevPagemap {
  assert(Number.isSafeInteger(pages) && pages > 0, "device range must have pages", () => String(pages));
  const startPfn = k.nextDevicePfn;
  // Ranges are aligned to a PMD (memory sections in the kernel are far larger).
  k.nextDevicePfn = startPfn + Math.ceil(pages / 512) * 512;
  k.growPfnSpace(k.nextDevicePfn);
  const pgmap = new DevPagemap(maps.list.length, type, startPfn, pages, owner, ops);
  maps.list.push(pgmap);
  for (let pfn = startPfn; pfn < startPfn + pages; pfn++) {
    k.pages.flags[pfn] = PG_zone_device;
    k.pages.pgmapId[pfn] = pgmap.id;
  }
  return pgmap;
}

/** is_device_private_page. */
export function isDevicePrivatePage(k: Kernel, maps: Pagemaps, pfn: number): boolean {
  return k.pages.isZoneDevice(pfn) && maps.of(pfn).type === MEMORY_DEVICE_PRIVATE;
}

/**
 * zone_device_page_init: the driver takes a free device page: refcount 1 held by the driver, locked by
 * the calling thread.
 */
export function zoneDevicePageInit(k: Kernel, pfn: number): void {
  const pages = k.pages;
  assertPage(pages.isZoneDevice(pfn), "zone_device_page_init on a RAM page", pages, pfn);
  assertPage(pages.refcount[pfn] === 0, "zone_device_page_init on a page in use", pages, pfn);
  pages.initAllocated(pfn);
  pages.flags[pfn] = PG_zone_device | PG_locked;
  pages.lockHolder[pfn] = k.sched.current().id;
}
