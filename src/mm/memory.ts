/**
 * Page faults and page-table teardown and copy (mm/memory.c): handle_mm_fault with
 * do_anonymous_page (zero page on read), do_fault (page cache, COW of file pages), do_wp_page (COW,
 * reuse), do_swap_page (migration entries, device-private pages); zap_pte_range; copy_page_range.
 *
 * The caller of handleMmFault holds mmap_lock for read and has checked the VMA's permissions
 * (access_error in the arch fault handler), as in the kernel. The fault path takes the page-table
 * lock of the PTE table it changes and rechecks the PTE under it (pte_same).
 */
import { assert, assertAbout } from "../base/assert.js";
import { PAGE_SIZE } from "../base/units.js";
import { pageObject, pteTableObject } from "../sched/objects.js";
import type { Kfn } from "../sched/thread.js";
import { removeDeviceExclusiveEntry, restoreExclusivePte } from "./device_exclusive.js";
import { filemapGetPage, trylockPage, unlockPage, waitOnPageLocked } from "./filemap.js";
import type { GupLedger } from "./gup.js";
import {
  hugePmdFault,
  pmdLock,
  splitHugePmd,
  splitHugePmdsIn,
  thpVmaSuitable,
  VM_FAULT_FALLBACK,
  zapHugePmd,
} from "./huge_memory.js";
import { copyHugetlbPageRange, hugetlbFault, unmapHugepageRange } from "./hugetlb.js";
import type { Kernel } from "./kernel.js";
import type { Pagemaps } from "./memremap.js";
import type { Vma } from "./mm_types.js";
import { VM_ACCESS_FLAGS, VM_HUGETLB, VM_SHARED, VM_WRITE } from "./mm_types.js";
import {
  hasNotifiers,
  MMU_NOTIFY_CLEAR,
  type MmuNotifierEvent,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  notifierRange,
} from "./mmu_notifier.js";
import { folioMaybeDmaPinned, PG_anon_exclusive, PG_dirty, PG_lru } from "./page.js";
import { ZERO_PFN } from "./page_alloc.js";
import {
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  _PAGE_PROTNONE,
  _PAGE_RW,
  _PAGE_SPECIAL,
  isDeviceExclusiveEntry,
  isDevicePrivateEntry,
  isMigrationEntry,
  isReadableMigrationEntry,
  isSwapPte,
  isWritableDevicePrivateEntry,
  makeDevicePrivateEntry,
  migrationEntryReadOnly,
  mkPte,
  PageTables,
  pteDirty,
  pteFrame,
  ptePresent,
  pteSpecial,
  pteWithBits,
  pteWrite,
} from "./pgtable.js";
import { anonVmaPrepare, pageAddNewAnonRmap, pageAddRmap, pageRemoveRmap } from "./rmap.js";
import { lruAddDrain, lruCacheAdd } from "./swap.js";

/** enum fault_flag. */
export const FAULT_FLAG_WRITE = 0x1;
/**
 * FAULT_FLAG_REMOTE: the fault is on behalf of another mm (GUP on a remote process), not the current task.
 */
export const FAULT_FLAG_REMOTE = 0x80;
/** Break COW sharing without asking for write access (GUP read pins of shared anonymous pages). */
export const FAULT_FLAG_UNSHARE = 0x400;

/** vm_fault_t bits. */
export const VM_FAULT_OOM = 0x1;
/** VM_FAULT_SIGBUS: the fault cannot be satisfied; the access gets SIGBUS. */
export const VM_FAULT_SIGBUS = 0x2;
/** VM_FAULT_MAJOR: the fault had to wait for I/O or a migration (counted as a major fault). */
export const VM_FAULT_MAJOR = 0x4;
/** VM_FAULT_SIGSEGV: the access is not allowed; it gets SIGSEGV. */
export const VM_FAULT_SIGSEGV = 0x40;
/** VM_FAULT_NOPAGE: the handler installed the PTE itself (or found one); nothing left to map. */
export const VM_FAULT_NOPAGE = 0x100;
/** VM_FAULT_RETRY: the handler dropped the mmap_lock; the fault must be retried from the start. */
export const VM_FAULT_RETRY = 0x400;
/** VM_FAULT_ERROR: the bits that make a fault fail (OOM, SIGBUS, SIGSEGV). */
export const VM_FAULT_ERROR = VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV;

/**
 * Behaviour switches of the fault path that changed across kernel versions (see migrate_vma.ts for
 * where each is chosen).
 */
