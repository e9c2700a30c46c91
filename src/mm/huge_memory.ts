/**
 * Transparent huge pages for anonymous memory (mm/huge_memory.c): the huge-PMD fault paths
 * (do_huge_pmd_anonymous_page, the huge zero folio, do_huge_pmd_wp_page, huge_pmd_set_accessed),
 * zap_huge_pmd, and splitting a PMD mapping (__split_huge_pmd).
 *
 * Deliberate difference, the eager split: hmmsim never leaves a large folio mapped by PTEs. Wherever
 * the kernel splits a huge PMD and leaves the folio large, partially mapped and queued for a deferred
 * split (a partial munmap, mprotect, mremap or MADV_DONTNEED, a VMA split inside the 2 MiB,
 * make_device_exclusive's FOLL_SPLIT_PMD, a collect without MIGRATE_VMA_SELECT_COMPOUND), hmmsim
 * splits the folio in the same step (split_folio, as the deferred split or the caller's own split_folio
 * would later). So a large folio is mapped by exactly one huge PMD or not at all, and every PTE maps an
 * order-0 page; the unmapped part of a partially unmapped THP is freed at once rather than when the
 * deferred split runs.
 *
 * One more place splits where the kernel keeps the PMD, because a folio may only ever have one PMD
 * mapping here: fork (copy_huge_pmd shares the PMD write-protected with the child; hmmsim splits it
 * and copies the PTEs, so both sides keep COW at 4 KiB and hmm_range_fault reports order 0 after a
 * fork). The bytes each side reads are the kernel's; the PMD order and the split counters are not. And
 * a THP with pinned pages is split like any other by a partial munmap, mprotect or MADV_DONTNEED,
 * where the kernel's folio split fails on the extra references and leaves it PTE-mapped; the pins move
 * to their pages (migrate_vma_collect skips such a THP, as the kernel's failed split_folio does). Whole-PMD munmap, mprotect,
 * mremap, MADV_DONTNEED and MADV_FREE keep (or free) the PMD as the kernel does, and so does GUP
 * (follow_huge_pmd: the reference is the THP's) unless FOLL_SPLIT_PMD asks for the split.
 */
import { assert, assertAbout } from "../base/assert.js";
import { pmdObject, pteTableObject } from "../sched/objects.js";
import type { Kfn } from "../sched/thread.js";
import { trylockPage, unlockPage } from "./filemap.js";
import type { Kernel } from "./kernel.js";
import type { MmStruct, Vma } from "./mm_types.js";
import { VM_HUGEPAGE, VM_HUGETLB, VM_NOHUGEPAGE, VM_WRITE } from "./mm_types.js";
import {
  hasNotifiers,
  MMU_NOTIFY_CLEAR,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  notifierRange,
} from "./mmu_notifier.js";
import {
  assertPage,
  GUP_PIN_COUNTING_BIAS,
  HPAGE_PMD_NR,
  PG_active,
  PG_anon,
  PG_anon_exclusive,
  PG_dirty,
  PG_lru,
  PG_referenced,
  PG_swapbacked,
  PG_uptodate,
} from "./page.js";
import { ZERO_PFN } from "./page_alloc.js";
import {
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  _PAGE_PROTNONE,
  _PAGE_RW,
  _PAGE_SPECIAL,
  describePte,
  mkPte,
  pteDirty,
  pteFrame,
  pteWithBits,
  pteWrite,
} from "./pgtable.js";
import { anonVmaPrepare } from "./rmap.js";
import { lruAddAfter, lruAddDrainAll, lruCacheAdd } from "./swap.js";

/** VM_FAULT_FALLBACK: the huge-PMD path cannot handle the fault; handle_mm_fault goes on with PTEs. */
export const VM_FAULT_FALLBACK = 0x800;

/** The flags split_folio copies from the head to every page (__split_folio_to_order's list, those hmmsim has). */
const FLAGS_INHERITED_AT_SPLIT =
  PG_anon | PG_swapbacked | PG_uptodate | PG_dirty | PG_referenced | PG_active | PG_anon_exclusive;

/** The first vpn of the 2 MiB that holds vpn (haddr). */
export function hugeStart(vpn: number): number {
  return vpn - (vpn % HPAGE_PMD_NR);
}

