/**
 * madvise(2) (mm/madvise.c): do_madvise, check_input_range, madvise_walk_vmas and the advice hmmsim
 * models: MADV_DONTNEED and MADV_DONTNEED_LOCKED (madvise_dontneed_single_vma), MADV_FREE
 * (madvise_free_single_vma, madvise_free_pte_range), MADV_HUGEPAGE and MADV_NOHUGEPAGE
 * (hugepage_madvise, madvise_update_vma), and MADV_HWPOISON and MADV_SOFT_OFFLINE, which need
 * CAP_SYS_ADMIN that hmmsim's processes do not have (EPERM).
 *
 * As madvise_walk_vmas does, the advice is applied VMA by VMA: a hole in the range does not stop it
 * (the call returns ENOMEM after advising every VMA in the range), while a VMA the advice does not
 * apply to stops it with EINVAL after the VMAs before it were advised.
 *
 * MADV_FREE marks private anonymous pages lazily free: the PTEs lose their young and dirty bits, an
 * exclusive page loses PG_dirty, and the page moves to the inactive file LRU without PG_swapbacked
 * (folio_mark_lazyfree). Reclaim would then drop every such page that is still clean, so that it
 * reads back as zeros, and keep (and make swap-backed again) one that was written since, because the
 * write set the PTE's dirty bit. hmmsim has no reclaim: a lazily freed page keeps its contents until it
 * is unmapped, and a later write simply makes it dirty again. That is one outcome Linux allows (the
 * one without memory pressure); what differs is that the other never happens. Pages of other kinds in
 * the range (the zero page, device pages, entries that are not present) are left as they are.
 *
 * MADV_HUGEPAGE and MADV_NOHUGEPAGE set VM_HUGEPAGE or VM_NOHUGEPAGE (clearing the other), splitting
 * the VMA to the range (and a huge PMD the new boundary cuts); whether a later fault takes a THP
 * follows from the flag (huge_memory.ts). MADV_FREE keeps a THP wholly in the range PMD-mapped.
 *
 * Deliberate differences: other advice, valid in Linux, gives EINVAL (not modelled); MADV_DONTNEED of
 * a hugetlb VMA gives EINVAL (hugetlb.ts); no userfaultfd, sealing or VMA read locks (the walk takes
 * mmap_lock); no page-table reclaim after MADV_DONTNEED (CONFIG_PT_RECLAIM); the lazy-free LRU move is
 * done at once rather than through a per-CPU batch.
 */
import { intArg, ulongArg } from "../base/abi.js";
import { EINVAL, ENOMEM, EPERM } from "../base/errno.js";
import type { Kfn } from "../sched/thread.js";
import { trylockPage, unlockPage } from "./filemap.js";
import { madviseFreeHugePmds, splitHugePmdsAround } from "./huge_memory.js";
import { hugetlbMaySplit } from "./hugetlb.js";
import type { Kernel } from "./kernel.js";
import { zapPageRange } from "./memory.js";
import {
  type MmStruct,
  VM_HUGEPAGE,
  VM_HUGETLB,
  VM_LOCKED,
  VM_NOHUGEPAGE,
  VM_PFNMAP,
  type Vma,
} from "./mm_types.js";
import {
  MADV_DONTNEED,
  MADV_DONTNEED_LOCKED,
  MADV_FREE,
  MADV_HUGEPAGE,
  MADV_HWPOISON,
  MADV_NOHUGEPAGE,
  MADV_SOFT_OFFLINE,
} from "./mman.js";
import { isolateVma, PAGE_BYTES, pageAlignUlong, TASK_BYTES, TASK_VPNS } from "./mmap.js";
import {
  hasNotifiers,
  MMU_NOTIFY_CLEAR,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  notifierRange,
} from "./mmu_notifier.js";
import { PG_active, PG_dirty, PG_lru, PG_referenced, PG_swapbacked } from "./page.js";
import { ZERO_PFN } from "./page_alloc.js";
import {
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  PageTables,
  pteFrame,
  ptePresent,
  pteSpecial,
  pteWithBits,
} from "./pgtable.js";
import { lruAddDrain, lruCacheAdd, lruDel } from "./swap.js";

const U64_LIMIT = 1n << 64n;

/** The advice hmmsim models (a subset of madvise_behavior_valid's list). */
const MODELLED = new Set([
  MADV_DONTNEED,
  MADV_DONTNEED_LOCKED,
  MADV_FREE,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MADV_HWPOISON,
  MADV_SOFT_OFFLINE,
]);

/** What advising one VMA did: an error that stops the walk, or the VMA the walk goes on from. */
type VmaResult = number | Vma;