export interface FaultPathSwitches {
  /**
   * migration_entry_wait takes a page reference while waiting (true before 5.17, "mm/migrate.c: rework
   * migration_entry_wait() to not take a pageref", ffa65753c431). Several CPUs waiting keep the refcount
   * high, so a concurrent pin check fails (defect S4).
   */
  migrationWaitTakesRef: boolean;
  /**
   * do_swap_page holds the device page around migrate_to_ram: a reference since 16ce101db85d (6.1, the
   * fix for CVE-2022-3523); false is the fault path before it, which calls the driver with neither a
   * reference nor the page lock.
   */
  deviceFaultHoldsPage: boolean;
  /**
   * With deviceFaultHoldsPage: do_swap_page trylocks the device page before it takes the reference
   * ("mm/migrate: Trylock device page in do_swap_page", 1afaeb8293c9, 6.15), and when the trylock
   * fails sleeps until the page is unlocked, without a reference, and refaults (the newest linux-mm's
   * softleaf_entry_wait_on_locked). false is 6.1 to 6.14: the reference comes first and the page lock
   * only with migrate_vma_setup's collect, whose trylock of the fault page fails while another CPU
   * migrates it, so the driver collects nothing and the fault returns to be retried; meanwhile the
   * reference it held makes the other CPU's folio_migrate_mapping fail. Several CPUs faulting one
   * device page keep each other's migrations failing: a livelock. hmmsim takes the trylock in
   * do_swap_page after the reference (the driver's setup up to collect is a scheduling point), since
   * its migrate_vma_setup wants the fault page locked by the caller, as the kernel's does since then.
   */
  deviceFaultTrylock: boolean;
}

/**
 * Everything a fault needs beyond the kernel: the pagemaps, the version switches, and the ledger of
 * references taken through GUP (a kernel caller of GUP, such as make_device_exclusive, needs it).
 */
export interface FaultContext {
  readonly k: Kernel;
  readonly pagemaps: Pagemaps;
  readonly switches: FaultPathSwitches;
  readonly gup: GupLedger;
}

/**
 * pte_offset_map_lock's spin_lock: takes the PTE table lock, offering a scheduling point (labelled
 * `site`: the kernel function and what it locks) only when another thread could run.
 */
export function* ptlLock(k: Kernel, table: number, site: string): Kfn<void> {
  if (k.sched.contended || !k.ptl.tryLock(table)) yield* k.ptl.lock(table, site);
}

function describeVma(vma: Vma): string {
  return vma.toString();
}

/** handle_mm_fault: resolves one fault at vpn of vma. Returns 0 or VM_FAULT_* bits. */
export function* handleMmFault(ctx: FaultContext, vma: Vma, vpn: number, flags: number): Kfn<number> {
  const k = ctx.k;
  assertAbout(vma.contains(vpn), "fault outside its VMA", describeVma, vma);
  assertAbout(vma.mm.mmapLock.heldBy(k.sched.current()), "fault without mmap_lock", describeVma, vma);
  k.stats.faults++;
  // handle_mm_fault: a hugetlb VMA has its own fault path.
  if ((vma.flags & VM_HUGETLB) !== 0)
    return yield* hugetlbFault(
      k,
      vma,
      vpn,
      (flags & FAULT_FLAG_WRITE) !== 0,
      (flags & FAULT_FLAG_UNSHARE) !== 0,
    );
  // __handle_mm_fault's PMD level: a none PMD in a VMA that allows THPs, or a huge PMD.
  if (k.pt.hugePmds > 0 || thpVmaSuitable(k, vma, vpn)) {
    const huge = yield* hugePmdFault(k, vma, vpn, (flags & FAULT_FLAG_WRITE) !== 0);
    if (huge !== VM_FAULT_FALLBACK) return huge;
  }
  const table = k.pt.ensureTable(vma.mm.root, vpn);
  const slot = PageTables.slot(table, vpn);
  // handle_pte_fault reads vmf->orig_pte without the PTE lock; every path below rechecks it under the
  // lock (pte_same), so another CPU may change the entry between this read and that recheck.
  if (k.sched.contended) yield k.sched.at("handle_pte_fault: ptep_get_lockless", pteTableObject(table));
  const pte = k.pt.entries[slot]!;
  if (pte === 0) {
    if (!vma.isAnonymous) return yield* doFault(ctx, vma, vpn, flags, table);
    // do_anonymous_page: its one scheduling point, the PTE lock, is taken here, so the most common
    // fault creates no generator of its own.
    const pfn = doAnonymousPagePrepare(ctx, vma, flags);
    if (pfn < 0) return VM_FAULT_OOM;
    if (k.sched.contended || !k.ptl.tryLock(table))
      yield* k.ptl.lock(table, "do_anonymous_page: pte_offset_map_lock, pte_none recheck");
    const used = doAnonymousPageInstall(ctx, vma, vpn, slot, pfn);
    k.ptl.unlock(table);
    if (!used) k.pages.put(pfn);
    return 0;
  }
  if (isSwapPte(pte)) return yield* doSwapPage(ctx, vma, vpn, flags, table, pte);
  const write = (flags & FAULT_FLAG_WRITE) !== 0;
  const unshare = (flags & FAULT_FLAG_UNSHARE) !== 0;
  if ((write || unshare) && !pteWrite(pte)) return yield* doWpPage(ctx, vma, vpn, table, pte, unshare);
  // handle_pte_fault: the entry is fine; mark it young (and dirty on write) under the lock.
  yield* ptlLock(k, table, "handle_pte_fault: pte_offset_map_lock, pte_same recheck");
  if (k.pt.entries[slot] === pte)
    k.pt.entries[slot] = pteWithBits(pte, _PAGE_ACCESSED | (write ? _PAGE_DIRTY : 0), 0);
  k.ptl.unlock(table);
  return 0;
}

