/**
 * dmirror's device memory (lib/test_hmm.c: struct dmirror_device, dmirror_allocate_chunk,
 * dmirror_devmem_alloc_page, dmirror_devmem_free, dmirror_devmem_fault, dmirror_device_evict_chunk,
 * dmirror_device_remove_chunks): ZONE_DEVICE private memory that the device adds in chunks as it needs
 * pages, evicts to RAM when a file of the device is released, and gives back on HMM_DMIRROR_RELEASE.
 *
 * Deliberate differences from test_hmm.c:
 * - a chunk is 2 MiB (DEVMEM_CHUNK_PAGES), not DEVMEM_CHUNK_SIZE's 256 MiB. hmmsim's struct pages are
 *   typed arrays over every pfn up to the highest (51 bytes a frame), and the bytes store sizes its
 *   first slab to the whole pfn space, so the kernel's chunk, made at init as test_hmm.c makes it,
 *   would cost every system 3.3 MB of arrays and a 256 MiB slab per device before its first migration.
 *   The chunk size is invisible to the uapi; only pfn numbers and the eviction batches show it;
 * - chunks are added only up to the device's memory limit (SystemOptions.devices[].memory), past which
 *   allocation fails as it does in the kernel when request_free_mem_region finds no room;
 * - device memory holds its own data (the page store covers device pfns), so there is no backing
 *   system page per device page; zone_device_data names the open (dmirror) that migrated the page;
 * - free device pages are handed out lowest pfn first (base/free_frames.ts), as a buddy allocator such
 *   as amdgpu's drm_buddy does, where test_hmm.c keeps a last-freed-first list;
 * - `freed` (cfree) counts every page freed, also those of a chunk being removed, which test_hmm.c does
 *   not count, so that usedPages stays the number of pages in use;
 * - a pfn range given back by HMM_DMIRROR_RELEASE is never handed out again (request_free_mem_region
 *   may reuse it); new chunks get new pfns;
 * - a device-coherent device (memoryType MEMORY_DEVICE_COHERENT) adds 2 MiB chunks up to its limit as a
 *   private one does, where test_hmm.c maps the one DEVMEM_CHUNK_SIZE range that spm_addr_devN names
 *   (its second dmirror_allocate_chunk would memremap the same range again and fail). Its pages hold
 *   their data themselves, as test_hmm.c's do (BACKING_PAGE is the page), so the difference is again
 *   only where chunks begin.
 */

import { assert } from "../base/assert.js";
import { ENOMEM } from "../base/errno.js";
import { FreeFrames } from "../base/free_frames.js";
import { trylockPage } from "../mm/filemap.js";
import { kasanCheckPage } from "../mm/kasan.js";
import {
  type DevPagemap,
  MEMORY_DEVICE_PRIVATE,
  type MemoryType,
  memremapPages,
  memunmapPages,
  PAGEMAPS_MAX,
  type VmFault,
  zoneDevicePageInit,
} from "../mm/memremap.js";
import {
  type MigrateContext,
  migrateDeviceFinalize,
  migrateDevicePages,
  migrateDeviceRange,
} from "../mm/migrate_device.js";
import {
  hasFlag,
  MIGRATE_VMA_SELECT_DEVICE_COHERENT,
  MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
  migratePfn,
  migratePfnToPfn,
} from "../mm/migrate_pfn.js";
import { Lock } from "../sched/locks.js";
import type { Kfn } from "../sched/thread.js";
import type { CopyEngine } from "./copy_engine.js";
import type { Dmirror } from "./dmirror.js";

/** Device pages per chunk: 2 MiB (test_hmm.c's DEVMEM_CHUNK_SIZE is 256 MiB; see the header). */
export const DEVMEM_CHUNK_PAGES = 512;

/**
 * The behaviour of the dmirror driver where lib/test_hmm.c has a defect: false (the default) keeps
 * test_hmm.c's, true gives a corrected driver. Set with SystemOptions.dmirror.
 */
