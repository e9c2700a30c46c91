/**
 * toygpu: a small GPU-style driver written against hmmsim's kernel-level API, the way a real HMM driver
 * (nouveau, amdgpu's SVM, lib/test_hmm.c) is written against Linux's. It
 *
 * - registers its memory as MEMORY_DEVICE_PRIVATE (memremap_pages) with a page_free and a
 *   migrate_to_ram callback, and hands out its pages from a free list (zone_device_page_init);
 * - mirrors one process: a device page table (vpn → pfn, writable) kept coherent with the CPU's by an
 *   mmu_interval_notifier, filled on a device fault by hmm_range_fault in the pattern that
 *   Documentation/mm/hmm.rst documents;
 * - migrates a range to its memory (migrate_vma_setup / _pages / _finalize) and leaves the device to
 *   map the new pages on its next fault, as amdgpu does; moves a page back when the CPU touches it
 *   (migrate_to_ram); evicts all its memory (migrate_device_range), as on driver unload;
 * - registers an invariant checker: no device page table entry may name a page that the CPU does not
 *   map at that address, or map it writable where the CPU does not.
 *
 * Everything comes from `hmmsim/driver`, and the driver is loaded with System.attachDriver (its
 * invariant checker reports under the name it was attached as).
 *
 * Two mistakes driver writers make are behind options, so one file shows each bug and its fix (see
 * README.md): `skipOwnMigrate` and `retryCheckUnlocked`. Modern protocol only (migrate_vma_setup).
 */
import {
  asVpn,
  type DevPagemap,
  type DriverContext,
  EBUSY,
  EFAULT,
  HMM_PFN_REQ_FAULT,
  HMM_PFN_REQ_WRITE,
  HMM_PFN_WRITE,
  type HmmRange,
  hasFlag,
  hmmPfnFlags,
  hmmPfnToPfn,
  hmmRangeFault,
  isDevicePrivateEntry,
  isWritableDevicePrivateEntry,
  type Kfn,
  Lock,
  MEMORY_DEVICE_PRIVATE,
  MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
  MIGRATE_VMA_SELECT_SYSTEM,
  MMU_NOTIFY_MIGRATE,
  type MigrateContext,
  type MigrateVmaArgs,
  type MmStruct,
  type MmuIntervalNotifier,
  type MmuNotifierRange,
  memremapPages,
  migrateDeviceFinalize,
  migrateDevicePages,
  migrateDeviceRange,
  migratePfn,
  migratePfnToPfn,
  migrateVmaFinalize,
  migrateVmaPages,
  migrateVmaSetup,
  mmuIntervalNotifierInsert,
  mmuIntervalReadBegin,
  mmuIntervalReadRetry,
  mmuIntervalSetSeq,
  OBJ_NAMED,
  PAGE_SIZE,
  pageObject,
  pteFrame,
  ptePresent,
  pteWrite,
  type System,
  TASK_SIZE,
  trylockPage,
  VM_FAULT_OOM,
  VM_FAULT_SIGBUS,
  type VmFault,
  zoneDevicePageInit,
} from "hmmsim/driver";

export interface ToyGpuOptions {
  /** Device memory, in pages. */
  readonly pages: number;
  /**
   * BUG (a): return at once from invalidate() for MMU_NOTIFY_MIGRATE events this driver started, as
   * lib/test_hmm.c does ("handled as part of the migration process"), without mmu_interval_set_seq.
   * The migration code erases the entries itself, but a device fault whose hmm_range_fault ran before
   * the migration's collect still passes mmu_interval_read_retry and maps the page being migrated away.
   */
  readonly skipOwnMigrate?: boolean;
  /**
   * BUG (b): call mmu_interval_read_retry before taking the device page table lock, not under it. An
   * invalidation that runs between the check and the lock is missed, and the fault maps a stale page.
   */
  readonly retryCheckUnlocked?: boolean;
}

/** Retries of a device fault before it gives up (each retry follows an invalidation). */
const FAULT_RETRIES_MAX = 100;