/**
 * do_anonymous_page, before the PTE lock: nothing for a read (the zero page needs no allocation), a
 * new zeroed page for a write. Returns the pfn to install, or -1 when RAM is exhausted.
 */
function doAnonymousPagePrepare(ctx: FaultContext, vma: Vma, flags: number): number {
  const k = ctx.k;
  if ((flags & FAULT_FLAG_WRITE) === 0) return ZERO_PFN;
  anonVmaPrepare(k, vma);
  const pfn = k.ram.allocPage();
  if (pfn < 0) return -1;
  k.store.zero(pfn);
  return pfn;
}

/**
 * do_anonymous_page, under the PTE lock: maps the zero page or the new page unless another thread
 * resolved the fault first (pte_same failed). Returns false when the new page was not used; the
 * caller drops it after unlocking, as the kernel does.
 */
function doAnonymousPageInstall(
  ctx: FaultContext,
  vma: Vma,
  vpn: number,
  slot: number,
  pfn: number,
): boolean {
  const k = ctx.k;
  if (k.pt.entries[slot] !== 0) return pfn === ZERO_PFN;
  if (pfn === ZERO_PFN) {
    k.pt.entries[slot] = mkPte(ZERO_PFN, _PAGE_SPECIAL | _PAGE_ACCESSED);
    k.stats.zeroPageMaps++;
  } else {
    mapNewAnonPage(ctx, vma, vpn, slot, pfn);
  }
  return true;
}

/** The tail of do_anonymous_page and wp_page_copy: rmap, LRU, PTE; the allocation ref becomes the mapping's. */
function mapNewAnonPage(
  ctx: FaultContext,
  vma: Vma,
  vpn: number,
  slot: number,
  pfn: number,
  unshare = false,
): void {
  const k = ctx.k;
  pageAddNewAnonRmap(k, pfn, vma, vpn);
  lruCacheAdd(k, pfn, k.sched.current().cpu);
  // An unsharing copy keeps the old PTE's read-only, clean state; a write gets a writable dirty PTE.
  const bits = unshare
    ? _PAGE_ACCESSED
    : ((vma.flags & VM_WRITE) !== 0 ? _PAGE_RW : 0) | _PAGE_DIRTY | _PAGE_ACCESSED;
  k.pt.entries[slot] = mkPte(pfn, bits);
  k.pages.handOver(pfn);
}

/**
 * do_fault: do_read_fault, do_cow_fault or do_shared_fault for a file or shmem VMA. A driver's mapping
 * (Vma.driverFile) has vma_init's dummy vm_ops, with no ->fault: SIGBUS where the entry is still none
 * under the PTE lock, VM_FAULT_NOPAGE (retry the access) where another thread filled it.
 */
