/**
 * dmirror, the reference device (lib/test_hmm.c): one open of the device by a process (struct dmirror),
 * with a page table that mirrors the process through an mmu interval notifier, and the commands of
 * lib/test_hmm_uapi.h. The device's memory is in dmirror_devmem.ts. It uses only what a real driver
 * can: the exported mm API and its callbacks.
 *
 * Deliberate differences from test_hmm.c:
 * - where test_hmm.c has a defect the default keeps it and DmirrorSwitches (dmirror_devmem.ts) gives a
 *   corrected driver: the skipped MMU_NOTIFY_MIGRATE invalidations, and READ/WRITE on a file whose mm
 *   has gone, which loops forever in test_hmm.c and stops here with DmirrorLivelockError;
 * - the bounce buffer of READ, WRITE and MIGRATE_TO_DEV's read-back takes no simulated RAM; its vmalloc
 *   fails, as the kernel's does without trying, when it is larger than all of RAM (__vmalloc_node_range:
 *   "exceeds total pages"), and never otherwise;
 * - a chunk's copies are queued in a CopyBatch while its pages are allocated and run in one pass, as a
 *   DMA engine's descriptor list is, where test_hmm.c copies each page as it allocates it;
 * - under "seed" and "4.14" the driver migrates through migrate_vma() and its callbacks (test_hmm.c
 *   did not exist then); under "modern" through migrate_vma_setup/pages/finalize as test_hmm.c does.
 *   Eviction needs migrate_device_range (6.1), with which test_hmm.c gained it, so under the older
 *   versions release does not evict and HMM_DMIRROR_RELEASE does not exist (-EINVAL, the ioctl's
 *   answer to an unknown command);
 * - no THP yet.
 */

import { assert } from "../base/assert.js";
import { EBUSY, EFAULT, EINVAL, ENOENT, ENOMEM } from "../base/errno.js";
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
import type { VmFault } from "../mm/memremap.js";
import {
  type MigrateContext,
  type MigrateVmaArgs,
  migrateVmaFinalize,
  migrateVmaPages,
  migrateVmaSetup,
} from "../mm/migrate_device.js";
import { hasFlag, MIGRATE_VMA_SELECT_SYSTEM, migratePfn, migratePfnToPfn } from "../mm/migrate_pfn.js";
import { type MigrateVmaOps, migrateVma } from "../mm/migrate_vma.js";
import { type MmStruct, VM_READ, type Vma } from "../mm/mm_types.js";
import type { DriverFile } from "../mm/mmap.js";
import {
  MMU_NOTIFY_EXCLUSIVE,
  MMU_NOTIFY_MIGRATE,
  type MmuIntervalNotifier,
  type MmuNotifierRange,
  mmuIntervalNotifierInsert,
  mmuIntervalNotifierRemove,
  mmuIntervalReadBegin,
  mmuIntervalReadRetry,
  mmuIntervalSetSeq,
  notifierObject,
} from "../mm/mmu_notifier.js";
import { Lock } from "../sched/locks.js";
import { LivelockError } from "../sched/scheduler.js";
import type { Kfn, Thread } from "../sched/thread.js";
import { CopyBatch } from "./copy_engine.js";
import { DeviceTable } from "./device_table.js";
import type { DmirrorDevice } from "./dmirror_devmem.js";
import {
  bounceFits,
  type DmirrorResult,
  DPT_XA_TAG_WRITE,
  entryPfn,
  entryWritable,
  FAULT_CHUNK_PAGES,
  RETRY_ATTEMPTS_MAX,
} from "./dmirror_entry.js";
import { dmirrorCheckAtomic, dmirrorExclusive } from "./dmirror_exclusive.js";
import { dmirrorDriverFile } from "./dmirror_mmap.js";
import { dmirrorSnapshot } from "./dmirror_snapshot.js";
import { HMM_DMIRROR_FLAG_FAIL_ALLOC } from "./dmirror_uapi.js";

export {
  DEVMEM_CHUNK_PAGES,
  DmirrorDevice,
  type DmirrorSwitches,
  TEST_HMM_SWITCHES,
} from "./dmirror_devmem.js";
export {
  bounceFits,
  type DmirrorResult,
  entryAtomic,
  entryPfn,
  entryWritable,
} from "./dmirror_entry.js";
export {
  type CommandRange,
  commandRange,
  HMM_DMIRROR_FLAG_FAIL_ALLOC,
  HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL,
  HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE,
  HMM_DMIRROR_PROT_ERROR,
  HMM_DMIRROR_PROT_NONE,
  HMM_DMIRROR_PROT_PMD,
  HMM_DMIRROR_PROT_PUD,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_ZERO,
  isU64,
} from "./dmirror_uapi.js";

