/**
 * dmirror, the reference device (lib/test_hmm.c): a device whose memory is ZONE_DEVICE private pages,
 * with a page table that mirrors a process through an mmu interval notifier, and the commands of
 * lib/test_hmm_uapi.h. It uses only what a real driver can: the exported mm API and its callbacks.
 *
 * Deliberate differences from test_hmm.c:
 * - device memory holds its own data (the page store covers device pfns), so there is no hidden
 *   backing system page per device page; zone_device_data names the dmirror that migrated the page;
 * - device memory has a size: chunks are added until it is used up, then allocation fails;
 * - free device pages are handed out lowest pfn first (base/free_frames.ts), as a buddy allocator such
 *   as amdgpu's drm_buddy does, where test_hmm.c keeps a last-freed-first list. Neither the uapi nor the
 *   hmm-tests can see the order; the bytes store can, since device frames are host memory and copies
 *   that walk it downwards run at little more than half the speed (`npm run bench` measures both);
 * - a chunk's copies are queued in a CopyBatch while its pages are allocated and run in one pass, as a
 *   DMA engine's descriptor list is, where test_hmm.c copies each page as it allocates it;
 * - under "seed" and "4.14" the driver migrates through migrate_vma() and its callbacks (test_hmm.c
 *   did not exist then); under "modern" through migrate_vma_setup/pages/finalize as test_hmm.c does;
 * - no THP, no device-coherent memory, no EXCLUSIVE or RELEASE commands yet.
 */
import { assert } from "../base/assert.js";
import { EINVAL, ENOENT, ENOMEM, KernelError } from "../base/errno.js";
import { FreeFrames } from "../base/free_frames.js";
import { asVpn, PAGE_SIZE, TASK_SIZE } from "../base/units.js";
import { trylockPage, unlockPage } from "../mm/filemap.js";
import {
  HMM_PFN_ERROR,
  HMM_PFN_REQ_FAULT,
  HMM_PFN_REQ_WRITE,
  HMM_PFN_VALID,
  HMM_PFN_WRITE,
  type HmmRange,
  hmmPfnFlags,
  hmmPfnToPfn,
  hmmRangeFault,
} from "../mm/hmm.js";
import { VM_FAULT_OOM, VM_FAULT_SIGBUS } from "../mm/memory.js";
import {
  type DevPagemap,
  MEMORY_DEVICE_PRIVATE,
  memremapPages,
  type VmFault,
  zoneDevicePageInit,
} from "../mm/memremap.js";
import {
  type MigrateContext,
  type MigrateVmaArgs,
  migrateDeviceFinalize,
  migrateDevicePages,
  migrateDeviceRange,
  migrateVmaFinalize,
  migrateVmaPages,
  migrateVmaSetup,
} from "../mm/migrate_device.js";
import {
  hasFlag,
  MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
  MIGRATE_VMA_SELECT_SYSTEM,
  migratePfn,
  migratePfnToPfn,
} from "../mm/migrate_pfn.js";
import { type MigrateVmaOps, migrateVma } from "../mm/migrate_vma.js";
import { type MmStruct, VM_READ, type Vma } from "../mm/mm_types.js";
import {
  MMU_NOTIFY_MIGRATE,
  type MmuIntervalNotifier,
  type MmuNotifierRange,
  mmuIntervalNotifierInsert,
  mmuIntervalNotifierRemove,
  mmuIntervalReadBegin,
  mmuIntervalReadRetry,
  mmuIntervalSetSeq,
} from "../mm/mmu_notifier.js";
import { ZERO_PFN } from "../mm/page_alloc.js";
import { Lock } from "../sched/locks.js";
import type { Kfn } from "../sched/thread.js";
import { CopyBatch, type CopyEngine } from "./copy_engine.js";
import { DeviceTable } from "./device_table.js";

/** HMM_DMIRROR_PROT_* snapshot codes (test_hmm_uapi.h). */
export const HMM_DMIRROR_PROT_ERROR = 0xff;
export const HMM_DMIRROR_PROT_NONE = 0x00;
export const HMM_DMIRROR_PROT_READ = 0x01;
export const HMM_DMIRROR_PROT_WRITE = 0x02;
export const HMM_DMIRROR_PROT_PMD = 0x04;
export const HMM_DMIRROR_PROT_PUD = 0x08;
export const HMM_DMIRROR_PROT_ZERO = 0x10;
export const HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL = 0x20;
export const HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE = 0x30;
/** HMM_DMIRROR_FLAG_FAIL_ALLOC: the next device or system page allocation of a migration fails, once. */
export const HMM_DMIRROR_FLAG_FAIL_ALLOC = 1;