function* doFault(ctx: FaultContext, vma: Vma, vpn: number, flags: number, table: number): Kfn<number> {
  const k = ctx.k;
  const file = vma.file;
  if (file === null) {
    assert(vma.driverFile !== null, "do_fault in an anonymous VMA", () => vma.toString());
    yield* ptlLock(k, table, "do_fault: pte_offset_map_lock (no ->fault)");
    const none = k.pt.entries[PageTables.slot(table, vpn)] === 0;
    k.ptl.unlock(table);
    return none ? VM_FAULT_SIGBUS : VM_FAULT_NOPAGE;
  }
  const write = (flags & FAULT_FLAG_WRITE) !== 0;
  const shared = (vma.flags & VM_SHARED) !== 0;
  const cpu = k.sched.current().cpu;
  const pgoff = vma.linearIndex(vpn);
  // shmem_get_folio: a page wholly beyond the end of the file is SIGBUS, not a new page.
  if (pgoff >= Math.ceil(file.sizeBytes / PAGE_SIZE)) return VM_FAULT_SIGBUS;
  const page = filemapGetPage(k, file, pgoff, cpu);
  if (page < 0) return VM_FAULT_OOM;
  const slot = PageTables.slot(table, vpn);
  if (write && !shared) {
    // do_cow_fault: a private copy of the file page.
    anonVmaPrepare(k, vma);
    const copy = k.ram.allocPage();
    if (copy < 0) {
      k.pages.put(page);
      return VM_FAULT_OOM;
    }
    k.store.copy(copy, page);
    k.pages.put(page);
    yield* ptlLock(k, table, "do_cow_fault: finish_fault pte_offset_map_lock");
    if (k.pt.entries[slot] !== 0) {
      k.ptl.unlock(table);
      k.pages.put(copy);
      return 0;
    }
    mapNewAnonPage(ctx, vma, vpn, slot, copy);
    k.ptl.unlock(table);
    k.stats.cowFaults++;
    return 0;
  }
  yield* ptlLock(k, table, "do_read_fault: finish_fault pte_offset_map_lock");
  if (k.pt.entries[slot] !== 0) {
    k.ptl.unlock(table);
    k.pages.put(page);
    return 0;
  }
  // A shared mapping of shmem needs no write notification, so its PTEs are writable from the start
  // when the VMA is (vm_page_prot); a private mapping maps the page cache read-only for COW.
  const writable = shared && (vma.flags & VM_WRITE) !== 0;
  if (write) k.pages.set(page, PG_dirty);
  pageAddRmap(k, page, vma);
  k.pt.entries[slot] = mkPte(page, (writable ? _PAGE_RW : 0) | (write ? _PAGE_DIRTY : 0) | _PAGE_ACCESSED);
  k.pages.handOver(page);
  k.ptl.unlock(table);
  return 0;
}

/** do_wp_page: a write to a present read-only PTE in a writable VMA. */
function* doWpPage(
  ctx: FaultContext,
  vma: Vma,
  vpn: number,
  table: number,
  pte: number,
  unshare: boolean,
): Kfn<number> {
  const k = ctx.k;
  const slot = PageTables.slot(table, vpn);
  const pfn = pteFrame(pte);
  const special = pteSpecial(pte);
  // Only anonymous pages can be unshared; everything else is already what a pin may hold.
  if (unshare && (special || !k.pages.isAnon(pfn))) return 0;
  if (!special && (vma.flags & VM_SHARED) !== 0) {
    // wp_page_shared: the page cache page itself becomes writable and dirty.
    yield* ptlLock(k, table, "wp_page_shared: pte_offset_map_lock, pte_same recheck");
    if (k.pt.entries[slot] === pte) {
      k.pages.set(pfn, PG_dirty);
      k.pt.entries[slot] = pteWithBits(pte, _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED, 0);
    }
    k.ptl.unlock(table);
    return 0;
  }
  if (!special && k.pages.isAnon(pfn) && canReuseAnonPage(ctx, pfn)) {
    // wp_page_reuse: this process is the only user; write in place (unsharing only marks it exclusive).
    yield* ptlLock(k, table, "do_wp_page: pte_offset_map_lock, pte_same recheck");
    if (k.pt.entries[slot] === pte) {
      k.pages.set(pfn, PG_anon_exclusive);
      if (!unshare) k.pt.entries[slot] = pteWithBits(pte, _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED, 0);
    }
    k.ptl.unlock(table);
    return 0;
  }
  return yield* wpPageCopy(ctx, vma, vpn, table, pte, unshare);
}