/**
 * thp_vma_allowable_order(vma, ..., PMD_ORDER) with thp_vma_suitable_order, for a fault at vpn: an
 * anonymous private VMA that has not asked for MADV_NOHUGEPAGE, THP enabled for it (always, or madvise
 * with MADV_HUGEPAGE), and the whole aligned 2 MiB around vpn inside it. Not modelled: prctl
 * PR_SET_THP_DISABLE, shmem and file THPs, mTHP sizes below PMD.
 */
export function thpVmaSuitable(k: Kernel, vma: Vma, vpn: number): boolean {
  const enabled = k.thp.enabled;
  if (enabled === "never" || !vma.isAnonymous || (vma.flags & (VM_NOHUGEPAGE | VM_HUGETLB)) !== 0)
    return false;
  if (enabled === "madvise" && (vma.flags & VM_HUGEPAGE) === 0) return false;
  const start = hugeStart(vpn);
  return start >= vma.start && start + HPAGE_PMD_NR <= vma.end;
}

/** is_huge_zero_pmd: the leaf maps the huge zero folio. */
export function isHugeZeroPmd(k: Kernel, leaf: number): boolean {
  return leaf !== 0 && pteFrame(leaf) === k.hugeZeroPfn;
}

/** pmd_lock: takes the PMD lock, a scheduling point only when another thread could run. */
export function* pmdLock(k: Kernel, pmdKey: number, site: string): Kfn<void> {
  if (k.sched.contended || !k.pmdLock.tryLock(pmdKey)) yield* k.pmdLock.lock(pmdKey, site);
}

/**
 * mm_get_huge_zero_folio: the huge zero folio, allocated and zeroed on first use; -1 when no order-9
 * block is free (the fault falls back to PTEs).
 */
function getHugeZeroFolio(k: Kernel): number {
  if (k.hugeZeroPfn >= 0) return k.hugeZeroPfn;
  const head = k.ram.allocFolioPmd();
  if (head < 0) return -1;
  k.store.zeroFolio(head, HPAGE_PMD_NR);
  k.pages.set(head, PG_uptodate);
  // The allocation's reference is the kernel's own (huge_zero_folio), counted by the checker.
  k.pages.handOver(head);
  k.hugeZeroPfn = head;
  return head;
}

/**
 * folio_add_new_anon_rmap at PMD level with RMAP_EXCLUSIVE, then folio_add_lru_vma and the RSS count
 * (map_anon_folio_pmd): the new folio's allocation reference becomes the PMD's. PageAnonExclusive is
 * kept on the head only while PMD-mapped; a split copies it to every page.
 */
function mapAnonFolioPmd(k: Kernel, vma: Vma, pmdKey: number, first: number, head: number): void {
  const pages = k.pages;
  assert(vma.anonVma !== null, "THP in a VMA with no anon_vma", () => vma.toString());
  assertPage(
    pages.isLargeHead(head) && pages.folioMapcount(head) === 0,
    "new anon rmap of a mapped folio",
    pages,
    head,
  );
  pages.entireMapcount[head / HPAGE_PMD_NR] = 1;
  pages.set(head, PG_anon | PG_anon_exclusive | PG_swapbacked | PG_uptodate);
  pages.mapping[head] = vma.anonVma.id;
  pages.index[head] = vma.linearIndex(first);
  vma.mm.rssAnon += HPAGE_PMD_NR;
  lruCacheAdd(k, head, k.sched.current().cpu);
  const writable = (vma.flags & VM_WRITE) !== 0 ? _PAGE_RW : 0;
  k.pt.setPmdLeaf(pmdKey, mkPte(head, writable | _PAGE_DIRTY | _PAGE_ACCESSED));
  pages.handOver(head);
}

/**
 * The huge-PMD part of __handle_mm_fault for a fault at vpn: create_huge_pmd (do_huge_pmd_anonymous_page)
 * where the PMD is none and the VMA allows a THP there, wp_huge_pmd or huge_pmd_set_accessed where a
 * huge PMD maps it. VM_FAULT_FALLBACK sends the fault on to the PTE level (the PMD has a table, THP is
 * not allowed, a huge page could not be allocated, or the huge PMD was split).
 */