/** Pages per migrate_vma call (PTRS_PER_PTE). */
const MIGRATE_CHUNK_PAGES = 512;
/** What fault() returns, in test_hmm.c's mode, when the mirrored mm has gone: dmirror_fault's 0. */
const FAULT_WITHOUT_MM = 1;

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

/**
 * A READ or WRITE that lib/test_hmm.c never returns from: the file's mm has exited, so dmirror_fault
 * returns 0 without faulting anything and dmirror_read/dmirror_write retry for ever (see
 * DmirrorSwitches.faultFailsWithoutMm). hmmsim stops the command instead of spinning, holding no lock.
 */
export class DmirrorLivelockError extends LivelockError {
  override readonly name = "DmirrorLivelockError";
  constructor(
    readonly command: string,
    readonly minor: number,
  ) {
    super(
      `${command} on dmirror ${minor} never returns in lib/test_hmm.c: the mirrored mm has exited, so ` +
        "dmirror_fault returns 0 (mmget_not_zero failed) and dmirror_do_read/do_write keep returning -ENOENT; " +
        "SystemOptions.dmirror.faultFailsWithoutMm gives -EINVAL instead",
    );
  }
}

/** One open of the device by a process (struct dmirror): its mirror page table and notifier. */
export class Dmirror {
  readonly id: number;
  /** The device page table: vpn → entry (see entryPfn). Holds no page references. */
  readonly pt = new DeviceTable();
  readonly mutex: Lock;
  readonly notifier: MmuIntervalNotifier;
  /** dmirror->flags: the u64 that HMM_DMIRROR_FLAGS stored (only bit 0, FAIL_ALLOC, means anything). */
  flags = 0;
  /** Released (dmirror_fops_release ran): the last file reference went. */
  closed = false;
  /**
   * The chunks this open's threads are migrating to the device, and whether another thread's
   * invalidation overlapped one since it started (the corrected driver's answer to window (d) of
   * DmirrorSwitches; test_hmm.c keeps no such record).
   */
  private readonly toDeviceInFlight = new Map<Thread, { start: number; end: number; invalidated: boolean }>();

  constructor(
    readonly device: DmirrorDevice,
    readonly mm: MmStruct,
  ) {
    this.id = device.registerMirror(this);
    const k = device.ctx.k;
    this.mutex = new Lock(k.sched, `dmirror ${device.minor} open ${this.id} mutex`);
    this.notifier = mmuIntervalNotifierInsert(mm, asVpn(0), asVpn(TASK_SIZE / PAGE_SIZE), {
      invalidate: (sub, range, curSeq) => this.invalidate(sub, range, curSeq),
    });
  }

  /** @internal The migration context of the device: the kernel, the protocol's layout and switches. */
  get ctx(): MigrateContext {
    return this.device.ctx;
  }

  /** mmget_not_zero on the mirrored mm: false once the process that opened the file has exited. */
  get mmAlive(): boolean {
    return !this.mm.exited;
  }