/**
 * wp_can_reuse_anon_folio: exclusive pages are reused; otherwise only a page whose single reference is
 * this mapping, checked after draining this CPU's LRU batch (whose reference would otherwise count) and
 * under the page lock.
 */
function canReuseAnonPage(ctx: FaultContext, pfn: number): boolean {
  const k = ctx.k;
  if (k.pages.has(pfn, PG_anon_exclusive)) return true;
  if (!k.pages.has(pfn, PG_lru)) lruAddDrain(k, k.sched.current().cpu);
  // folio_ref_count without a lock: another CPU's get or put is seen or not.
  k.sched.touch(pageObject(pfn));
  if (k.pages.refcount[pfn]! > 1) return false;
  if (!trylockPage(k, pfn)) return false;
  const reuse = k.pages.refcount[pfn] === 1;
  unlockPage(k, pfn);
  return reuse;
}

/** wp_page_copy: a private copy of the page (zeroed for the zero page), replacing the PTE. */
function* wpPageCopy(
  ctx: FaultContext,
  vma: Vma,
  vpn: number,
  table: number,
  pte: number,
  unshare: boolean,
): Kfn<number> {
  const k = ctx.k;
  const slot = PageTables.slot(table, vpn);
  const old = pteFrame(pte);
  const oldIsZero = pteSpecial(pte);
  anonVmaPrepare(k, vma);
  const copy = k.ram.allocPage();
  if (copy < 0) return VM_FAULT_OOM;
  if (oldIsZero) k.store.zero(copy);
  else k.store.copy(copy, old);
  const mm = vma.mm;
  const range = hasNotifiers(mm, vpn, vpn + 1)
    ? notifierRange(mm, vma, vpn, vpn + 1, MMU_NOTIFY_CLEAR)
    : null;
  if (range !== null) yield* mmuNotifierInvalidateRangeStart(k, range);
  yield* ptlLock(k, table, "wp_page_copy: pte_offset_map_lock, pte_same recheck");
  if (k.pt.entries[slot] !== pte) {
    k.ptl.unlock(table);
    if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
    k.pages.put(copy);
    return 0;
  }
  if (!oldIsZero) {
    pageRemoveRmap(k, old, vma);
    k.pages.putStructural(old);
  }
  mapNewAnonPage(ctx, vma, vpn, slot, copy, unshare);
  // ptep_clear_flush: no CPU may keep reaching the old page (or the zero page) once the copy is mapped.
  k.tlb.flushPage(mm.id, vpn);
  k.ptl.unlock(table);
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
  k.stats.cowFaults++;
  return 0;
}

/**
 * do_swap_page for the swap-type entries hmmsim has: a migration entry waits for the migration to end
 * (migration_entry_wait) and the access retries; a device-private entry asks the page's driver to
 * migrate it back (migrate_to_ram). hmmsim has no swap device, so nothing else gets here.
 */
function* doSwapPage(
  ctx: FaultContext,
  vma: Vma,
  vpn: number,
  flags: number,
  table: number,
  pte: number,
): Kfn<number> {
  const k = ctx.k;
  const pfn = pteFrame(pte);
  if (isMigrationEntry(pte)) {
    k.stats.migrationWaits++;
    yield* migrationEntryWait(ctx, table, vpn, pte);
    return 0;
  }
  if (isDevicePrivateEntry(pte)) {
    k.stats.deviceFaults++;
    const pgmap = ctx.pagemaps.of(pfn);
    const slot = PageTables.slot(table, vpn);
    if (!ctx.switches.deviceFaultHoldsPage) {
      // Before 6.1: the driver is called with neither a reference nor the page lock (CVE-2022-3523),
      // on the page the lockless PTE read named; another CPU may migrate and free it meanwhile.
      if (k.sched.contended)
        yield k.sched.at(
          "do_swap_page: vmf->page->pgmap->ops->migrate_to_ram, no reference held",
          pageObject(pfn),
        );
      return yield* pgmap.ops.migrateToRam({ vma, vpn, flags, page: pfn, origPte: pte });
    }
    yield* ptlLock(k, table, "do_swap_page: pte_offset_map_lock, pte_same recheck");
    if (k.pt.entries[slot] !== pte) {
      k.ptl.unlock(table);
      return 0;
    }
    if (!ctx.switches.deviceFaultTrylock) {
      // 6.1 to 6.14: get_page under the PTL, then migrate_to_ram, whose collect trylocks the page.
      k.pages.get(pfn);
      k.ptl.unlock(table);
      if (k.sched.contended)
        yield k.sched.at(
          "migrate_to_ram: migrate_vma_setup, collect's trylock of the fault page",
          pageObject(pfn),
        );
      if (!trylockPage(k, pfn)) {
        // Another CPU migrates the page: nothing collected, the driver returns 0 and the access retries.
        k.pages.put(pfn);
        return 0;
      }
    } else if (!trylockPage(k, pfn)) {
      // Someone else (a migration) holds the page: sleep until it lets go, without a reference
      // (softleaf_entry_wait_on_locked in the newest kernels), then retry the access.
      k.ptl.unlock(table);
      yield* waitOnPageLocked(k, pfn);
      return 0;
    } else {
      k.pages.get(pfn);
      k.ptl.unlock(table);
    }
    const ret = yield* pgmap.ops.migrateToRam({ vma, vpn, flags, page: pfn, origPte: pte });
    unlockPage(k, pfn);
    k.pages.put(pfn);
    return ret;
  }
  if (isDeviceExclusiveEntry(pte)) {
    k.stats.deviceFaults++;
    return yield* removeDeviceExclusiveEntry(ctx, vma, vpn, table, pte);
  }
  return VM_FAULT_SIGBUS;
}