/**
 * madvise(2): do_madvise. Argument checks in the kernel's order: advice it does not know (EINVAL; in
 * hmmsim also advice it does not model), an unaligned start, a length that rounds up to 0 from just
 * below 2^64, a range that wraps (EINVAL); length 0 is success. `advice` is a C int: the low 32 bits.
 */
export function* sysMadvise(
  k: Kernel,
  mm: MmStruct,
  addr: number,
  length: number,
  advice: number,
): Kfn<number> {
  const start = ulongArg(addr);
  const lenIn = ulongArg(length);
  const behavior = intArg(advice);
  if (start === null || lenIn === null || behavior === null) return -EINVAL;
  if (!MODELLED.has(behavior)) return -EINVAL;
  // check_input_range.
  if (start % PAGE_BYTES !== 0n) return -EINVAL;
  const len = pageAlignUlong(lenIn);
  if (lenIn !== 0n && len === 0n) return -EINVAL;
  if (start + len >= U64_LIMIT) return -EINVAL;
  if (lenIn === 0n) return 0;
  // madvise_inject_error: only CAP_SYS_ADMIN may poison or offline pages.
  if (behavior === MADV_HWPOISON || behavior === MADV_SOFT_OFFLINE) return -EPERM;
  const writes = behavior === MADV_HUGEPAGE || behavior === MADV_NOHUGEPAGE;
  if (writes) yield* mm.mmapLock.downWrite();
  else yield* mm.mmapLock.downRead();
  try {
    return yield* madviseWalkVmas(mm, start, start + len, (vma, from, to) =>
      madviseVmaBehavior(k, vma, from, to, behavior),
    );
  } finally {
    if (writes) mm.mmapLock.upWrite();
    else mm.mmapLock.upRead();
  }
}

/**
 * madvise_walk_vmas: applies `advise` to the part of each VMA inside [start, end), in order. A gap
 * (or a range running past the last VMA) makes the result ENOMEM but does not stop the walk; an error
 * from `advise` stops it at once.
 */
function* madviseWalkVmas(
  mm: MmStruct,
  start: bigint,
  end: bigint,
  advise: (vma: Vma, from: number, to: number) => Kfn<VmaResult>,
): Kfn<number> {
  // No VMA reaches TASK_SIZE: an end above it is as far as the walk can go.
  const lastEnd = end <= TASK_BYTES ? Number(end / PAGE_BYTES) : TASK_VPNS + 1;
  let from = Number(start / PAGE_BYTES);
  let unmapped = 0;
  let vma = mm.findVmaFrom(from);
  // Bounded by the VMAs: each pass moves past one of them.
  for (;;) {
    if (vma === null) return -ENOMEM;
    if (from < vma.start) {
      unmapped = -ENOMEM;
      from = vma.start;
      if (from >= lastEnd) break;
    }
    let to = Math.min(vma.end, lastEnd);
    const result = yield* advise(vma, from, to);
    if (typeof result === "number") return result;
    vma = result;
    if (to < vma.end) to = vma.end;
    if (to >= lastEnd) break;
    vma = mm.findVmaFrom(vma.end);
    from = to;
  }
  return unmapped;
}

/** madvise_vma_behavior for the modelled advice. */
function* madviseVmaBehavior(
  k: Kernel,
  vma: Vma,
  from: number,
  to: number,
  behavior: number,
): Kfn<VmaResult> {
  switch (behavior) {
    case MADV_DONTNEED:
    case MADV_DONTNEED_LOCKED:
    case MADV_FREE:
      return yield* madviseDontneedFree(k, vma, from, to, behavior);
    default:
      return yield* hugepageMadvise(k, vma, from, to, behavior);
  }
}

/**
 * madvise_dontneed_free: EINVAL for a VM_PFNMAP VMA, a VM_LOCKED one (unless MADV_DONTNEED_LOCKED) and
 * a hugetlb one (as before 5.18, which let MADV_DONTNEED zap whole huge pages; see hugetlb.ts); MADV_FREE also needs a private anonymous VMA (EINVAL otherwise).
 */
function* madviseDontneedFree(
  k: Kernel,
  vma: Vma,
  from: number,
  to: number,
  behavior: number,
): Kfn<VmaResult> {
  const forbidden = VM_PFNMAP | VM_HUGETLB | (behavior === MADV_DONTNEED_LOCKED ? 0 : VM_LOCKED);
  if ((vma.flags & forbidden) !== 0) return -EINVAL;
  if (behavior !== MADV_FREE) {
    yield* zapPageRange(k, vma, from, to, MMU_NOTIFY_CLEAR);
    return vma;
  }
  // vma_is_anonymous: MADV_FREE works only on private anonymous memory.
  if (!vma.isAnonymous) return -EINVAL;
  yield* madviseFreeSingleVma(k, vma, from, to);
  return vma;
}