export class ToyGpu {
  /** The device page table: vpn → pfn * 2 + writable. Holds no page references, as a mirror must not. */
  readonly pt = new Map<number, number>();
  /** The lock of the device page table, taken by invalidate() too (hmm.rst's driver->update). */
  readonly ptLock: Lock;
  readonly notifier: MmuIntervalNotifier;
  readonly pgmap: DevPagemap;
  private readonly freePages: number[] = [];
  /** The notifier's sequence as a shared object, for the explorer's partial-order reduction. */
  private readonly seqObject: number;

  readonly system: System;

  /** The loader: `system.attachDriver("toygpu", (ctx) => new ToyGpu(ctx, mm, options))`. */
  constructor(
    ctx: DriverContext,
    readonly mm: MmStruct,
    readonly options: ToyGpuOptions,
  ) {
    const system = ctx.system;
    this.system = system;
    const k = system.kernel;
    this.ptLock = new Lock(k.sched, "toygpu page table lock");
    this.seqObject = k.sched.nameObject(OBJ_NAMED, "toygpu notifier sequence");
    this.pgmap = memremapPages(k, system.pagemaps, MEMORY_DEVICE_PRIVATE, options.pages, this, {
      pageFree: (pfn) => this.freePages.push(pfn),
      migrateToRam: (vmf) => this.migrateToRam(vmf),
    });
    for (let pfn = this.pgmap.endPfn - 1; pfn >= this.pgmap.startPfn; pfn--) this.freePages.push(pfn);
    this.notifier = mmuIntervalNotifierInsert(mm, asVpn(0), asVpn(TASK_SIZE / PAGE_SIZE), {
      invalidate: (sub, range, curSeq) => this.invalidate(sub, range, curSeq),
    });
    ctx.registerInvariantChecker(() => this.checkMirror());
  }

  private get ctx(): MigrateContext {
    return this.system.migrateContext;
  }

  /** The notifier callback: drop the device's entries for the range before the CPU's change. */
  private *invalidate(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): Kfn<boolean> {
    if (this.options.skipOwnMigrate && range.event === MMU_NOTIFY_MIGRATE && range.owner === this) return true;
    yield* this.ptLock.lock("toygpu invalidate: lock page table");
    mmuIntervalSetSeq(sub, curSeq);
    this.system.kernel.sched.touch(this.seqObject);
    for (const vpn of [...this.pt.keys()]) if (vpn >= range.start && vpn < range.end) this.pt.delete(vpn);
    this.ptLock.unlock();
    return true;
  }

  /**
   * A device access to the page at vpn through the device page table: stores `value` (when writing) and
   * returns the page's word, faulting the page into the table first when it is missing. Runs under the
   * page table lock, so an invalidation waits for it, as one waits for the device's TLB shootdown.
   */
  *deviceAccess(vpn: number, write: boolean, value = 0): Kfn<number> {
    const k = this.system.kernel;
    for (let attempt = 0; attempt < FAULT_RETRIES_MAX; attempt++) {
      yield* this.ptLock.lock("toygpu access: lock page table");
      const entry = this.pt.get(vpn);
      if (entry !== undefined && (!write || entry % 2 === 1)) {
        const pfn = Math.floor(entry / 2);
        k.sched.touch(pageObject(pfn));
        if (write) k.store.fill(pfn, value);
        const word = k.store.word(pfn);
        this.ptLock.unlock();
        return word;
      }
      this.ptLock.unlock();
      const ret = yield* this.fault(vpn, write);
      if (ret !== 0) return ret;
    }
    return -EBUSY;
  }