/**
 * migration_entry_wait: if the PTE still holds the migration entry, sleep until the page is unlocked,
 * then return so that the access retries.
 */
export function* migrationEntryWait(ctx: FaultContext, table: number, vpn: number, pte: number): Kfn<void> {
  const k = ctx.k;
  const slot = PageTables.slot(table, vpn);
  const pfn = pteFrame(pte);
  yield* ptlLock(k, table, "migration_entry_wait: pte_offset_map_lock, pte_same recheck");
  if (k.pt.entries[slot] !== pte) {
    k.ptl.unlock(table);
    return;
  }
  if (ctx.switches.migrationWaitTakesRef) {
    // 4.14: get_page_unless_zero, then wait_on_page_locked, then put_page.
    k.sched.touch(pageObject(pfn));
    if (k.pages.refcount[pfn] === 0) {
      k.ptl.unlock(table);
      return;
    }
    k.pages.get(pfn);
    k.ptl.unlock(table);
    yield* waitOnPageLocked(k, pfn);
    k.pages.put(pfn);
    return;
  }
  // Since 5.17 the wait starts under the PTL without a reference (migration_entry_wait_on_locked).
  k.ptl.unlock(table);
  yield* waitOnPageLocked(k, pfn);
}

/**
 * zap_pte_range over [start, end) of one VMA (munmap, MADV_DONTNEED, exit): every mapping's rmap and
 * reference go; migration entries are dropped without a reference (the migrating thread holds one).
 * The range is invalidated with `event` first.
 */
export function* zapPageRange(
  k: Kernel,
  vma: Vma,
  start: number,
  end: number,
  event: MmuNotifierEvent,
): Kfn<void> {
  assert(
    start >= vma.start && end <= vma.end && start < end,
    "zap outside the VMA",
    () => `${start}..${end} ${vma}`,
  );
  const mm = vma.mm;
  const range = hasNotifiers(mm, start, end) ? notifierRange(mm, vma, start, end, event) : null;
  if (range !== null) yield* mmuNotifierInvalidateRangeStart(k, range);
  if ((vma.flags & VM_HUGETLB) !== 0) {
    // unmap_single_vma: __unmap_hugepage_range for a hugetlb VMA.
    yield* unmapHugepageRange(k, vma, start, end);
    if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
    return;
  }
  let vpn = start;
  while (vpn < end) {
    const tableEnd = Math.min(end, (Math.floor(vpn / 512) + 1) * 512);
    let table = k.pt.lookupTable(mm.root, vpn);
    if (table < 0 && k.pt.hugePmds > 0 && k.pt.readPmdLeaf(mm.root, vpn) !== 0) {
      // zap_pmd_range: a huge PMD wholly in the range goes at once (zap_huge_pmd); one only partly in
      // it is split first (__split_huge_pmd) and its PTEs zapped below.
      if (vpn % 512 === 0 && tableEnd - vpn === 512) {
        const pmdKey = k.pt.lookupPmd(mm.root, vpn);
        yield* pmdLock(k, pmdKey, "zap_huge_pmd: __pmd_trans_huge_lock");
        if (k.pt.pmdLeaf(pmdKey) !== 0) zapHugePmd(k, vma, pmdKey, vpn);
        k.pmdLock.unlock(pmdKey);
        vpn = tableEnd;
        continue;
      }
      yield* splitHugePmd(k, vma, vpn);
      table = k.pt.lookupTable(mm.root, vpn);
    }
    if (table >= 0) {
      yield* ptlLock(k, table, "zap_pte_range: pte_offset_map_lock");
      // The mmu_gather's range: only present entries extend it (tlb_remove_tlb_entry); a migration or
      // device-private entry is cleared without a flush, since no TLB can hold it (S12 relies on this).
      let flushStart = tableEnd;
      let flushEnd = vpn;
      for (let v = vpn; v < tableEnd; v++) {
        if (!zapPte(k, vma, PageTables.slot(table, v))) continue;
        if (v < flushStart) flushStart = v;
        flushEnd = v + 1;
      }
      k.ptl.unlock(table);
      // tlb_flush_mmu before the gathered pages are freed. hmmsim frees them under the lock, so the flush
      // comes in the same step: no CPU can reach a freed page through the TLB in between.
      if (flushEnd > flushStart) k.tlb.flushRange(mm.id, flushStart, flushEnd);
    }
    vpn = tableEnd;
  }
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
}