export interface DmirrorSwitches {
  /**
   * false (test_hmm.c): dmirror_interval_invalidate returns at once for MMU_NOTIFY_MIGRATE whose owner
   * is the device, in every open of the device, without mmu_interval_set_seq. That opens three windows
   * under "modern": (a) a WRITE through the same open while it migrates the range to the device stores
   * into the source page after dmirror_migrate_alloc_and_copy copied it, and the write is lost; (b) a
   * second open of the device keeps mirroring the source page after another open migrated it, so its
   * READ returns a freed frame and its WRITE corrupts whoever gets the frame next; (c) a READ whose
   * hmm_range_fault ran before collect passes mmu_interval_read_retry and mirrors the page being
   * migrated away. true: every open, the migrating one included, invalidates its own migrations as
   * any other event, erasing its entries and moving the sequence before collect changes a PTE, so no
   * mirror entry is left over a page being migrated (a, b) and a racing READ retries (c); the
   * migrating open maps the destination pages again in finalize_and_map, as it always does.
   *
   * A fourth window, under both "4.14" and "modern", does not come from the skip: (d)
   * dmirror_migrate_finalize_and_map mirrors every page that moved without asking whether an
   * invalidation ran since collect. MADV_DONTNEED takes mmap_lock for read, as the migration does, so
   * it can zap the range's migration entries in between; dmirror_interval_invalidate erases the
   * entries (there are none yet), finalize_and_map then mirrors the destination pages, and
   * migrate_vma_finalize, finding no migration entry to replace, frees them: the mirror keeps a freed
   * device page. true also closes it: an invalidation by another thread that overlaps a chunk this
   * open is migrating to the device (noted in dmirror_interval_invalidate) makes its finalize_and_map
   * mirror none of that chunk, whose read-back then fails with -ENOENT.
   */
  readonly invalidateOnOwnMigration: boolean;
  /**
   * false (test_hmm.c): dmirror_fault returns 0 when mmget_not_zero fails (the mm the file mirrors has
   * exited, and a file inherited across fork outlived it), so dmirror_read and dmirror_write retry
   * dmirror_do_read/do_write forever: the exit erased every mirror entry and nothing can fault one in.
   * hmmsim stops such a command with DmirrorLivelockError. true: dmirror_fault returns -EINVAL, as every
   * other command does through its own mmget_not_zero.
   */
  readonly faultFailsWithoutMm: boolean;
  /**
   * false (test_hmm.c): dmirror_exclusive calls make_device_exclusive with no owner and then
   * dmirror_atomic_map stores the atomic entry without asking whether an invalidation ran in between.
   * MADV_DONTNEED takes mmap_lock for read, as dmirror_exclusive does, so it can zap the new
   * device-exclusive entry first (zap takes no page lock); its invalidation finds no mirror entry to
   * erase, the atomic entry is stored after it, and the mirror keeps a page the CPU no longer maps,
   * which is freed once dmirror_exclusive puts it. true: the nouveau pattern (nouveau_atomic_range_fault)
   * — mmu_interval_read_begin before make_device_exclusive, this open as its owner (nouveau passes its
   * drm device; an open is what a dmirror mirrors through), whose own MMU_NOTIFY_EXCLUSIVE the
   * invalidate callback skips without moving the sequence, and mmu_interval_read_retry under the mutex
   * before the store, which starts the page again when it fails. Like nouveau's, that retry cannot
   * succeed while the page still holds the entry this command made: GUP faults it back, with an
   * owner-less MMU_NOTIFY_CLEAR that moves the sequence again. The command then gives up with -EBUSY
   * after RETRY_ATTEMPTS_MAX attempts (nouveau's one-second timeout), and so does an EXCLUSIVE over
   * pages that are already device-exclusive.
   */
  readonly exclusiveRechecks: boolean;
}

/** test_hmm.c's behaviour. */
export const TEST_HMM_SWITCHES: DmirrorSwitches = {
  invalidateOnOwnMigration: false,
  faultFailsWithoutMm: false,
  exclusiveRechecks: false,
};