  /**
   * dmirror_interval_invalidate: drop the mirror entries of the range and move the sequence. test_hmm.c
   * returns early for MMU_NOTIFY_MIGRATE whose owner is this device, in every open of the device ("the
   * invalidation is handled as part of the migration process"); see DmirrorSwitches for what that
   * breaks. The corrected driver invalidates its own migrations like any other event.
   */
  private *invalidate(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): Kfn<boolean> {
    const ownMigration = range.event === MMU_NOTIFY_MIGRATE && range.owner === this.device;
    if (ownMigration && !this.device.switches.invalidateOnOwnMigration) return true;
    // Only the corrected driver names itself (this open) as make_device_exclusive's owner
    // (exclusiveRechecks): its own request needs no invalidation, and another open's still does.
    if (range.event === MMU_NOTIFY_EXCLUSIVE && range.owner === this) return true;
    yield* this.mutex.lock();
    mmuIntervalSetSeq(sub, curSeq);
    this.doUpdate(range.start, range.end);
    // Window (d): another thread's invalidation over a chunk this open is migrating to the device.
    const me = this.ctx.k.sched.current();
    for (const [thread, chunk] of this.toDeviceInFlight)
      if (thread !== me && range.start <= chunk.end && range.end >= chunk.start) chunk.invalidated = true;
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

  /**
   * Consumes the one-shot FAIL_ALLOC flag: true when this allocation must fail. flags is a u64 held in a
   * double (an integer), so bit 0 is its parity and clearing it subtracts one, exactly at any size.
   */
  private failAlloc(): boolean {
    if (this.flags % 2 !== HMM_DMIRROR_FLAG_FAIL_ALLOC) return false;
    this.flags -= HMM_DMIRROR_FLAG_FAIL_ALLOC;
    return true;
  }

  // -------------------------------------------------------------------------------------------------
  // Faulting pages into the mirror (dmirror_fault, dmirror_range_fault, dmirror_do_fault).

  private *rangeFault(range: HmmRange): Kfn<number> {
    const k = this.ctx.k;
    // Bounded like test_hmm.c's one-second timeout: each retry follows an invalidation.
    for (let attempt = 0; attempt < RETRY_ATTEMPTS_MAX; attempt++) {
      range.notifierSeq = yield* mmuIntervalReadBegin(k, this.notifier);
      yield* this.mm.mmapLock.downRead();
      const ret = yield* hmmRangeFault(this.ctx, this.mm, range);
      this.mm.mmapLock.upRead();
      if (ret === -EBUSY) {
        // An invalidation ran since read_begin: spin until it ends (the next read_begin sleeps on it).
        if (k.sched.contended)
          yield k.sched.atRetry("dmirror_range_fault: -EBUSY, again", notifierObject(k, this.mm));
        continue;
      }
      if (ret !== 0) return ret;
      yield* this.mutex.lock();
      if (mmuIntervalReadRetry(this.notifier, range.notifierSeq)) {
        this.mutex.unlock();
        if (k.sched.contended)
          yield k.sched.atRetry(
            "dmirror_range_fault: mmu_interval_read_retry, again",
            notifierObject(k, this.mm),
          );
        continue;
      }
      const result = this.doFault(range);
      this.mutex.unlock();
      return result;
    }
    return -EBUSY;
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
      if (!write && (range.defaultFlags & HMM_PFN_REQ_WRITE) !== 0) return -EFAULT;
      this.pt.set(vpn, hmmPfnToPfn(word) * 4 + (write ? DPT_XA_TAG_WRITE : 0));
    }
    return 0;
  }