/**
 * madvise_free_single_vma and madvise_free_pte_range over [from, to) of a private anonymous VMA: an
 * MMU_NOTIFY_CLEAR invalidation around a walk that makes each present normal page lazily free.
 */
function* madviseFreeSingleVma(k: Kernel, vma: Vma, from: number, to: number): Kfn<void> {
  const mm = vma.mm;
  const cpu = k.sched.current().cpu;
  const pages = k.pages;
  lruAddDrain(k, cpu);
  const range = hasNotifiers(mm, from, to) ? notifierRange(mm, vma, from, to, MMU_NOTIFY_CLEAR) : null;
  if (range !== null) yield* mmuNotifierInvalidateRangeStart(k, range);
  // madvise_free_huge_pmd: a THP wholly in the range is made lazily free whole; one only partly in it
  // is split, and its pages go through the walk below.
  const lazyfree: number[] = yield* madviseFreeHugePmds(k, vma, from, to);
  let vpn = from;
  let cleaned = false;
  while (vpn < to) {
    const tableEnd = Math.min(to, (Math.floor(vpn / 512) + 1) * 512);
    const table = k.pt.lookupTable(mm.root, vpn);
    if (table >= 0) {
      if (k.sched.contended || !k.ptl.tryLock(table))
        yield* k.ptl.lock(table, "madvise_free_pte_range: pte_offset_map_lock");
      for (let v = vpn; v < tableEnd; v++) {
        const slot = PageTables.slot(table, v);
        const pte = k.pt.entries[slot]!;
        // Not present (device-private, migration entries): hmmsim has no swap entries to drop.
        if (!ptePresent(pte) || pteSpecial(pte)) continue;
        const pfn = pteFrame(pte);
        // vm_normal_folio: neither the zero page nor device memory.
        if (pfn === ZERO_PFN || pages.isZoneDevice(pfn)) continue;
        if (pages.has(pfn, PG_dirty)) {
          if (!trylockPage(k, pfn)) continue;
          // A page a fork still shares keeps its dirty state and stays as it was.
          if (pages.mapcount[pfn] !== 1) {
            unlockPage(k, pfn);
            continue;
          }
          pages.clear(pfn, PG_dirty);
          unlockPage(k, pfn);
        }
        k.pt.entries[slot] = pteWithBits(pte, 0, _PAGE_ACCESSED | _PAGE_DIRTY);
        cleaned = true;
        // folio_mark_lazyfree: only an anonymous, swap-backed page on an LRU list.
        if (pages.isAnon(pfn) && pages.has(pfn, PG_swapbacked) && pages.has(pfn, PG_lru)) lazyfree.push(pfn);
      }
      // tlb_remove_tlb_entry of each cleaned PTE, flushed before the lock goes: a CPU whose TLB still
      // held a dirty entry would write without setting the PTE's dirty bit again, and reclaim would
      // drop the page as clean.
      if (cleaned) k.tlb.flushRange(mm.id, vpn, tableEnd);
      cleaned = false;
      k.ptl.unlock(table);
    }
    vpn = tableEnd;
  }
  // lru_lazyfree, without a scheduling point between taking a page off its list and putting it back.
  for (const pfn of lazyfree) {
    lruDel(k, pfn);
    pages.clear(pfn, PG_active | PG_referenced | PG_swapbacked);
    lruCacheAdd(k, pfn, cpu);
  }
  if (lazyfree.length > 0) lruAddDrain(k, cpu);
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
}

/**
 * hugepage_madvise and madvise_update_vma: MADV_HUGEPAGE sets VM_HUGEPAGE and clears VM_NOHUGEPAGE,
 * MADV_NOHUGEPAGE the other way round. A VMA whose flags change is split to the range first.
 */
function* hugepageMadvise(k: Kernel, vma: Vma, from: number, to: number, behavior: number): Kfn<VmaResult> {
  const newFlags =
    behavior === MADV_HUGEPAGE
      ? (vma.flags & ~VM_NOHUGEPAGE) | VM_HUGEPAGE
      : (vma.flags & ~VM_HUGEPAGE) | VM_NOHUGEPAGE;
  if (newFlags === vma.flags) return vma;
  // madvise_update_vma's split: EINVAL inside a huge page of a hugetlb VMA (hugetlb_vm_op_split), and
  // vma_adjust_trans_huge's split of a huge PMD the new boundary cuts.
  const split = hugetlbMaySplit(vma.mm, from, to);
  if (split !== 0) return split;
  yield* splitHugePmdsAround(k, vma.mm, from, to);
  const piece = isolateVma(vma, from, to);
  piece.flags = newFlags;
  return piece;
}