  /** The device's page fault: hmm_range_fault, then program the page table (Documentation/mm/hmm.rst). */
  private *fault(vpn: number, write: boolean): Kfn<number> {
    const k = this.system.kernel;
    const range: HmmRange = {
      notifier: this.notifier,
      notifierSeq: 0,
      start: vpn,
      end: vpn + 1,
      hmmPfns: new Float64Array(1),
      defaultFlags: HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0),
      pfnFlagsMask: 0,
      devPrivateOwner: this,
    };
    for (let attempt = 0; attempt < FAULT_RETRIES_MAX; attempt++) {
      range.notifierSeq = yield* mmuIntervalReadBegin(k, this.notifier);
      yield* this.mm.mmapLock.downRead("toygpu fault: mmap_read_lock");
      const ret = yield* hmmRangeFault(this.ctx, this.mm, range);
      this.mm.mmapLock.upRead();
      if (ret === -EBUSY) continue;
      if (ret !== 0) return ret;
      if (this.options.retryCheckUnlocked) {
        // BUG (b): the check and the update are not atomic with respect to invalidate().
        k.sched.touch(this.seqObject);
        if (mmuIntervalReadRetry(this.notifier, range.notifierSeq)) continue;
        yield* this.ptLock.lock("toygpu fault: lock page table");
      } else {
        yield* this.ptLock.lock("toygpu fault: lock page table");
        k.sched.touch(this.seqObject);
        if (mmuIntervalReadRetry(this.notifier, range.notifierSeq)) {
          this.ptLock.unlock();
          continue;
        }
      }
      const word = range.hmmPfns[0]!;
      this.pt.set(vpn, hmmPfnToPfn(word) * 2 + ((hmmPfnFlags(word) & HMM_PFN_WRITE) !== 0 ? 1 : 0));
      this.ptLock.unlock();
      return 0;
    }
    return -EBUSY;
  }

  /** Erases the entries of the pages a migration collected (all the buggy driver (a) relies on). */
  private *eraseCollected(src: Float64Array, start: number, npages: number): Kfn<void> {
    yield* this.ptLock.lock("toygpu migrate: lock page table");
    for (let i = 0; i < npages; i++) if (hasFlag(src[i]!, this.ctx.layout.MIGRATE)) this.pt.delete(start + i);
    this.ptLock.unlock();
  }

  /** Migrates [vpn, vpn + npages) to device memory; returns the pages moved or -errno. */
  *migrateToDevice(vpn: number, npages: number): Kfn<number> {
    const ctx = this.ctx;
    const k = ctx.k;
    const L = ctx.layout;
    yield* this.mm.mmapLock.downRead("toygpu migrate: mmap_read_lock");
    try {
      const vma = this.mm.findVma(vpn);
      if (vma === null || vpn + npages > vma.end) return -EFAULT;
      const args: MigrateVmaArgs = {
        vma,
        start: vpn * PAGE_SIZE,
        end: (vpn + npages) * PAGE_SIZE,
        src: new Float64Array(npages),
        dst: new Float64Array(npages),
        pgmapOwner: this,
        flags: MIGRATE_VMA_SELECT_SYSTEM,
      };
      const ret = yield* migrateVmaSetup(ctx, args);
      if (ret !== 0) return ret;
      const src = args.src!;
      const dst = args.dst!;
      yield* this.eraseCollected(src, vpn, npages);
      let moved = 0;
      for (let i = 0; i < npages; i++) {
        if (!hasFlag(src[i]!, L.MIGRATE)) continue;
        const dpfn = this.freePages.pop();
        // Out of device memory: leave dst empty and migrate_vma_pages keeps the page where it is.
        if (dpfn === undefined) continue;
        zoneDevicePageInit(k, ctx.pagemaps, dpfn);
        const spfn = migratePfnToPfn(L, src[i]!);
        if (spfn >= 0) k.store.copy(dpfn, spfn);
        else k.store.zero(dpfn);
        dst[i] = migratePfn(L, dpfn) + (hasFlag(src[i]!, L.WRITE) ? L.WRITE : 0);
        moved++;
      }
      yield* migrateVmaPages(ctx, args);
      yield* migrateVmaFinalize(ctx, args);
      return moved;
    } finally {
      this.mm.mmapLock.upRead();
    }
  }

  /** dev_pagemap_ops.migrate_to_ram: the CPU touched one of our pages; bring it back to RAM. */
  private *migrateToRam(vmf: VmFault): Kfn<number> {
    const ctx = this.ctx;
    const k = ctx.k;
    const L = ctx.layout;
    const args: MigrateVmaArgs = {
      vma: vmf.vma,
      start: vmf.vpn * PAGE_SIZE,
      end: (vmf.vpn + 1) * PAGE_SIZE,
      src: new Float64Array(1),
      dst: new Float64Array(1),
      pgmapOwner: this,
      flags: MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
      faultPage: vmf.page,
    };
    if ((yield* migrateVmaSetup(ctx, args)) !== 0) return VM_FAULT_SIGBUS;
    const src = args.src!;
    const dst = args.dst!;
    yield* this.eraseCollected(src, vmf.vpn, 1);
    let ret = 0;
    if (hasFlag(src[0]!, L.MIGRATE)) {
      const dpfn = k.ram.allocPage();
      if (dpfn < 0) ret = VM_FAULT_OOM;
      else {
        trylockPage(k, dpfn);
        k.store.copy(dpfn, migratePfnToPfn(L, src[0]!));
        dst[0] = migratePfn(L, dpfn) + (hasFlag(src[0]!, L.WRITE) ? L.WRITE : 0);
      }
    }
    // Even on failure: finalize restores the entry and unlocks and releases what setup took.
    yield* migrateVmaPages(ctx, args);
    yield* migrateVmaFinalize(ctx, args);
    return ret;
  }

  /** Evicts every page of device memory to RAM (migrate_device_range), as a driver does on unload. */
  *evictAll(): Kfn<number> {
    const ctx = this.ctx;
    const k = ctx.k;
    const L = ctx.layout;
    const npages = this.pgmap.pages;
    const src = new Float64Array(npages);
    const dst = new Float64Array(npages);
    yield* migrateDeviceRange(ctx, src, this.pgmap.startPfn, npages);
    let moved = 0;
    for (let i = 0; i < npages; i++) {
      if (!hasFlag(src[i]!, L.MIGRATE)) continue;
      const dpfn = k.ram.allocPage();
      if (dpfn < 0) continue;
      trylockPage(k, dpfn);
      k.store.copy(dpfn, migratePfnToPfn(L, src[i]!));
      dst[i] = migratePfn(L, dpfn) + (hasFlag(src[i]!, L.WRITE) ? L.WRITE : 0);
      moved++;
    }
    yield* migrateDevicePages(ctx, src, dst, npages);
    yield* migrateDeviceFinalize(ctx, src, dst, npages);
    return moved;
  }

  /** The registered invariant checker: every device entry agrees with the CPU's page table. */
  checkMirror(): string[] {
    const k = this.system.kernel;
    const out: string[] = [];
    for (const [vpn, entry] of this.pt) {
      const pfn = Math.floor(entry / 2);
      const at = `device page table maps vpn 0x${vpn.toString(16)} to pfn ${pfn}${entry % 2 === 1 ? " writable" : ""}`;
      const pte = k.pt.read(this.mm.root, vpn);
      let cpuPfn = -1;
      let cpuWritable = false;
      if (ptePresent(pte)) [cpuPfn, cpuWritable] = [pteFrame(pte), pteWrite(pte)];
      else if (isDevicePrivateEntry(pte)) [cpuPfn, cpuWritable] = [pteFrame(pte), isWritableDevicePrivateEntry(pte)];
      if (cpuPfn !== pfn) out.push(`${at}, but the CPU maps ${cpuPfn < 0 ? "nothing there" : `pfn ${cpuPfn}`}`);
      else if (entry % 2 === 1 && !cpuWritable) out.push(`${at}, but the CPU maps it read-only`);
      if (k.pages.refcount[pfn] === 0) out.push(`${at}, a free page`);
    }
    return out;
  }
}