/** Device pages added per chunk (DEVMEM_CHUNK_SIZE is 256 MiB). */
const DEVMEM_CHUNK_PAGES = 65536;
/** Pages per hmm_range_fault call in dmirror_fault and dmirror_snapshot. */
const FAULT_CHUNK_PAGES = 32;
/** Pages per migrate_vma call (PTRS_PER_PTE). */
const MIGRATE_CHUNK_PAGES = 512;
/** Device page-table tags. */
const DPT_XA_TAG_WRITE = 3;

/** The result of one dmirror command (struct hmm_dmirror_cmd's outputs). */
export interface DmirrorResult {
  cpages: number;
  faults: number;
}

/** The src and dst arrays of a migration command and its list of copies, sized for its largest chunk. */
interface ChunkBuffers {
  readonly src: Float64Array;
  readonly dst: Float64Array;
  readonly copies: CopyBatch;
}

function chunkBuffers(npages: number): ChunkBuffers {
  const length = Math.max(1, Math.min(npages, MIGRATE_CHUNK_PAGES));
  return { src: new Float64Array(length), dst: new Float64Array(length), copies: new CopyBatch(length) };
}

/** A mirror entry: pfn * 4 + tag (0 read-only, 3 writable). */
function entryPfn(entry: number): number {
  return Math.floor(entry / 4);
}
function entryWritable(entry: number): boolean {
  return entry % 4 === DPT_XA_TAG_WRITE;
}

/** struct dmirror_device: one device's private memory and its free list. */
export class DmirrorDevice {
  readonly chunks: DevPagemap[] = [];
  private readonly freePages = new FreeFrames();
  /** Open mirrors by id, for migrate_to_ram (zone_device_data names the one that migrated a page). */
  readonly mirrors = new Map<number, Dmirror>();
  private nextMirrorId = 1;
  /** Pages allocated and freed over the device's life (calloc/cfree). */
  allocated = 0;
  freed = 0;

  constructor(
    readonly ctx: MigrateContext,
    readonly minor: number,
    /** Device memory in pages; chunks are added up to this. */
    readonly capacityPages: number,
    readonly copier: CopyEngine,
  ) {
    assert(capacityPages > 0, "a device needs memory", () => String(capacityPages));
  }

  get usedPages(): number {
    return this.allocated - this.freed;
  }

  get mappedPages(): number {
    return this.chunks.reduce((sum, chunk) => sum + chunk.pages, 0);
  }

  registerMirror(mirror: Dmirror): number {
    const id = this.nextMirrorId++;
    this.mirrors.set(id, mirror);
    return id;
  }

  /** dmirror_allocate_chunk: memremap another chunk of private memory, if capacity remains. */
  private allocateChunk(): boolean {
    const pages = Math.min(DEVMEM_CHUNK_PAGES, this.capacityPages - this.mappedPages);
    if (pages <= 0) return false;
    const pgmap = memremapPages(this.ctx.k, this.ctx.pagemaps, MEMORY_DEVICE_PRIVATE, pages, this, {
      pageFree: (pfn) => this.devmemFree(pfn),
      migrateToRam: (vmf) => this.devmemFault(vmf),
    });
    this.chunks.push(pgmap);
    this.freePages.grow(pgmap.endPfn);
    this.freePages.addRange(pgmap.startPfn, pgmap.endPfn);
    return true;
  }

  /** dmirror_devmem_alloc_page: a locked device page with one reference, or -1. */
  allocPage(): number {
    if (this.freePages.size === 0 && !this.allocateChunk()) return -1;
    const pfn = this.freePages.takeLowest();
    zoneDevicePageInit(this.ctx.k, pfn);
    this.allocated++;
    return pfn;
  }

  /** dmirror_devmem_free (dev_pagemap_ops.page_free). */
  private devmemFree(pfn: number): void {
    this.ctx.k.pages.zoneDeviceData[pfn] = 0;
    this.freed++;
    this.freePages.add(pfn);
  }