/** struct dmirror_device: one device's private memory, its chunks and its free list. */
export class DmirrorDevice {
  /** The chunks in service (devmem_chunks), in the order they were added. */
  readonly chunks: DevPagemap[] = [];
  private freePages = new FreeFrames();
  /** Pagemap ids of chunks being removed (dmirror_chunk.remove): their freed pages are not reused. */
  private readonly removing = new Set<number>();
  /** devmem_lock: serialises adding chunks with removing them. */
  readonly devmemLock: Lock;
  /** Opens by id, for migrate_to_ram (zone_device_data names the one that migrated a page). */
  readonly mirrors = new Map<number, Dmirror>();
  private nextMirrorId = 1;
  /** Pages allocated and freed over the device's life (calloc/cfree). */
  allocated = 0;
  freed = 0;

  constructor(
    readonly ctx: MigrateContext,
    readonly minor: number,
    /** The most device memory in pages; chunks are added up to this. */
    readonly limitPages: number,
    readonly copier: CopyEngine,
    readonly switches: DmirrorSwitches = TEST_HMM_SWITCHES,
    /**
     * mdevice->zone_device_type: MEMORY_DEVICE_PRIVATE (test_hmm.c's devices 0 and 1) or
     * MEMORY_DEVICE_COHERENT (devices 2 and 3, which test_hmm.c creates when its spm_addr_dev0 and
     * spm_addr_dev1 parameters name CPU-addressable memory for them).
     */
    readonly memoryType: MemoryType = MEMORY_DEVICE_PRIVATE,
  ) {
    assert(Number.isSafeInteger(limitPages) && limitPages > 0, "a device needs memory", () =>
      String(limitPages),
    );
    this.devmemLock = new Lock(ctx.k.sched, `dmirror ${minor} devmem_lock`);
    // dmirror_device_init: "Build a list of free ZONE_DEVICE struct pages", one chunk before first use.
    assert(this.addChunk(), "the first chunk fits in any limit");
  }

  /** dmirror_is_private_zone. */
  get isPrivate(): boolean {
    return this.memoryType === MEMORY_DEVICE_PRIVATE;
  }

  /** dmirror_select_device: the MIGRATE_VMA_SELECT_* flag that collects this device's own pages. */
  get selectOwnPages(): number {
    return this.isPrivate ? MIGRATE_VMA_SELECT_DEVICE_PRIVATE : MIGRATE_VMA_SELECT_DEVICE_COHERENT;
  }

  /** Device pages allocated and not yet freed. */
  get usedPages(): number {
    return this.allocated - this.freed;
  }

  /** Pages of the chunks in service. */
  get mappedPages(): number {
    return this.chunks.reduce((sum, chunk) => sum + chunk.pages, 0);
  }

  /** Whether pfn is on the free list (for the checker). */
  isFreePage(pfn: number): boolean {
    return this.freePages.has(pfn);
  }

  /** Whether pfn's chunk is being removed by HMM_DMIRROR_RELEASE (its freed pages are not reused). */
  isRemoving(pgmapId: number): boolean {
    return this.removing.has(pgmapId);
  }

  /** Records a mirror (one open of the device) and returns the id it is known by. */
  registerMirror(mirror: Dmirror): number {
    const id = this.nextMirrorId++;
    this.mirrors.set(id, mirror);
    return id;
  }

  /**
   * Drops a released open from the registry unless a device page in use still names it (kfree(dmirror)
   * in dmirror_fops_release; a page that eviction could not take keeps its open findable, see release).
   */
  forgetMirror(mirror: Dmirror): void {
    const pages = this.ctx.k.pages;
    for (const chunk of this.chunks) {
      for (let pfn = chunk.startPfn; pfn < chunk.endPfn; pfn++)
        if (pages.refcount[pfn] !== 0 && pages.zoneDeviceData[pfn] === mirror.id) return;
    }
    this.mirrors.delete(mirror.id);
    this.ctx.k.sched.untrackLocks(mirror.mutex);
  }