/** zap_pte_range for one entry: true when it was a present PTE (one a TLB may cache). */
function zapPte(k: Kernel, vma: Vma, slot: number): boolean {
  const pte = k.pt.entries[slot]!;
  if (pte === 0) return false;
  k.pt.entries[slot] = 0;
  const pfn = pteFrame(pte);
  if (ptePresent(pte)) {
    if (pteSpecial(pte)) return true;
    if (pteDirty(pte)) k.pages.set(pfn, PG_dirty);
  } else if (!isDevicePrivateEntry(pte) && !isDeviceExclusiveEntry(pte)) {
    return false; // a migration entry: no reference, no rmap
  }
  pageRemoveRmap(k, pfn, vma);
  k.pages.putStructural(pfn);
  return ptePresent(pte);
}

/** is_cow_mapping: private and may be written. */
function isCowMapping(vma: Vma): boolean {
  return (vma.flags & VM_SHARED) === 0 && (vma.flags & 0x20) !== 0; // VM_MAYWRITE
}

/**
 * copy_page_range for fork: the child's VMA gets the parent's PTEs. In a COW mapping both sides lose
 * write access and anonymous pages stop being exclusive; device-private and migration entries are
 * copied (made read-only for COW), as copy_nonpresent_pte does. Returns 0 or -ENOMEM.
 *
 * Deliberate difference: an anonymous page that may be DMA-pinned is copied for the child at fork
 * (copy_present_page) only when it is exclusive, as in the kernel, but without the mm->has_pinned test.
 */
export function* copyPageRange(k: Kernel, dst: Vma, src: Vma): Kfn<number> {
  assert(dst.start === src.start && dst.end === src.end, "fork copies a VMA to the same range");
  if ((src.flags & VM_HUGETLB) !== 0) return yield* copyHugetlbPageRange(k, dst, src);
  const cow = isCowMapping(src);
  // copy_huge_pmd would share the THP with the child; hmmsim splits it first (huge_memory.ts's eager
  // split), so the PTE loop below copies its pages.
  yield* splitHugePmdsIn(k, src, src.start, src.end);
  let vpn = src.start as number;
  while (vpn < src.end) {
    const tableEnd = Math.min(src.end, (Math.floor(vpn / 512) + 1) * 512);
    const srcTable = k.pt.lookupTable(src.mm.root, vpn);
    if (srcTable >= 0) {
      const dstTable = k.pt.ensureTable(dst.mm.root, vpn);
      yield* ptlLock(k, dstTable, "copy_pte_range: pte_alloc_map_lock of the child");
      yield* ptlLock(k, srcTable, "copy_pte_range: pte_offset_map_lock of the parent");
      let outcome = COPIED;
      let v = vpn;
      for (; v < tableEnd && outcome === COPIED; v++) {
        outcome = copyOnePte(k, dst, src, v, PageTables.slot(dstTable, v), PageTables.slot(srcTable, v), cow);
      }
      k.ptl.unlock(srcTable);
      k.ptl.unlock(dstTable);
      // try_restore_exclusive_pte found the page locked (-EBUSY): copy_pte_range gives up with it, and
      // copy_pmd_range turns any error into -ENOMEM, so the fork fails (the kernel's behaviour).
      if (outcome === COPY_NOMEM || outcome >= 0) return -12; // -ENOMEM
    }
    vpn = tableEnd;
  }
  return 0;
}