  /**
   * dmirror_fault: hmm_range_fault and mirror [start, end) 32 pages at a time. Without the mm
   * (mmget_not_zero fails) test_hmm.c returns 0, here FAULT_WITHOUT_MM so that the caller can tell;
   * the corrected driver returns -EINVAL.
   */
  private *fault(start: number, end: number, write: boolean): Kfn<number> {
    if (!this.mmAlive) return this.device.switches.faultFailsWithoutMm ? -EINVAL : FAULT_WITHOUT_MM;
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
    if (!bounceFits(this.ctx.k, npages)) return -ENOMEM;
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
      // Nothing can mirror a page of an mm that has gone: test_hmm.c's loop would never end.
      if (fret === FAULT_WITHOUT_MM)
        throw new DmirrorLivelockError(write ? "HMM_DMIRROR_WRITE" : "HMM_DMIRROR_READ", this.device.minor);
      if (fret !== 0) return fret;
      faults++;
    }
    return -EBUSY;
  }

  /**
   * HMM_DMIRROR_READ: copies npages from the mirror into the bounce buffer `into` (bytes store; null in
   * the tokens store) and each page's first word or version into `words`, faulting as needed.
   */
  *cmdRead(
    vpn: number,
    npages: number,
    into: Uint8Array | null,
    words: Uint32Array,
  ): Kfn<DmirrorResult | number> {
    const store = this.ctx.k.store;
    // Checked before the thread takes anything: a buffer that cannot hold the pages is the caller's bug.
    assert(
      words.length >= npages && (into === null || into.length >= npages * PAGE_SIZE),
      "READ buffer too short",
    );
    assert(into === null || store.kind === "bytes", "READ into bytes needs the bytes store");
    return yield* this.readOrWrite(vpn, npages, false, (pfn, index) => {
      words[index] = store.word(pfn);
      if (into !== null) store.readBytes(pfn, 0, into, index * PAGE_SIZE, PAGE_SIZE);
    });
  }

  /** HMM_DMIRROR_WRITE: copies `from` into the range through the mirror, faulting for write. */
  *cmdWrite(vpn: number, npages: number, from: Uint8Array): Kfn<DmirrorResult | number> {
    const store = this.ctx.k.store;
    // Checked before the thread takes anything (DeviceFile refuses both with an errno first).
    assert(store.kind === "bytes", "HMM_DMIRROR_WRITE needs the bytes store");
    assert(from.length >= npages * PAGE_SIZE, "WRITE buffer too short");
    return yield* this.readOrWrite(vpn, npages, true, (pfn, index) => {
      store.writeBytes(pfn, 0, from, index * PAGE_SIZE, PAGE_SIZE);
    });
  }

  // -------------------------------------------------------------------------------------------------
  // Migration to the device.

  /**
   * dmirror_migrate_alloc_and_copy: a device page for each system page or empty entry collected. Under
   * test_hmm.c's skipped invalidation this open still mirrors the source pages while it copies them
   * (window (a) of DmirrorSwitches); finalize_and_map replaces those entries.
   */
  private *allocAndCopyToDevice(
    src: Float64Array,
    dst: Float64Array,
    npages: number,
    copies: CopyBatch,
  ): Kfn<void> {
    const k = this.ctx.k;
    const L = this.ctx.layout;
    const device = this.device;
    for (let i = 0; i < npages; i++) {
      const s = src[i]!;
      if (!hasFlag(s, L.MIGRATE)) continue;
      const spfn = migratePfnToPfn(L, s);
      if (spfn >= 0 && k.pages.isZoneDevice(spfn)) continue;
      if (this.failAlloc()) continue;
      let dpfn = device.tryAllocPage();
      if (dpfn < 0) dpfn = yield* device.allocPageSlow();
      if (dpfn < 0) continue;
      if (spfn >= 0) copies.add(dpfn, spfn);
      else device.copier.zeroPage(dpfn);
      k.pages.zoneDeviceData[dpfn] = this.id;
      dst[i] = migratePfn(L, dpfn) + L.LOCKED + L.DEVICE + (hasFlag(s, L.WRITE) ? L.WRITE : 0);
    }
    device.copier.copyPages(copies);
  }

  /**
   * dmirror_migrate_finalize_and_map: mirror each page that moved, writable iff dst says so.
   *
   * Under "4.14" collect selects device-private pages of any owner and brackets itself with an
   * owner-less MMU_NOTIFY_CLEAR, which erased our mirror entries for the pages of the range that are
   * already on this device; they stay where they are (no dst), so map them again here, as a driver of
   * that era had to. Modern collect never selects them (SELECT_SYSTEM) and skips our own invalidation.
   * Such a page comes back writable only where collect's migration entry kept the write bit: before
   * "mm/migrate: properly preserve write attribute in special migrate entry" (Ralph Campbell, 4.17;
   * the writeFromMpfn switch) migrate_vma_collect_pmd took it from pte_write() of the device-private
   * swap PTE, which is never set, so the CPU maps the page read-only again and the mirror must too.
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
    // Window (d): an invalidation since collect may have zapped what this would mirror.
    if (this.toDeviceInFlight.get(k.sched.current())?.invalidated === true) {
      this.mutex.unlock();
      return;
    }
    for (let i = 0; i < npages; i++) {
      const spfn = migratePfnToPfn(L, src[i]!);
      if (spfn >= 0 && k.pages.isZoneDevice(spfn) && this.ctx.pagemaps.of(spfn).owner === this.device) {
        const writable = hasFlag(src[i]!, L.WRITE) && this.ctx.migrate.writeFromMpfn;
        this.pt.set(start + i, spfn * 4 + (writable ? DPT_XA_TAG_WRITE : 0));
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
    const npages = end - start;
    assert(
      buffers.src.length >= npages,
      "chunk buffers too small",
      () => `${buffers.src.length} < ${npages}`,
    );
    // The corrected driver notes invalidations that overlap this chunk from here to finalize_and_map.
    const tracked = toDevice && this.device.switches.invalidateOnOwnMigration;
    const me = this.ctx.k.sched.current();
    try {
      if (tracked) {
        this.toDeviceInFlight.set(me, { start, end, invalidated: false });
        // An invalidation already under way has told this open before the note existed: wait for it
        // to end (mmu_interval_read_begin), so that collect sees what it zapped.
        yield* mmuIntervalReadBegin(this.ctx.k, this.notifier);
      }
      return yield* this.migrateChunkTracked(vma, start, end, toDevice, counted, buffers);
    } finally {
      if (tracked) this.toDeviceInFlight.delete(me);
    }
  }

  /** migrateChunk's body. */
  private *migrateChunkTracked(
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
          if (toDevice) yield* self.allocAndCopyToDevice(src, dst, npages, copies);
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
      flags: toDevice ? MIGRATE_VMA_SELECT_SYSTEM : this.device.selectOwnPages,
    };
    const ret = yield* migrateVmaSetup(ctx, args);
    if (ret !== 0) return ret;
    if (toDevice) {
      yield* this.allocAndCopyToDevice(src, dst, npages, copies);
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

  /**
   * HMM_DMIRROR_MIGRATE_TO_DEV (dmirror_migrate_to_device): -EINVAL once the mm has gone
   * (mmget_not_zero); migrate the range chunk by chunk; then read the whole range back through the
   * mirror as READ does (dmirror_do_read into the bounce buffer), which fails with -ENOENT at the first
   * page not mirrored, and copy it to `into` (cmd->ptr) when every page was. Without `into` the copy is
   * skipped: nobody could see it. The migration is not undone when the read-back fails.
   */
  *cmdMigrateToDevice(
    vpn: number,
    npages: number,
    into: Uint8Array | null = null,
  ): Kfn<DmirrorResult | number> {
    const k = this.ctx.k;
    if (!this.mmAlive) return -EINVAL;
    assert(
      into === null || (k.store.kind === "bytes" && into.length >= npages * PAGE_SIZE),
      "bad read-back buffer",
    );
    const ignored = { cpages: 0 };
    const buffers = chunkBuffers(npages);
    const ret = yield* this.forEachChunk(vpn, npages, (vma, start, end) =>
      this.migrateChunk(vma, start, end, true, ignored, buffers),
    );
    if (ret !== 0) return ret;
    if (!bounceFits(k, npages)) return -ENOMEM;
    yield* this.mutex.lock();
    const cpages = this.pt.presentRun(vpn, npages);
    if (cpages === npages && into !== null) {
      for (let i = 0; i < npages; i++)
        k.store.readBytes(entryPfn(this.pt.get(vpn + i)), 0, into, i * PAGE_SIZE, PAGE_SIZE);
    }
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

  /**
   * HMM_DMIRROR_MIGRATE_TO_SYS (dmirror_migrate_to_system): -EINVAL once the mm has gone; cpages counts
   * this device's pages that moved back.
   */
  *cmdMigrateToSystem(vpn: number, npages: number): Kfn<DmirrorResult | number> {
    if (!this.mmAlive) return -EINVAL;
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
    return yield* this.devmemFault(vmf);
  }

  /** dmirror_devmem_fault for one page. */
  private *devmemFault(vmf: VmFault): Kfn<number> {
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
      flags: this.device.selectOwnPages,
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
  // The commands that move no page (dmirror_exclusive.ts, dmirror_snapshot.ts) and the file's mmap.

  /** HMM_DMIRROR_EXCLUSIVE on this open (see dmirrorExclusive). */
  *cmdExclusive(vpn: number, npages: number, into: Uint8Array | null = null): Kfn<DmirrorResult | number> {
    return yield* dmirrorExclusive(this, vpn, npages, into);
  }

  /** HMM_DMIRROR_CHECK_EXCLUSIVE on this open (see dmirrorCheckAtomic). */
  cmdCheckExclusive(vpn: number, npages: number): DmirrorResult | number {
    return dmirrorCheckAtomic(this, vpn, npages);
  }

  /** HMM_DMIRROR_SNAPSHOT on this open (see dmirrorSnapshot). */
  *cmdSnapshot(vpn: number, npages: number, codes: Uint8Array): Kfn<DmirrorResult | number> {
    return yield* dmirrorSnapshot(this, vpn, npages, codes);
  }

  /** The device file as mmap(2) sees it (see dmirrorDriverFile). */
  get driverFile(): DriverFile {
    return dmirrorDriverFile(this);
  }

  /**
   * HMM_DMIRROR_RELEASE: dmirror_device_remove_chunks, which evicts and removes every chunk of the
   * device. It needs migrate_device_range (6.1); under the older versions the command does not exist.
   */
  *cmdRelease(): Kfn<DmirrorResult | number> {
    if (this.ctx.migrate.protocol !== "modern") return -EINVAL;
    const ret = yield* this.device.removeChunks();
    return ret < 0 ? ret : { cpages: 0, faults: 0 };
  }

  /**
   * dmirror_fops_release, at the last close of the file: stop mirroring (mmu_interval_notifier_remove,
   * which waits out an invalidation in progress), then under "modern" evict every chunk of the device
   * to RAM (dmirror_device_evict_chunk), whoever migrated the pages. Older test_hmm.c did not evict.
   */
  *release(): Kfn<void> {
    assert(!this.closed, "dmirror released twice");
    this.closed = true;
    yield* mmuIntervalNotifierRemove(this.ctx.k, this.notifier);
    if (this.ctx.migrate.protocol === "modern") yield* this.device.evictAll();
    this.pt.clear();
    // The open stays registered with the device while pages it migrated (under seed and 4.14, which do
    // not evict, or a page eviction could not take) still name it: a CPU fault on one must find a
    // migrate_to_ram that works (test_hmm.c frees the dmirror and would use it after free). A released
    // open has no page table left to update.
    this.device.forgetMirror(this);
  }
}