  /** dmirror_devmem_fault (dev_pagemap_ops.migrate_to_ram): moves the faulting page back to RAM. */
  private *devmemFault(vmf: VmFault): Kfn<number> {
    const owner = this.mirrors.get(this.ctx.k.pages.zoneDeviceData[vmf.page]!);
    assert(owner !== undefined, "device page with no dmirror", () => this.ctx.k.pages.describe(vmf.page));
    return yield* owner.migrateToRam(vmf);
  }

  /**
   * Evicts every in-use page of the device to RAM (dmirror_device_evict_chunk, run when a mirror
   * closes): migrate_device_range, copy, migrate_device_pages, migrate_device_finalize.
   */
  *evictAll(): Kfn<number> {
    const k = this.ctx.k;
    const L = this.ctx.layout;
    let moved = 0;
    for (const chunk of this.chunks) {
      const src = new Float64Array(chunk.pages);
      const dst = new Float64Array(chunk.pages);
      yield* migrateDeviceRange(this.ctx, src, chunk.startPfn, chunk.pages);
      for (let i = 0; i < chunk.pages; i++) {
        const spfn = migratePfnToPfn(L, src[i]!);
        if (spfn < 0 || !hasFlag(src[i]!, L.MIGRATE)) continue;
        const dpfn = k.ram.allocPage();
        if (dpfn < 0) continue;
        assert(trylockPage(k, dpfn), "a fresh page is unlocked");
        this.copier.copyPage(dpfn, spfn);
        dst[i] = migratePfn(L, dpfn) + (hasFlag(src[i]!, L.WRITE) ? L.WRITE : 0);
        moved++;
      }
      yield* migrateDevicePages(this.ctx, src, dst, chunk.pages);
      yield* migrateDeviceFinalize(this.ctx, src, dst, chunk.pages);
    }
    return moved;
  }
}

/** One open of the device by a process (struct dmirror): its mirror page table and notifier. */
export class Dmirror {
  readonly id: number;
  /** The device page table: vpn → entry (see entryPfn). Holds no page references. */
  readonly pt = new DeviceTable();
  readonly mutex: Lock;
  readonly notifier: MmuIntervalNotifier;
  flags = 0;
  closed = false;

  constructor(
    readonly device: DmirrorDevice,
    readonly mm: MmStruct,
  ) {
    this.id = device.registerMirror(this);
    const k = device.ctx.k;
    this.mutex = new Lock(k.sched, `dmirror ${device.minor} mutex`);
    this.notifier = mmuIntervalNotifierInsert(mm, asVpn(0), asVpn(TASK_SIZE / PAGE_SIZE), {
      invalidate: (sub, range, curSeq) => this.invalidate(sub, range, curSeq),
    });
  }

  private get ctx(): MigrateContext {
    return this.device.ctx;
  }

  /** dmirror_interval_invalidate: drop mirror entries, except for our own device's migrations. */
  private *invalidate(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): Kfn<boolean> {
    if (range.event === MMU_NOTIFY_MIGRATE && range.owner === this.device) return true;
    yield* this.mutex.lock();
    mmuIntervalSetSeq(sub, curSeq);
    this.doUpdate(range.start, range.end);
    this.mutex.unlock();
    return true;
  }

  /**
   * dmirror_do_update: erases entries in [start, end]. test_hmm.c's xa_for_each_range is inclusive of
   * its last index, so one page past the range goes too; hmmsim keeps that.
   */
  private doUpdate(start: number, end: number): void {
    this.pt.deleteRange(start, end + 1);
  }

  /** Consumes the one-shot FAIL_ALLOC flag: true when this allocation must fail. */
  private failAlloc(): boolean {
    if ((this.flags & HMM_DMIRROR_FLAG_FAIL_ALLOC) === 0) return false;
    this.flags &= ~HMM_DMIRROR_FLAG_FAIL_ALLOC;
    return true;
  }

  // -------------------------------------------------------------------------------------------------
  // Faulting pages into the mirror (dmirror_fault, dmirror_range_fault, dmirror_do_fault).

