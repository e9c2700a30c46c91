/**
 * Device-exclusive entries (mm/rmap.c make_device_exclusive; mm/memory.c remove_device_exclusive_entry
 * and restore_exclusive_pte): a device that needs atomic access to a page of system memory (one its
 * link cannot do atomics on while the CPU also maps it) has the CPU's PTE replaced by a non-present
 * device-exclusive entry; the next CPU access faults, and do_swap_page puts the ordinary PTE back,
 * telling the device through an MMU_NOTIFY_CLEAR invalidation (MMU_NOTIFY_EXCLUSIVE announces only the
 * conversion to device-exclusive).
 *
 * hmmsim models the rework of 6.15 (David Hildenbrand, "mm: device-exclusive memory access: rework"):
 * one page at a time, found by GUP and locked; the entry keeps the page's mapcount and the PTE's
 * reference (the rmap sees it as a mapping, so page_vma_mapped_walk and try_to_migrate find it), and it
 * carries no write bit: restore_exclusive_pte makes the PTE writable from the VMA and PageAnonExclusive.
 * Device-exclusive access came with 5.14; under "seed" and "4.14" nothing here is reachable.
 */
import { EOPNOTSUPP } from "../base/errno.js";
import { pageObject } from "../sched/objects.js";
import type { Kfn } from "../sched/thread.js";
import { lockPage, unlockPage } from "./filemap.js";
import { FOLL_GET, FOLL_SPLIT_PMD, FOLL_WRITE, getUserPages, gupToHeld } from "./gup.js";
import type { Kernel } from "./kernel.js";
import { type FaultContext, ptlLock } from "./memory.js";
import { type MmStruct, VM_ACCESS_FLAGS, VM_SHARED, VM_WRITE, type Vma } from "./mm_types.js";
import {
  MMU_NOTIFY_CLEAR,
  MMU_NOTIFY_EXCLUSIVE,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  notifierRange,
} from "./mmu_notifier.js";
import { assertPage, PG_anon_exclusive, PG_dirty, PG_hugetlb } from "./page.js";
import {
  _PAGE_DIRTY,
  _PAGE_PROTNONE,
  _PAGE_RW,
  isDeviceExclusiveEntry,
  makeDeviceExclusiveEntry,
  mkPte,
  PageTables,
  pteDirty,
  pteFrame,
  ptePresent,
  pteSpecial,
  pteWrite,
} from "./pgtable.js";

/**
 * make_device_exclusive(mm, addr, owner, &folio): returns the pfn of the page now mapped by a
 * device-exclusive entry at vpn, locked by the caller's thread and with one reference the caller holds
 * (it unlocks and puts it once its device maps the page), or -errno: GUP's (EFAULT, ENOMEM) or
 * EOPNOTSUPP for a page that is not anonymous or is a hugetlb page. The caller holds mmap_lock. The MMU_NOTIFY_EXCLUSIVE
 * invalidation names `owner`, so a driver can tell its own request from another's.
 */