export function* hugePmdFault(k: Kernel, vma: Vma, vpn: number, write: boolean): Kfn<number> {
  const pmdKey = k.pt.lookupPmd(vma.mm.root, vpn);
  const leaf = pmdKey < 0 ? 0 : k.pt.pmdLeaf(pmdKey);
  if (leaf === 0) {
    if (pmdKey >= 0 && !k.pt.pmdNone(pmdKey)) return VM_FAULT_FALLBACK;
    if (!thpVmaSuitable(k, vma, vpn)) return VM_FAULT_FALLBACK;
    return yield* doHugePmdAnonymousPage(k, vma, vpn, write);
  }
  k.sched.touch(pmdObject(pmdKey));
  if (write && !pteWrite(leaf)) return yield* doHugePmdWpPage(k, vma, vpn, pmdKey, leaf);
  // huge_pmd_set_accessed: mark the PMD young (and dirty on a write) under its lock.
  yield* pmdLock(k, pmdKey, "huge_pmd_set_accessed: pmd_lock, pmd_same recheck");
  if (k.pt.pmdLeaf(pmdKey) === leaf)
    k.pt.setPmdLeaf(pmdKey, pteWithBits(leaf, _PAGE_ACCESSED | (write ? _PAGE_DIRTY : 0), 0));
  k.pmdLock.unlock(pmdKey);
  return 0;
}

/**
 * do_huge_pmd_anonymous_page: a read maps the huge zero folio (with use_zero_page), a write a new zeroed
 * THP; when the order-9 allocation fails the fault falls back to a 4 KiB page (thp_fault_fallback).
 */
function* doHugePmdAnonymousPage(k: Kernel, vma: Vma, vpn: number, write: boolean): Kfn<number> {
  anonVmaPrepare(k, vma);
  const first = hugeStart(vpn);
  if (!write && k.thp.useZeroPage) {
    const zero = getHugeZeroFolio(k);
    if (zero < 0) {
      k.stats.thpFaultFallback++;
      return VM_FAULT_FALLBACK;
    }
    const pmdKey = k.pt.ensurePmd(vma.mm.root, vpn);
    yield* pmdLock(k, pmdKey, "do_huge_pmd_anonymous_page: pmd_lock, set_huge_zero_folio");
    // set_huge_zero_folio: read-only, never dirty; no reference or mapcount on the zero folio.
    if (k.pt.pmdNone(pmdKey)) k.pt.setPmdLeaf(pmdKey, mkPte(zero, _PAGE_ACCESSED));
    k.pmdLock.unlock(pmdKey);
    return 0;
  }
  const head = k.ram.allocFolioPmd();
  if (head < 0) {
    k.stats.thpFaultFallback++;
    return VM_FAULT_FALLBACK;
  }
  k.store.zeroFolio(head, HPAGE_PMD_NR);
  const pmdKey = k.pt.ensurePmd(vma.mm.root, vpn);
  yield* pmdLock(k, pmdKey, "__do_huge_pmd_anonymous_page: pmd_lock, pmd_none recheck");
  if (!k.pt.pmdNone(pmdKey)) {
    // Another thread mapped the range first: the access retries through its mapping.
    k.pmdLock.unlock(pmdKey);
    k.pages.put(head);
    return 0;
  }
  mapAnonFolioPmd(k, vma, pmdKey, first, head);
  k.pmdLock.unlock(pmdKey);
  k.stats.thpFaultAlloc++;
  return 0;
}

/**
 * do_huge_pmd_wp_page: a write to a read-only huge PMD. The huge zero folio is replaced by a new THP
 * (do_huge_zero_wp_pmd, "mm: Allocate THP on hugezeropage wp-fault"), or split when none can be had; an
 * anonymous THP exclusive to this mapping is reused (made writable); anything else is split and the
 * fault falls back to PTE-level COW.
 */