  private *rangeFault(range: HmmRange): Kfn<number> {
    const k = this.ctx.k;
    // Bounded like test_hmm.c's one-second timeout: each retry follows an invalidation.
    for (let attempt = 0; attempt < 1000; attempt++) {
      range.notifierSeq = yield* mmuIntervalReadBegin(k, this.notifier);
      yield* this.mm.mmapLock.downRead();
      const ret = yield* hmmRangeFault(this.ctx, this.mm, range);
      this.mm.mmapLock.upRead();
      if (ret === -16) continue; // -EBUSY
      if (ret !== 0) return ret;
      yield* this.mutex.lock();
      if (mmuIntervalReadRetry(this.notifier, range.notifierSeq)) {
        this.mutex.unlock();
        continue;
      }
      const result = this.doFault(range);
      this.mutex.unlock();
      return result;
    }
    return -16;
  }

  private doFault(range: HmmRange): number {
    for (let vpn = range.start; vpn < range.end; vpn++) {
      const word = range.hmmPfns[vpn - range.start]!;
      const flags = hmmPfnFlags(word);
      // test_hmm.c only WARNs here: a successful faulting hmm_range_fault never reports these.
      assert((flags & HMM_PFN_ERROR) === 0 && (flags & HMM_PFN_VALID) !== 0, "faulted entry not valid", () =>
        String(word),
      );
      const write = (flags & HMM_PFN_WRITE) !== 0;
      if (!write && (range.defaultFlags & HMM_PFN_REQ_WRITE) !== 0) return -14;
      this.pt.set(vpn, hmmPfnToPfn(word) * 4 + (write ? DPT_XA_TAG_WRITE : 0));
    }
    return 0;
  }