  /** The memremap and free-list half of dmirror_allocate_chunk; false when the limit is reached. */
  private addChunk(): boolean {
    const pages = Math.min(DEVMEM_CHUNK_PAGES, this.limitPages - this.mappedPages);
    if (pages <= 0 || this.ctx.pagemaps.list.length >= PAGEMAPS_MAX) return false;
    const pgmap = memremapPages(this.ctx.k, this.ctx.pagemaps, this.memoryType, pages, this, {
      pageFree: (pfn) => this.devmemFree(pfn),
      migrateToRam: (vmf) => this.devmemFault(vmf),
    });
    this.chunks.push(pgmap);
    this.freePages.grow(pgmap.endPfn);
    this.freePages.addRange(pgmap.startPfn, pgmap.endPfn);
    return true;
  }

  /**
   * The fast half of dmirror_devmem_alloc_page: a free page of a chunk in service, locked with one
   * reference, or -1 when the free list is empty (then allocPageSlow adds a chunk). Never sleeps.
   */
  tryAllocPage(): number {
    if (this.freePages.size === 0) return -1;
    const pfn = this.freePages.takeLowest();
    zoneDevicePageInit(this.ctx.k, this.ctx.pagemaps, pfn);
    this.allocated++;
    return pfn;
  }

  /**
   * dmirror_devmem_alloc_page with an empty free list: dmirror_allocate_chunk adds a chunk under
   * devmem_lock (so it waits for a HMM_DMIRROR_RELEASE in progress) and hands out one of its pages; -1
   * when the device's memory limit is reached. Like test_hmm.c it does not look at the free list again
   * after taking the lock, so two threads that both found it empty add two chunks.
   */
  *allocPageSlow(): Kfn<number> {
    yield* this.devmemLock.lock();
    const added = this.addChunk();
    this.devmemLock.unlock();
    return added ? this.tryAllocPage() : -1;
  }

  /** dmirror_devmem_free (dev_pagemap_ops.folio_free): back to the free list unless its chunk goes. */
  private devmemFree(pfn: number): void {
    this.ctx.k.pages.zoneDeviceData[pfn] = 0;
    this.freed++;
    if (this.removing.has(this.ctx.k.pages.pgmapId[pfn]!)) return;
    this.freePages.add(pfn);
  }

  /**
   * dmirror_devmem_fault (dev_pagemap_ops.migrate_to_ram): the open that migrated the page moves it. Only
   * device-private pages fault: the CPU maps device-coherent pages directly.
   */
  private *devmemFault(vmf: VmFault): Kfn<number> {
    assert(this.isPrivate, "migrate_to_ram on device-coherent memory", () =>
      this.ctx.k.pages.describe(vmf.page),
    );
    // The dmirror is found through the fault page (page->zone_device_data), which only the fault
    // path's reference keeps alive (16ce101db85d): without it the page may be free by now.
    kasanCheckPage(this.ctx.k, vmf.page, "dmirror_devmem_fault: reads page->zone_device_data");
    const owner = this.mirrors.get(this.ctx.k.pages.zoneDeviceData[vmf.page]!);
    assert(owner !== undefined, "device page with no dmirror", () => this.ctx.k.pages.describe(vmf.page));
    return yield* owner.migrateToRam(vmf);
  }