function* doHugePmdWpPage(k: Kernel, vma: Vma, vpn: number, pmdKey: number, leaf: number): Kfn<number> {
  const head = pteFrame(leaf);
  if (head === k.hugeZeroPfn) {
    const folio = k.ram.allocFolioPmd();
    if (folio >= 0) {
      k.store.zeroFolio(folio, HPAGE_PMD_NR);
      // do_huge_zero_wp_pmd brackets the replacement with an MMU_NOTIFY_CLEAR invalidation of the
      // 2 MiB, so a device mirroring the zero folio drops it before the new THP is written.
      const first = hugeStart(vpn);
      const mm = vma.mm;
      const range = hasNotifiers(mm, first, first + HPAGE_PMD_NR)
        ? notifierRange(mm, vma, first, first + HPAGE_PMD_NR, MMU_NOTIFY_CLEAR)
        : null;
      if (range !== null) yield* mmuNotifierInvalidateRangeStart(k, range);
      yield* pmdLock(k, pmdKey, "do_huge_zero_wp_pmd: pmd_lock, pmd_same recheck");
      if (k.pt.pmdLeaf(pmdKey) !== leaf) {
        k.pmdLock.unlock(pmdKey);
        if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
        k.pages.put(folio);
        return 0;
      }
      // pmdp_huge_clear_flush, then map_anon_folio_pmd.
      k.pt.setPmdLeaf(pmdKey, 0);
      k.tlb.flushRange(mm.id, first, first + HPAGE_PMD_NR);
      mapAnonFolioPmd(k, vma, pmdKey, first, folio);
      k.pmdLock.unlock(pmdKey);
      if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
      k.stats.thpFaultAlloc++;
      return 0;
    }
    k.stats.thpFaultFallback++;
  } else if (k.pages.has(head, PG_anon_exclusive)) {
    yield* pmdLock(k, pmdKey, "do_huge_pmd_wp_page: pmd_lock, reuse");
    if (k.pt.pmdLeaf(pmdKey) === leaf)
      k.pt.setPmdLeaf(pmdKey, pteWithBits(leaf, _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED, 0));
    k.pmdLock.unlock(pmdKey);
    return 0;
  }
  yield* splitHugePmd(k, vma, vpn);
  return VM_FAULT_FALLBACK;
}

/**
 * split_huge_pmd(vma, pmd, address): takes the PMD lock and, if a huge PMD still maps the 2 MiB at vpn,
 * splits it (see splitHugePmdLocked).
 */
export function* splitHugePmd(k: Kernel, vma: Vma, vpn: number): Kfn<void> {
  assertAbout((vma.flags & VM_HUGETLB) === 0, "splitting a hugetlb PMD", String, vma);
  const mm = vma.mm;
  const pmdKey = k.pt.lookupPmd(mm.root, vpn);
  if (pmdKey < 0 || k.pt.pmdLeaf(pmdKey) === 0) return;
  // __split_huge_pmd brackets the split with an MMU_NOTIFY_CLEAR invalidation of the 2 MiB.
  const first = hugeStart(vpn);
  const range = hasNotifiers(mm, first, first + HPAGE_PMD_NR)
    ? notifierRange(mm, vma, first, first + HPAGE_PMD_NR, MMU_NOTIFY_CLEAR)
    : null;
  if (range !== null) yield* mmuNotifierInvalidateRangeStart(k, range);
  yield* pmdLock(k, pmdKey, "__split_huge_pmd: pmd_lock");
  if (k.pt.pmdLeaf(pmdKey) !== 0) splitHugePmdLocked(k, vma, pmdKey, first);
  k.pmdLock.unlock(pmdKey);
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
}

/**
 * Splits every huge PMD of vma's mm that maps part of [start, end), in address order (the walkers that
 * have no huge-PMD case of their own in hmmsim call it first). Each split takes its PMD lock.
 */
export function* splitHugePmdsIn(k: Kernel, vma: Vma, start: number, end: number): Kfn<void> {
  if (k.pt.hugePmds === 0) return;
  for (const first of hugePmdsMeeting(k, vma, start, end)) yield* splitHugePmd(k, vma, first);
}

/**
 * madvise_free_huge_pmd for every huge PMD of vma that meets [start, end), under its lock: the huge
 * zero PMD is left alone; a THP only partly in the range, or shared with another mapping, is split
 * (its pages then go through the PTE walk) or skipped; a THP wholly in it stays PMD-mapped, its folio
 * clean (a locked folio is skipped) and its PMD old and clean, with the TLB flushed. Returns the heads
 * to make lazily free (folio_mark_lazyfree).
 */