  private *fault(start: number, end: number, write: boolean): Kfn<number> {
    const pfns = new Float64Array(FAULT_CHUNK_PAGES);
    for (let addr = start; addr < end; addr += FAULT_CHUNK_PAGES) {
      const next = Math.min(end, addr + FAULT_CHUNK_PAGES);
      const range: HmmRange = {
        notifier: this.notifier,
        notifierSeq: 0,
        start: addr,
        end: next,
        hmmPfns: pfns,
        defaultFlags: HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0),
        pfnFlagsMask: 0,
        devPrivateOwner: this.device,
      };
      const ret = yield* this.rangeFault(range);
      if (ret !== 0) return ret;
    }
    return 0;
  }

  // -------------------------------------------------------------------------------------------------
  // READ and WRITE.

  /** dmirror_do_read / do_write: copy while every page is mirrored; -ENOENT at the first that is not. */
  private transfer(
    start: number,
    end: number,
    write: boolean,
    visit: (pfn: number, index: number) => void,
    done: { cpages: number },
    first: number,
  ): number {
    for (let vpn = start; vpn < end; vpn++) {
      const entry = this.pt.get(vpn);
      if (entry < 0 || (write && !entryWritable(entry))) return -ENOENT;
      visit(entryPfn(entry), vpn - first);
      done.cpages++;
    }
    return 0;
  }

  private *readOrWrite(
    vpn: number,
    npages: number,
    write: boolean,
    visit: (pfn: number, index: number) => void,
  ): Kfn<DmirrorResult | number> {
    const end = vpn + npages;
    const done = { cpages: 0 };
    let faults = 0;
    // Each pass either completes, fails, or faults the rest in; bounded by invalidations racing it.
    for (let pass = 0; pass < 10_000; pass++) {
      yield* this.mutex.lock();
      const ret = this.transfer(vpn + done.cpages, end, write, visit, done, vpn);
      this.mutex.unlock();
      if (ret !== -ENOENT) return ret === 0 ? { cpages: done.cpages, faults } : ret;
      const fret = yield* this.fault(vpn + done.cpages, end, write);
      if (fret !== 0) return fret;
      faults++;
    }
    return -16;
  }

  /** HMM_DMIRROR_READ: copies npages from the mirror into `into` (bytes store), faulting as needed. */
  *cmdRead(
    vpn: number,
    npages: number,
    into: Uint8Array | null,
    words: Uint32Array,
  ): Kfn<DmirrorResult | number> {
    const store = this.ctx.k.store;
    return yield* this.readOrWrite(vpn, npages, false, (pfn, index) => {
      words[index] = store.word(pfn);
      if (into !== null) store.readBytes(pfn, 0, into, index * PAGE_SIZE, PAGE_SIZE);
    });
  }

  /** HMM_DMIRROR_WRITE: copies `from` into the range through the mirror, faulting for write. */
  *cmdWrite(vpn: number, npages: number, from: Uint8Array): Kfn<DmirrorResult | number> {
    const store = this.ctx.k.store;
    return yield* this.readOrWrite(vpn, npages, true, (pfn, index) => {
      store.writeBytes(pfn, 0, from, index * PAGE_SIZE, PAGE_SIZE);
    });
  }

  // -------------------------------------------------------------------------------------------------
  // Migration to the device.

  /** dmirror_migrate_alloc_and_copy: a device page for each system page or empty entry collected. */
  private allocAndCopyToDevice(
    src: Float64Array,
    dst: Float64Array,
    npages: number,
    copies: CopyBatch,
  ): void {
    const k = this.ctx.k;
    const L = this.ctx.layout;
    for (let i = 0; i < npages; i++) {
      const s = src[i]!;
      if (!hasFlag(s, L.MIGRATE)) continue;
      const spfn = migratePfnToPfn(L, s);
      if (spfn >= 0 && k.pages.isZoneDevice(spfn)) continue;
      if (this.failAlloc()) continue;
      const dpfn = this.device.allocPage();
      if (dpfn < 0) continue;
      if (spfn >= 0) copies.add(dpfn, spfn);
      else this.device.copier.zeroPage(dpfn);
      k.pages.zoneDeviceData[dpfn] = this.id;
      dst[i] = migratePfn(L, dpfn) + L.LOCKED + L.DEVICE + (hasFlag(s, L.WRITE) ? L.WRITE : 0);
    }
    this.device.copier.copyPages(copies);
  }

  /**
   * dmirror_migrate_finalize_and_map: mirror each page that moved, writable iff dst says so.
   *
   * Under "4.14" collect selects device-private pages of any owner and brackets itself with an
   * owner-less MMU_NOTIFY_CLEAR, which erased our mirror entries for the pages of the range that are
   * already on this device; they stay where they are (no dst), so map them again here, as a driver of
   * that era had to. Modern collect never selects them (SELECT_SYSTEM) and skips our own invalidation.
   */
  private *finalizeAndMapToDevice(
    src: Float64Array,
    dst: Float64Array,
    start: number,
    npages: number,
  ): Kfn<void> {
    const L = this.ctx.layout;
    const k = this.ctx.k;
    yield* this.mutex.lock();
    for (let i = 0; i < npages; i++) {
      const spfn = migratePfnToPfn(L, src[i]!);
      if (spfn >= 0 && k.pages.isZoneDevice(spfn) && this.ctx.pagemaps.of(spfn).owner === this.device) {
        this.pt.set(start + i, spfn * 4 + (hasFlag(src[i]!, L.WRITE) ? DPT_XA_TAG_WRITE : 0));
        continue;
      }
      if (!hasFlag(src[i]!, L.MIGRATE)) continue;
      const dpfn = migratePfnToPfn(L, dst[i]!);
      if (dpfn < 0) continue;
      this.pt.set(start + i, dpfn * 4 + (hasFlag(dst[i]!, L.WRITE) ? DPT_XA_TAG_WRITE : 0));
    }
    this.mutex.unlock();
  }

  /**
   * Runs one chunk of a migration in the system's protocol version, with src and dst arrays of at least
   * end - start entries that the command allocated once for all its chunks, as test_hmm.c does.
   */
  private *migrateChunk(
    vma: Vma,
    start: number,
    end: number,
    toDevice: boolean,
    counted: { cpages: number },
    buffers: ChunkBuffers,
  ): Kfn<number> {
    const ctx = this.ctx;
    const L = ctx.layout;
    const npages = end - start;
    assert(
      buffers.src.length >= npages,
      "chunk buffers too small",
      () => `${buffers.src.length} < ${npages}`,
    );
    const { src, dst, copies } = buffers;
    // The seed's collect_pmd never clears dst (only collect_hole does), and its finalize releases any
    // page dst names, so a driver of that era had to hand in a cleared dst for every call.
    dst.fill(0, 0, npages);
    const self = this;
    const countMoved = () => {
      for (let i = 0; i < npages; i++)
        if (hasFlag(src[i]!, L.VALID) && hasFlag(src[i]!, L.MIGRATE)) counted.cpages++;
    };
    if (ctx.migrate.protocol !== "modern") {
      let outOfMemory = false;
      const ops: MigrateVmaOps<null> = {
        *allocAndCopy() {
          if (toDevice) self.allocAndCopyToDevice(src, dst, npages, copies);
          else if ((yield* self.allocAndCopyToSystem(src, dst, start, npages, copies)) !== 0) {
            self.undoDst(dst, npages);
            outOfMemory = true;
          }
        },
        *finalizeAndMap() {
          if (toDevice) yield* self.finalizeAndMapToDevice(src, dst, start, npages);
          else countMoved();
        },
      };
      const ret = yield* migrateVma(ctx, ops, vma, start * PAGE_SIZE, end * PAGE_SIZE, src, dst, null);
      // migrate_vma() itself cannot fail a page; the driver reports what its callback could not do.
      return ret === 0 && outOfMemory ? -ENOMEM : ret;
    }
    const args: MigrateVmaArgs = {
      vma,
      start: start * PAGE_SIZE,
      end: end * PAGE_SIZE,
      src,
      dst,
      pgmapOwner: this.device,
      flags: toDevice ? MIGRATE_VMA_SELECT_SYSTEM : MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
    };
    const ret = yield* migrateVmaSetup(ctx, args);
    if (ret !== 0) return ret;
    if (toDevice) {
      this.allocAndCopyToDevice(src, dst, npages, copies);
      yield* migrateVmaPages(ctx, args);
      yield* this.finalizeAndMapToDevice(src, dst, start, npages);
    } else {
      if ((yield* this.allocAndCopyToSystem(src, dst, start, npages, copies)) !== 0) {
        this.undoDst(dst, npages);
        yield* migrateVmaFinalize(ctx, args);
        return -ENOMEM;
      }
      yield* migrateVmaPages(ctx, args);
      countMoved();
    }
    yield* migrateVmaFinalize(ctx, args);
    return 0;
  }

  /** Walks [vpn, vpn + npages) in chunks that stay inside one VMA; -EINVAL at a hole or unreadable VMA. */
  private *forEachChunk(
    vpn: number,
    npages: number,
    body: (vma: Vma, start: number, end: number) => Kfn<number>,
  ): Kfn<number> {
    const end = vpn + npages;
    yield* this.mm.mmapLock.downRead();
    try {
      for (let addr = vpn; addr < end; ) {
        const vma = this.mm.findVma(addr);
        if (vma === null || (vma.flags & VM_READ) === 0) return -EINVAL;
        const next = Math.min(end, addr + MIGRATE_CHUNK_PAGES, vma.end);
        const ret = yield* body(vma, addr, next);
        if (ret !== 0) return ret;
        addr = next;
      }
      return 0;
    } finally {
      this.mm.mmapLock.upRead();
    }
  }

  /** HMM_DMIRROR_MIGRATE_TO_DEV: migrate, then read the whole range back through the mirror. */
  *cmdMigrateToDevice(vpn: number, npages: number): Kfn<DmirrorResult | number> {
    const ignored = { cpages: 0 };
    const buffers = chunkBuffers(npages);
    const ret = yield* this.forEachChunk(vpn, npages, (vma, start, end) =>
      this.migrateChunk(vma, start, end, true, ignored, buffers),
    );
    if (ret !== 0) return ret;
    yield* this.mutex.lock();
    const cpages = this.pt.presentRun(vpn, npages);
    this.mutex.unlock();
    return cpages === npages ? { cpages, faults: 0 } : -ENOENT;
  }

  // -------------------------------------------------------------------------------------------------
  // Migration back to system memory.

  /**
   * dmirror_devmem_fault_alloc_and_copy: a RAM page for each device page collected, the copies queued
   * in `copies` and run at the end (or before an early return). Returns 0 or VM_FAULT_OOM.
   */
  private *allocAndCopyToSystem(
    src: Float64Array,
    dst: Float64Array,
    start: number,
    npages: number,
    copies: CopyBatch,
  ): Kfn<number> {
    const k = this.ctx.k;
    const L = this.ctx.layout;
    for (let i = 0; i < npages; i++) {
      const spfn = migratePfnToPfn(L, src[i]!);
      if (spfn < 0 || !hasFlag(src[i]!, L.MIGRATE)) continue;
      if (!k.pages.isZoneDevice(spfn)) continue;
      const dpfn = this.failAlloc() ? -1 : k.ram.allocPage();
      if (dpfn < 0) {
        // 4.14's convention for a device page that cannot come back: dst = MIGRATE_PFN_ERROR, and the
        // fault that wanted it gets SIGBUS. (ERROR lacks VALID, so the core restores the entry.)
        if (L.ERROR !== 0) dst[i] = L.ERROR;
        this.device.copier.copyPages(copies);
        return VM_FAULT_OOM;
      }
      assert(trylockPage(k, dpfn), "a fresh page is unlocked");
      // xa_erase: the notifier skipped this migration (its own owner), so the mirror entry goes here.
      // The xarray has its own lock; test_hmm.c does not take the dmirror mutex for it.
      this.pt.delete(start + i);
      copies.add(dpfn, spfn);
      dst[i] = migratePfn(L, dpfn) + L.LOCKED + (hasFlag(src[i]!, L.WRITE) ? L.WRITE : 0);
    }
    this.device.copier.copyPages(copies);
    return 0;
  }

  /**
   * After a failed allocation, releases the pages already placed in dst so that finalize restores
   * every entry to its source (test_hmm.c leaves them for finalize, which is only safe when the first
   * allocation is the one that fails).
   */
  private undoDst(dst: Float64Array, npages: number): void {
    const k = this.ctx.k;
    const L = this.ctx.layout;
    for (let i = 0; i < npages; i++) {
      const dpfn = migratePfnToPfn(L, dst[i]!);
      if (dpfn < 0) continue;
      unlockPage(k, dpfn);
      k.pages.put(dpfn);
      dst[i] = 0;
    }
  }

  /** HMM_DMIRROR_MIGRATE_TO_SYS: cpages counts this device's pages that moved back. */
  *cmdMigrateToSystem(vpn: number, npages: number): Kfn<DmirrorResult | number> {
    const counted = { cpages: 0 };
    const buffers = chunkBuffers(npages);
    const ret = yield* this.forEachChunk(vpn, npages, (vma, start, end) =>
      this.migrateChunk(vma, start, end, false, counted, buffers),
    );
    if (ret !== 0) return ret;
    return { cpages: counted.cpages, faults: 0 };
  }

  /** migrate_to_ram for a page this mirror migrated: one page, with the fault page (6.1+). */
  *migrateToRam(vmf: VmFault): Kfn<number> {
    const ctx = this.ctx;
    const buffers = chunkBuffers(1);
    const { src, dst } = buffers;
    if (ctx.migrate.protocol !== "modern") {
      const counted = { cpages: 0 };
      const ret = yield* this.migrateChunk(vmf.vma, vmf.vpn, vmf.vpn + 1, false, counted, buffers);
      return ret === 0 ? 0 : VM_FAULT_SIGBUS;
    }
    const args: MigrateVmaArgs = {
      vma: vmf.vma,
      start: vmf.vpn * PAGE_SIZE,
      end: (vmf.vpn + 1) * PAGE_SIZE,
      src,
      dst,
      pgmapOwner: this.device,
      flags: MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
      faultPage: vmf.page,
    };
    if ((yield* migrateVmaSetup(ctx, args)) !== 0) return VM_FAULT_SIGBUS;
    const ret = yield* this.allocAndCopyToSystem(src, dst, vmf.vpn, 1, buffers.copies);
    if (ret !== 0) {
      this.undoDst(dst, 1);
      yield* migrateVmaFinalize(ctx, args);
      return ret;
    }
    yield* migrateVmaPages(ctx, args);
    yield* migrateVmaFinalize(ctx, args);
    return 0;
  }

  // -------------------------------------------------------------------------------------------------
  // SNAPSHOT.

  /** dmirror_mkentry. */
  private mkEntry(word: number): number {
    const flags = hmmPfnFlags(word);
    if ((flags & HMM_PFN_ERROR) !== 0) return HMM_DMIRROR_PROT_ERROR;
    if ((flags & HMM_PFN_VALID) === 0) return HMM_DMIRROR_PROT_NONE;
    const k = this.ctx.k;
    const pfn = hmmPfnToPfn(word);
    let code = HMM_DMIRROR_PROT_NONE;
    if (k.pages.isZoneDevice(pfn)) {
      const pgmap = this.ctx.pagemaps.of(pfn);
      if (pgmap.type === MEMORY_DEVICE_PRIVATE) {
        code =
          pgmap.owner === this.device
            ? HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL
            : HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE;
      }
    } else if (pfn === ZERO_PFN) {
      code = HMM_DMIRROR_PROT_ZERO;
    }
    return code | ((flags & HMM_PFN_WRITE) !== 0 ? HMM_DMIRROR_PROT_WRITE : HMM_DMIRROR_PROT_READ);
  }

  /** HMM_DMIRROR_SNAPSHOT: one code per page of what the CPU page table holds, without faulting. */
  *cmdSnapshot(vpn: number, npages: number, codes: Uint8Array): Kfn<DmirrorResult | number> {
    const k = this.ctx.k;
    const pfns = new Float64Array(FAULT_CHUNK_PAGES);
    let cpages = 0;
    for (let addr = vpn; addr < vpn + npages; addr += FAULT_CHUNK_PAGES) {
      const next = Math.min(vpn + npages, addr + FAULT_CHUNK_PAGES);
      // A temporary notifier over the chunk, as dmirror_range_snapshot inserts.
      const mirror = this;
      const sub = mmuIntervalNotifierInsert(this.mm, asVpn(addr), asVpn(next), {
        *invalidate(s, _range, curSeq) {
          yield* mirror.mutex.lock();
          mmuIntervalSetSeq(s, curSeq);
          mirror.mutex.unlock();
          return true;
        },
      });
      const range: HmmRange = {
        notifier: sub,
        notifierSeq: 0,
        start: addr,
        end: next,
        hmmPfns: pfns,
        defaultFlags: 0,
        pfnFlagsMask: 0,
        devPrivateOwner: this.device,
      };
      let ret = -16;
      for (let attempt = 0; attempt < 1000 && ret !== 0; attempt++) {
        range.notifierSeq = yield* mmuIntervalReadBegin(k, sub);
        yield* this.mm.mmapLock.downRead();
        ret = yield* hmmRangeFault(this.ctx, this.mm, range);
        this.mm.mmapLock.upRead();
        if (ret === -16) continue;
        if (ret !== 0) break;
        yield* this.mutex.lock();
        if (mmuIntervalReadRetry(sub, range.notifierSeq)) ret = -16;
        else for (let v = addr; v < next; v++) codes[v - vpn] = this.mkEntry(pfns[v - addr]!);
        this.mutex.unlock();
      }
      mmuIntervalNotifierRemove(sub);
      if (ret !== 0) return ret;
      cpages += next - addr;
    }
    return { cpages, faults: 0 };
  }

  /**
   * close(2) of the device file: stop mirroring; under modern the device's memory is evicted to RAM,
   * as test_hmm.c's release does (older versions of it did not evict).
   */
  *close(): Kfn<void> {
    assert(!this.closed, "dmirror closed twice");
    if (!this.notifier.removed) mmuIntervalNotifierRemove(this.notifier);
    this.closed = true;
    this.pt.clear();
    if (this.ctx.migrate.protocol === "modern") yield* this.device.evictAll();
    // The mirror stays registered: device pages it migrated (under seed and 4.14, which do not evict
    // on close, or a page eviction could not take) still name it, and a CPU fault on one must find a
    // migrate_to_ram that works. A closed mirror has no page table left to update.
  }
}

/** The ioctl-level checks of dmirror_fops_unlocked_ioctl: page-aligned addr, npages > 0, no overflow. */
export function checkCommand(addr: number, npages: number, what: string): number {
  if (!Number.isSafeInteger(addr) || addr < 0 || addr % PAGE_SIZE !== 0) throw new KernelError(EINVAL, what);
  if (!Number.isSafeInteger(npages) || npages <= 0 || addr + npages * PAGE_SIZE >= 2 ** 64)
    throw new KernelError(EINVAL, what);
  return addr / PAGE_SIZE;
}