/** copyOnePte's outcomes besides the pfn of a locked page that must be waited for. */
const COPIED = -1;
const COPY_NOMEM = -2;

export { GUP_PIN_COUNTING_BIAS } from "./page.js";

/**
 * The bits of a new PTE for a page in `vma` built from vm_page_prot (mk_pte(page, vma->vm_page_prot)):
 * x86's protections all carry _PAGE_ACCESSED, and a VMA without access gives PAGE_NONE.
 */
function vmPageProtBits(vma: Vma): number {
  return (vma.flags & VM_ACCESS_FLAGS) === 0 ? _PAGE_ACCESSED | _PAGE_PROTNONE : _PAGE_ACCESSED;
}

/**
 * copy_one_pte: COPIED, COPY_NOMEM, or the pfn of a device-exclusive entry's page that is locked
 * (copy_nonpresent_pte's -EBUSY, which fails the fork).
 */
function copyOnePte(
  k: Kernel,
  dst: Vma,
  src: Vma,
  vpn: number,
  dstSlot: number,
  srcSlot: number,
  cow: boolean,
): number {
  const pages = k.pages;
  let pte = k.pt.entries[srcSlot]!;
  if (pte === 0) return COPIED;
  const pfn = pteFrame(pte);
  if (isDeviceExclusiveEntry(pte)) {
    // copy_nonpresent_pte: try_restore_exclusive_pte makes the parent's entry an ordinary PTE again
    // (under the page lock, taken with a trylock), and the now present PTE is copied below.
    if (!trylockPage(k, pfn)) return pfn;
    restoreExclusivePte(k, src, pfn, srcSlot);
    unlockPage(k, pfn);
    pte = k.pt.entries[srcSlot]!;
  }
  if (!ptePresent(pte)) {
    if (isMigrationEntry(pte)) {
      // A writable or readable-exclusive entry becomes readable in both: the page is shared now. The
      // entry keeps its young and dirty bits (they live in the swap offset).
      if (cow && !isReadableMigrationEntry(pte)) {
        pte = migrationEntryReadOnly(pte, false);
        k.pt.entries[srcSlot] = pte;
      }
      k.pt.entries[dstSlot] = pte;
      return COPIED;
    }
    if (isDevicePrivateEntry(pte)) {
      pages.getStructural(pfn);
      pageAddRmap(k, pfn, dst);
      pages.clear(pfn, PG_anon_exclusive);
      if (cow && isWritableDevicePrivateEntry(pte)) {
        pte = makeDevicePrivateEntry(pfn, false);
        k.pt.entries[srcSlot] = pte;
      }
      k.pt.entries[dstSlot] = pte;
    }
    return COPIED;
  }
  if (pteSpecial(pte)) {
    k.pt.entries[dstSlot] = pte;
    return COPIED;
  }
  if (cow && pages.isAnon(pfn) && pages.has(pfn, PG_anon_exclusive) && folioMaybeDmaPinned(pages, pfn)) {
    // copy_present_page: the parent keeps the pinned page; the child gets its own copy now, mapped from
    // the child VMA's vm_page_prot (maybe_mkwrite(pte_mkdirty(...))): inaccessible in a PROT_NONE VMA.
    const copy = k.ram.allocPage();
    if (copy < 0) return COPY_NOMEM;
    k.store.copy(copy, pfn);
    anonVmaPrepare(k, dst);
    pageAddNewAnonRmap(k, copy, dst, vpn);
    lruCacheAdd(k, copy, k.sched.current().cpu);
    const write = (dst.flags & VM_WRITE) !== 0 ? _PAGE_RW : 0;
    k.pt.entries[dstSlot] = mkPte(copy, vmPageProtBits(dst) | _PAGE_DIRTY | write);
    pages.handOver(copy);
    return COPIED;
  }
  pages.getStructural(pfn);
  pageAddRmap(k, pfn, dst);
  if (pages.isAnon(pfn)) pages.clear(pfn, PG_anon_exclusive);
  if (cow && pteWrite(pte)) {
    pte = pteWithBits(pte, 0, _PAGE_RW);
    k.pt.entries[srcSlot] = pte;
  }
  k.pt.entries[dstSlot] = pteWithBits(pte, 0, _PAGE_ACCESSED);
  return COPIED;
}