export function* madviseFreeHugePmds(k: Kernel, vma: Vma, start: number, end: number): Kfn<number[]> {
  const lazyfree: number[] = [];
  if (k.pt.hugePmds === 0) return lazyfree;
  const pages = k.pages;
  for (const first of hugePmdsMeeting(k, vma, start, end)) {
    if (first < start || first + HPAGE_PMD_NR > end) {
      yield* splitHugePmd(k, vma, first);
      continue;
    }
    const pmdKey = k.pt.lookupPmd(vma.mm.root, first);
    yield* pmdLock(k, pmdKey, "madvise_free_huge_pmd: pmd_trans_huge_lock");
    const leaf = k.pt.pmdLeaf(pmdKey);
    const head = pteFrame(leaf);
    // folio_maybe_mapped_shared: another mapping may still want the data; folio_trylock.
    if (leaf !== 0 && head !== k.hugeZeroPfn && pages.folioMapcount(head) === 1 && trylockPage(k, head)) {
      pages.clear(head, PG_dirty);
      unlockPage(k, head);
      if ((leaf & (_PAGE_ACCESSED | _PAGE_DIRTY)) !== 0) {
        k.pt.setPmdLeaf(pmdKey, pteWithBits(leaf, 0, _PAGE_ACCESSED | _PAGE_DIRTY));
        k.tlb.flushRange(vma.mm.id, first, first + HPAGE_PMD_NR);
      }
      if (pages.isAnon(head) && pages.has(head, PG_swapbacked) && pages.has(head, PG_lru))
        lazyfree.push(head);
    }
    k.pmdLock.unlock(pmdKey);
  }
  return lazyfree;
}

/**
 * vma_adjust_trans_huge and the partial-range cases of the zap and protection walkers: splits the huge
 * PMDs that straddle `start` or `end` (a huge PMD wholly inside [start, end) is left whole).
 */
export function* splitHugePmdsAtEdges(k: Kernel, vma: Vma, start: number, end: number): Kfn<void> {
  if (k.pt.hugePmds === 0) return;
  for (const edge of [start, end]) {
    if (edge % HPAGE_PMD_NR === 0 || !vma.contains(edge)) continue;
    yield* splitHugePmd(k, vma, edge);
  }
}

/**
 * vma_adjust_trans_huge for VMAs about to be split at `start` and `end` (isolateVma, isolateRange): the
 * huge PMDs of `mm` that straddle either point are split, so that no huge PMD crosses a VMA boundary.
 */
export function* splitHugePmdsAround(k: Kernel, mm: MmStruct, start: number, end: number): Kfn<void> {
  if (k.pt.hugePmds === 0) return;
  for (const edge of [start, end]) {
    if (edge % HPAGE_PMD_NR === 0) continue;
    const vma = mm.findVma(edge);
    if (vma !== null) yield* splitHugePmd(k, vma, edge);
  }
}

/** The first vpn of every huge PMD of vma's mm that maps part of [start, end). */
function hugePmdsMeeting(k: Kernel, vma: Vma, start: number, end: number): number[] {
  const firsts: number[] = [];
  k.pt.forEachPmdLeaf(vma.mm.root, start, end, (_pmdKey, first) => {
    firsts.push(first);
  });
  return firsts;
}

/**
 * __split_huge_pmd_locked with the eager folio split (see the file comment), under the PMD lock: the
 * huge zero folio's PMD becomes 512 PTEs of the zero page (__split_huge_zero_page_pmd); a THP's becomes
 * 512 PTEs of its pages, each keeping the PMD's write, dirty and young bits, and the folio becomes 512
 * order-0 pages, each mapped once with one reference (its PTE's), the head keeping the references
 * others hold. The TLB is flushed for the range (pmdp_invalidate).
 */
export function splitHugePmdLocked(k: Kernel, vma: Vma, pmdKey: number, first: number): void {
  const leaf = k.pt.pmdLeaf(pmdKey);
  assertAbout(leaf !== 0, "splitting a PMD that is not huge", String, pmdKey);
  assert(
    first % HPAGE_PMD_NR === 0 && first >= vma.start && first + HPAGE_PMD_NR <= vma.end,
    "huge PMD outside its VMA",
    () => `${first} ${vma}`,
  );
  k.sched.touch(pmdObject(pmdKey));
  const head = pteFrame(leaf);
  k.pt.setPmdLeaf(pmdKey, 0);
  const table = k.pt.tableForPmd(pmdKey);
  k.sched.touch(pteTableObject(table));
  const entries = k.pt.entries;
  const base = table * HPAGE_PMD_NR;
  k.stats.thpSplitPmd++;
  if (head === k.hugeZeroPfn) {
    entries.fill(
      mkPte(ZERO_PFN, _PAGE_SPECIAL | (leaf & (_PAGE_ACCESSED | _PAGE_PROTNONE))),
      base,
      base + HPAGE_PMD_NR,
    );
  } else {
    // folio_set_dirty from a dirty PMD comes first, so that every page inherits it.
    if (pteDirty(leaf)) k.pages.set(head, PG_dirty);
    splitMappedFolio(k, head);
    const bits = leaf & (_PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_PROTNONE);
    for (let i = 0; i < HPAGE_PMD_NR; i++) entries[base + i] = mkPte(head + i, bits);
  }
  k.tlb.flushRange(vma.mm.id, first, first + HPAGE_PMD_NR);
}