  /**
   * dmirror_device_evict_chunk: migrate_device_range over the chunk, a RAM page and a copy for each page
   * collected, migrate_device_pages, migrate_device_finalize. Returns the pages moved, and how many
   * could not get a RAM page. The kernel's allocation cannot fail (__GFP_NOFAIL: it reclaims and
   * OOM-kills until it succeeds); hmmsim's RAM has no reclaim, so that page stays on the device.
   */
  *evictChunk(chunk: DevPagemap): Kfn<{ moved: number; unallocated: number }> {
    const k = this.ctx.k;
    const L = this.ctx.layout;
    let moved = 0;
    let unallocated = 0;
    const src = new Float64Array(chunk.pages);
    const dst = new Float64Array(chunk.pages);
    yield* migrateDeviceRange(this.ctx, src, chunk.startPfn, chunk.pages);
    for (let i = 0; i < chunk.pages; i++) {
      const spfn = migratePfnToPfn(L, src[i]!);
      if (spfn < 0 || !hasFlag(src[i]!, L.MIGRATE)) continue;
      const dpfn = k.ram.allocPage();
      if (dpfn < 0) {
        unallocated++;
        continue;
      }
      assert(trylockPage(k, dpfn), "a fresh page is unlocked");
      this.copier.copyPage(dpfn, spfn);
      dst[i] = migratePfn(L, dpfn) + (hasFlag(src[i]!, L.WRITE) ? L.WRITE : 0);
      moved++;
    }
    yield* migrateDevicePages(this.ctx, src, dst, chunk.pages);
    yield* migrateDeviceFinalize(this.ctx, src, dst, chunk.pages);
    return { moved, unallocated };
  }

  /**
   * The eviction loop of dmirror_fops_release: every chunk of the device, whoever migrated its pages.
   * test_hmm.c reads the chunk list without devmem_lock; hmmsim walks a copy and skips a chunk that a
   * concurrent HMM_DMIRROR_RELEASE is removing.
   */
  *evictAll(): Kfn<number> {
    let moved = 0;
    for (const chunk of [...this.chunks]) if (!chunk.killed) moved += (yield* this.evictChunk(chunk)).moved;
    return moved;
  }

  /**
   * dmirror_device_remove_chunks (HMM_DMIRROR_RELEASE): under devmem_lock, for each chunk: mark it
   * removed and drop its free pages, evict it, memunmap_pages (which sleeps until every page of it has
   * been freed), free it. The device is left with no chunk; the next allocation adds a new one.
   *
   * Deliberate difference: when RAM cannot take a page the eviction collected (where the kernel's
   * __GFP_NOFAIL allocation would OOM-kill until it could), memunmap_pages would wait for that page
   * for ever; hmmsim keeps that chunk and the ones after it in service and returns -ENOMEM.
   */
  *removeChunks(): Kfn<number> {
    yield* this.devmemLock.lock();
    let ret = 0;
    const removed = new Set<DevPagemap>();
    // Bounded by the chunks present: none can be added while devmem_lock is held.
    for (const chunk of [...this.chunks]) {
      this.removing.add(chunk.id);
      this.dropFreePages(chunk);
      const { unallocated } = yield* this.evictChunk(chunk);
      if (unallocated > 0) {
        this.removing.delete(chunk.id);
        this.restoreFreePages(chunk);
        ret = -ENOMEM;
        break;
      }
      yield* memunmapPages(this.ctx.k, chunk);
      this.removing.delete(chunk.id);
      removed.add(chunk);
    }
    // The removed chunks' free pages left the free list with dropFreePages, and their freed pages never
    // went back to it (devmemFree), so the list holds only the chunks kept.
    const kept = this.chunks.filter((chunk) => !removed.has(chunk));
    this.chunks.length = 0;
    this.chunks.push(...kept);
    this.devmemLock.unlock();
    return ret;
  }

  /** Undoes dropFreePages for a chunk that stays in service: its free pages are on the list again. */
  private restoreFreePages(chunk: DevPagemap): void {
    const pages = this.ctx.k.pages;
    for (let pfn = chunk.startPfn; pfn < chunk.endPfn; pfn++)
      if (pages.refcount[pfn] === 0 && !this.freePages.has(pfn)) this.freePages.add(pfn);
  }

  /** dmirror_remove_free_pages: takes the chunk's free pages off the free list (once per RELEASE). */
  private dropFreePages(chunk: DevPagemap): void {
    const kept: number[] = [];
    // Bounded by the free pages: each pass takes one.
    for (let pfn = this.freePages.takeLowest(); pfn >= 0; pfn = this.freePages.takeLowest()) {
      if (!chunk.contains(pfn)) kept.push(pfn);
    }
    for (const pfn of kept) this.freePages.add(pfn);
  }
}