export function* makeDeviceExclusive(
  ctx: FaultContext,
  mm: MmStruct,
  vpn: number,
  owner: unknown,
): Kfn<number> {
  const k = ctx.k;
  const pages = k.pages;
  // Bounded by the page changing under us: each retry follows a fault that remapped it.
  for (;;) {
    const got: number[] = [];
    const ret = yield* getUserPages(ctx, ctx.gup, mm, vpn, 1, FOLL_GET | FOLL_WRITE | FOLL_SPLIT_PMD, got);
    if (ret < 0) return ret;
    const pfn = got[0]!;
    gupToHeld(k, ctx.gup, pfn);
    const vma = mm.findVma(vpn);
    // Only an anonymous folio, and not a hugetlb one (GUP splits a THP first: FOLL_SPLIT_PMD).
    const head = pages.compoundHead(pfn);
    if (vma === null || !pages.isAnon(head) || pages.has(head, PG_hugetlb)) {
      pages.put(head);
      return -EOPNOTSUPP;
    }
    yield* lockPage(k, pfn);
    const range = notifierRange(mm, vma, vpn, vpn + 1, MMU_NOTIFY_EXCLUSIVE, owner);
    yield* mmuNotifierInvalidateRangeStart(k, range);
    // folio_walk_start again: the same page, still mapped writable by a PTE.
    const table = k.pt.lookupTable(mm.root, vpn);
    let done = false;
    if (table >= 0) {
      yield* ptlLock(k, table, "make_device_exclusive: folio_walk_start pte lock");
      const slot = PageTables.slot(table, vpn);
      const pte = k.pt.entries[slot]!;
      if (ptePresent(pte) && !pteSpecial(pte) && pteFrame(pte) === pfn && pteWrite(pte)) {
        // ptep_clear_flush, so that the dirty bit is final; the entry keeps the rmap and the reference.
        k.tlb.flushPage(mm.id, vpn);
        if (pteDirty(pte)) pages.set(pfn, PG_dirty);
        k.pt.entries[slot] = makeDeviceExclusiveEntry(pfn);
        done = true;
      }
      k.ptl.unlock(table);
    }
    mmuNotifierInvalidateRangeEnd(k, range);
    if (done) return pfn;
    unlockPage(k, pfn);
    pages.put(pfn);
    if (k.sched.contended)
      yield k.sched.atRetry("make_device_exclusive: the page moved, retry", pageObject(pfn));
  }
}

/**
 * can_change_pte_writable for an anonymous page of a private mapping: only a page this mapping owns
 * exclusively may be mapped writable without a write fault.
 */
function canChangePteWritable(k: Kernel, vma: Vma, pfn: number): boolean {
  if ((vma.flags & VM_WRITE) === 0) return false;
  if ((vma.flags & VM_SHARED) !== 0) return true;
  return k.pages.has(pfn, PG_anon_exclusive);
}

/**
 * restore_exclusive_pte: the ordinary PTE comes back (old, as pte_mkold(mk_pte(...))), writable where
 * the VMA and can_change_pte_writable allow it, dirty if the page is. The entry's reference and rmap
 * become the PTE's. The caller holds the PTE lock and the page lock.
 */
export function restoreExclusivePte(k: Kernel, vma: Vma, pfn: number, slot: number): void {
  assertPage(
    isDeviceExclusiveEntry(k.pt.entries[slot]!),
    "restoring a PTE that is not device-exclusive",
    k.pages,
    pfn,
  );
  let bits = (vma.flags & VM_ACCESS_FLAGS) === 0 ? _PAGE_PROTNONE : 0;
  if (canChangePteWritable(k, vma, pfn)) {
    bits |= _PAGE_RW;
    if (k.pages.has(pfn, PG_dirty)) bits |= _PAGE_DIRTY;
  }
  k.pt.entries[slot] = mkPte(pfn, bits);
}

/**
 * remove_device_exclusive_entry (do_swap_page on a device-exclusive entry): take a reference if the page
 * still has one (folio_try_get), lock it, tell the device (MMU_NOTIFY_CLEAR with no owner, since the 6.15
 * rework: MMU_NOTIFY_EXCLUSIVE now only announces a conversion to device-exclusive), and put the PTE
 * back if it is still the entry the fault saw. Returns 0: the access retries.
 */
export function* removeDeviceExclusiveEntry(
  ctx: FaultContext,
  vma: Vma,
  vpn: number,
  table: number,
  origPte: number,
): Kfn<number> {
  const k = ctx.k;
  const pfn = pteFrame(origPte);
  k.sched.touch(pageObject(pfn));
  if (k.pages.refcount[pfn] === 0) return 0;
  k.pages.get(pfn);
  yield* lockPage(k, pfn);
  const range = notifierRange(vma.mm, vma, vpn, vpn + 1, MMU_NOTIFY_CLEAR, null);
  yield* mmuNotifierInvalidateRangeStart(k, range);
  yield* ptlLock(k, table, "remove_device_exclusive_entry: pte_offset_map_lock, pte_same");
  const slot = PageTables.slot(table, vpn);
  if (k.pt.entries[slot] === origPte) restoreExclusivePte(k, vma, pfn, slot);
  k.ptl.unlock(table);
  unlockPage(k, pfn);
  k.pages.put(pfn);
  mmuNotifierInvalidateRangeEnd(k, range);
  return 0;
}