/**
 * split_folio of a PMD-mapped anonymous THP whose PMD is being replaced by PTEs: every page becomes an
 * order-0 page mapped once, with the head's flags, anon_vma and consecutive indices, following the head
 * on its LRU list (lru_add_split_folio). A folio still in a per-CPU LRU add batch is drained first:
 * the kernel's split would fail on the batch's reference and be retried by the deferred split.
 */
function splitMappedFolio(k: Kernel, head: number): void {
  const pages = k.pages;
  assertPage(
    pages.isLargeHead(head) && pages.entireMapcount[head / HPAGE_PMD_NR] === 1,
    "splitting a folio not mapped by one PMD",
    pages,
    head,
  );
  if (!pages.has(head, PG_lru)) lruAddDrainAll(k);
  pages.entireMapcount[head / HPAGE_PMD_NR] = 0;
  pages.clearCompound(head);
  const inherited = pages.flags[head]! & FLAGS_INHERITED_AT_SPLIT;
  const mapping = pages.mapping[head]!;
  const index = pages.index[head]!;
  for (let i = 0; i < HPAGE_PMD_NR; i++) {
    const pfn = head + i;
    pages.mapcount[pfn] = 1;
    if (i === 0) continue;
    pages.flags[pfn]! |= inherited;
    pages.mapping[pfn] = mapping;
    pages.index[pfn] = index + i;
    pages.refcount[pfn] = 1;
  }
  // GUP's references were the folio's (its head's): each goes to the page it was taken for.
  const ledger = k.gupLedger;
  if (ledger !== null && (ledger.gets.size > 0 || ledger.pins.size > 0)) {
    for (let i = 1; i < HPAGE_PMD_NR; i++) {
      const refs =
        (ledger.gets.get(head + i) ?? 0) + (ledger.pins.get(head + i) ?? 0) * GUP_PIN_COUNTING_BIAS;
      pages.refcount[head]! -= refs;
      pages.refcount[head + i]! += refs;
    }
  }
  if (pages.has(head, PG_lru)) for (let i = 1; i < HPAGE_PMD_NR; i++) lruAddAfter(k, head + i - 1, head + i);
  k.stats.thpSplitPage++;
}

/**
 * zap_huge_pmd: clears a huge PMD wholly inside the zapped range and drops its rmap and reference
 * (folio_remove_rmap_pmd, tlb_remove_page_size); the huge zero folio's PMD holds neither.
 */
export function zapHugePmd(k: Kernel, vma: Vma, pmdKey: number, first: number): void {
  const leaf = k.pt.pmdLeaf(pmdKey);
  assertAbout(leaf !== 0, "zap_huge_pmd of a PMD that is not huge", describePte, leaf);
  k.sched.touch(pmdObject(pmdKey));
  k.pt.setPmdLeaf(pmdKey, 0);
  k.tlb.flushRange(vma.mm.id, first, first + HPAGE_PMD_NR);
  const head = pteFrame(leaf);
  if (head === k.hugeZeroPfn) return;
  const pages = k.pages;
  assertPage(
    pages.entireMapcount[head / HPAGE_PMD_NR]! > 0,
    "zap of a huge PMD whose folio is not PMD-mapped",
    pages,
    head,
  );
  if (pteDirty(leaf)) pages.set(head, PG_dirty);
  pages.entireMapcount[head / HPAGE_PMD_NR]!--;
  vma.mm.rssAnon -= HPAGE_PMD_NR;
  pages.putStructural(head);
}
