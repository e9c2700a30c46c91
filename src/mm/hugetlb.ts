/**
 * hugetlbfs for MAP_HUGETLB (mm/hugetlb.c, fs/hugetlbfs/inode.c): a pool of 2 MiB folios set aside from
 * the buddy allocator (nr_hugepages), private anonymous mappings backed by them, faults that map a whole
 * folio by a PMD, copy-on-write across fork at 2 MiB, mprotect, unmap, and VMA boundaries that may not
 * cut a huge page.
 *
 * Deliberate differences, each where the hmm-tests need nothing more:
 * - one hstate, 2 MiB (MAP_HUGE_1GB is EINVAL, as on a kernel with no 1 GiB pool);
 * - no reservation map: mmap succeeds when enough huge pages are free at that moment, and a fault takes
 *   any free one (SIGBUS when none is, which reservations exist to prevent); MAP_NORESERVE does not
 *   skip that check (the kernel then maps without reserving and may SIGBUS later); no surplus pages
 *   (shrinking nr_hugepages below the folios in use leaves them in the pool) and no overcommit;
 * - no hugetlb fault mutex: two faults of one huge page may both take a folio, and the one that finds
 *   the entry changed gives its folio back;
 * - private mappings only: MAP_SHARED | MAP_HUGETLB is EINVAL (the kernel backs it with a hugetlbfs
 *   inode's page cache); no hugetlbfs files or SysV SHM_HUGETLB;
 * - mremap of a hugetlb VMA is EINVAL (the kernel moves one whose addresses and lengths are aligned);
 *   MADV_DONTNEED is EINVAL on it, as before 5.18;
 * - a hugetlb folio is not counted in RSS (the kernel counts it in hugetlb_usage, not the RSS counters);
 *   it is never on an LRU, never migrated by migrate_vma (EINVAL) and never split.
 */
import { assert, assertAbout } from "../base/assert.js";
import { EINVAL, ENOMEM } from "../base/errno.js";
import { pmdObject } from "../sched/objects.js";
import type { Kfn } from "../sched/thread.js";
import { pmdLock } from "./huge_memory.js";
import type { Kernel } from "./kernel.js";
import { type MmStruct, VM_ACCESS_FLAGS, VM_HUGETLB, VM_SHARED, VM_WRITE, type Vma } from "./mm_types.js";
import {
  hasNotifiers,
  MMU_NOTIFY_CLEAR,
  MMU_NOTIFY_PROTECTION_VMA,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  notifierRange,
} from "./mmu_notifier.js";
import {
  assertPage,
  HPAGE_PMD_NR,
  PG_anon,
  PG_anon_exclusive,
  PG_dirty,
  PG_head,
  PG_hugetlb,
  PG_uptodate,
} from "./page.js";
import {
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  _PAGE_PROTNONE,
  _PAGE_RW,
  mkPte,
  pteFrame,
  pteWithBits,
  pteWrite,
} from "./pgtable.js";
import { anonVmaPrepare } from "./rmap.js";

/** VM_FAULT_SIGBUS (memory.ts has the full set; repeated here to keep the import graph acyclic). */
const VM_FAULT_SIGBUS = 0x2;

/** The flags a hugetlb folio loses when it goes back to the pool (free_huge_folio). */
const FLAGS_CLEARED_IN_POOL = PG_anon | PG_anon_exclusive | PG_dirty | PG_uptodate;

/** The 2 MiB hstate's pool: nr_hugepages folios, the free ones listed by head. */
export class HugetlbPool {
  /** Heads of the free folios, highest first, so that pop() hands out the lowest. */
  readonly free: number[] = [];
  /** nr_hugepages: folios in the pool, free or in use. */
  total = 0;

  /** free_huge_pages. */
  get freeCount(): number {
    return this.free.length;
  }

  /** Whether `head` is a free folio of the pool (for the checker). */
  isFree(head: number): boolean {
    return this.free.includes(head);
  }

  /** Adds a free folio, keeping the list highest first. */
  addFree(head: number): void {
    let at = this.free.length;
    while (at > 0 && this.free[at - 1]! < head) at--;
    this.free.splice(at, 0, head);
  }
}

/** is_vm_hugetlb_page. */
export function isVmHugetlbPage(vma: Vma): boolean {
  return (vma.flags & VM_HUGETLB) !== 0;
}

/**
 * set_max_huge_pages (writing /proc/sys/vm/nr_hugepages): grows the pool with order-9 folios from the
 * buddy allocator while it can, or shrinks it by freeing free folios (one in use stays). Returns the
 * new nr_hugepages, which may be short of `count` when RAM has no aligned 2 MiB left.
 */
export function setMaxHugePages(k: Kernel, count: number): number {
  const pool = k.hugetlb;
  const pages = k.pages;
  while (pool.total < count) {
    const head = k.ram.allocFolioPmd();
    if (head < 0) break;
    // prep_new_hugetlb_folio: a free pool folio has no references.
    pages.set(head, PG_hugetlb);
    pages.refcount[head] = 0;
    pages.heldRefs[head] = 0;
    pool.addFree(head);
    pool.total++;
  }
  while (pool.total > count && pool.freeCount > 0) {
    // update_and_free_hugetlb_folio: back to the buddy allocator, highest first.
    const head = pool.free.shift()!;
    pages.clear(head, PG_hugetlb);
    k.ram.freeFolio(head);
    pool.total--;
  }
  return pool.total;
}

/** alloc_hugetlb_folio: a free folio of the pool with one reference, held by the caller; -1 when none. */
function allocHugetlbFolio(k: Kernel): number {
  const head = k.hugetlb.free.pop();
  if (head === undefined) return -1;
  k.pages.initAllocated(head);
  return head;
}

/** free_huge_folio: the last reference to a hugetlb folio went; it returns to the pool. */
export function freeHugeFolio(k: Kernel, head: number): void {
  const pages = k.pages;
  assertPage(
    pages.has(head, PG_head | PG_hugetlb) && pages.folioMapcount(head) === 0,
    "freeing a hugetlb folio that is mapped or not one",
    pages,
    head,
  );
  pages.clear(head, FLAGS_CLEARED_IN_POOL);
  pages.mapping[head] = 0;
  pages.index[head] = 0;
  pages.heldRefs[head] = 0;
  k.hugetlb.addFree(head);
}

/**
 * hugetlb_reserve_pages' check for a private MAP_HUGETLB mapping of `pages` 4 KiB pages at vpn, which
 * mmap has already aligned to 2 MiB: ENOMEM when the pool has too few free folios. Returns 0 or -ENOMEM.
 */
export function hugetlbMmapCheck(k: Kernel, vpn: number, pages: number): number {
  assert(
    vpn % HPAGE_PMD_NR === 0 && pages % HPAGE_PMD_NR === 0,
    "hugetlb mapping not 2 MiB-aligned",
    () => `${vpn} ${pages}`,
  );
  return pages / HPAGE_PMD_NR > k.hugetlb.freeCount ? -ENOMEM : 0;
}

/**
 * hugetlb_vm_op_split (vm_ops->may_split), for every VMA split [start, end) would make in `mm`: EINVAL
 * when a boundary falls inside a huge page of a hugetlb VMA. Returns 0 or -EINVAL.
 */
export function hugetlbMaySplit(mm: MmStruct, start: number, end: number): number {
  for (const edge of [start, end]) {
    const vma = mm.findVma(edge);
    if (vma !== null && isVmHugetlbPage(vma) && vma.start !== edge && edge % HPAGE_PMD_NR !== 0)
      return -EINVAL;
  }
  return 0;
}

/** The page-table leaf of a hugetlb folio for vma: make_huge_pte, writable only when asked. */
function hugePte(vma: Vma, head: number, writable: boolean, dirty: boolean): number {
  const accessible = (vma.flags & VM_ACCESS_FLAGS) !== 0;
  return mkPte(
    head,
    _PAGE_ACCESSED |
      (writable ? _PAGE_RW : 0) |
      (dirty ? _PAGE_DIRTY : 0) |
      (accessible ? 0 : _PAGE_PROTNONE),
  );
}

/**
 * hugetlb_fault: no leaf → hugetlb_no_page (a new zeroed folio from the pool, mapped read-only on a
 * read and writable on a write, as hugetlb_no_page's hugetlb_wp of a private mapping leaves it); a write
 * to a read-only leaf → hugetlb_wp (reuse an exclusive folio, else copy it into a new one); otherwise
 * the leaf is marked young (and dirty). Returns 0 or VM_FAULT_SIGBUS (the pool is empty).
 */
export function* hugetlbFault(
  k: Kernel,
  vma: Vma,
  vpn: number,
  write: boolean,
  unshare: boolean,
): Kfn<number> {
  assertAbout(isVmHugetlbPage(vma), "hugetlb fault outside a hugetlb VMA", String, vma);
  const first = vpn - (vpn % HPAGE_PMD_NR);
  const pmdKey = k.pt.ensurePmd(vma.mm.root, vpn);
  k.sched.touch(pmdObject(pmdKey));
  const leaf = k.pt.pmdLeaf(pmdKey);
  if (leaf === 0) return yield* hugetlbNoPage(k, vma, first, pmdKey, write);
  if ((write || unshare) && !pteWrite(leaf)) return yield* hugetlbWp(k, vma, first, pmdKey, leaf, write);
  yield* pmdLock(k, pmdKey, "hugetlb_fault: huge_pte_lock");
  if (k.pt.pmdLeaf(pmdKey) === leaf)
    k.pt.setPmdLeaf(pmdKey, pteWithBits(leaf, _PAGE_ACCESSED | (write ? _PAGE_DIRTY : 0), 0));
  k.pmdLock.unlock(pmdKey);
  return 0;
}

function* hugetlbNoPage(k: Kernel, vma: Vma, first: number, pmdKey: number, write: boolean): Kfn<number> {
  anonVmaPrepare(k, vma);
  const head = allocHugetlbFolio(k);
  // hugetlb_pte_stable: SIGBUS only when the entry is still none; else another thread mapped it.
  if (head < 0) return k.pt.pmdNone(pmdKey) ? VM_FAULT_SIGBUS : 0;
  k.store.zeroFolio(head, HPAGE_PMD_NR);
  yield* pmdLock(k, pmdKey, "hugetlb_no_page: huge_pte_lock, huge_pte_none recheck");
  if (!k.pt.pmdNone(pmdKey)) {
    // Another thread mapped it first: this fault retries through its mapping.
    k.pmdLock.unlock(pmdKey);
    k.pages.put(head);
    return 0;
  }
  // hugetlb_add_new_anon_rmap: the folio is exclusive to this mapping.
  const pages = k.pages;
  assert(vma.anonVma !== null, "hugetlb folio in a VMA with no anon_vma");
  pages.entireMapcount[head / HPAGE_PMD_NR] = 1;
  pages.set(head, PG_anon | PG_anon_exclusive | PG_uptodate);
  pages.mapping[head] = vma.anonVma.id;
  pages.index[head] = vma.linearIndex(first);
  const writable = write && (vma.flags & VM_WRITE) !== 0;
  k.pt.setPmdLeaf(pmdKey, hugePte(vma, head, writable, write));
  pages.handOver(head);
  k.pmdLock.unlock(pmdKey);
  return 0;
}

/**
 * hugetlb_wp: a write (or FAULT_FLAG_UNSHARE, which leaves the leaf read-only) to a read-only leaf of a
 * private mapping. The folio is reused when this mapping is its only one (PageAnonExclusive, or mapped
 * once: folio_move_anon_rmap and SetPageAnonExclusive); otherwise a new folio from the pool gets a copy
 * and replaces it here (SIGBUS when the pool is empty).
 */
function* hugetlbWp(
  k: Kernel,
  vma: Vma,
  first: number,
  pmdKey: number,
  leaf: number,
  write: boolean,
): Kfn<number> {
  const pages = k.pages;
  const old = pteFrame(leaf);
  if (pages.has(old, PG_anon_exclusive) || pages.folioMapcount(old) === 1) {
    yield* pmdLock(k, pmdKey, "hugetlb_wp: reuse");
    if (k.pt.pmdLeaf(pmdKey) === leaf) {
      pages.set(old, PG_anon_exclusive);
      if (vma.anonVma !== null) pages.mapping[old] = vma.anonVma.id;
      k.pt.setPmdLeaf(pmdKey, hugePte(vma, old, write, write || (leaf & _PAGE_DIRTY) !== 0));
      k.tlb.flushRange(vma.mm.id, first, first + HPAGE_PMD_NR);
    }
    k.pmdLock.unlock(pmdKey);
    return 0;
  }
  anonVmaPrepare(k, vma);
  const head = allocHugetlbFolio(k);
  // The pool is empty: SIGBUS, unless another thread changed the entry meanwhile (hugetlb_pte_stable),
  // when the access retries through it.
  if (head < 0) return k.pt.pmdLeaf(pmdKey) === leaf ? VM_FAULT_SIGBUS : 0;
  k.store.copyFolio(head, old, HPAGE_PMD_NR);
  // hugetlb_wp brackets the replacement with an MMU_NOTIFY_CLEAR invalidation of the huge page, so a
  // device mirroring the old folio drops it.
  const mm = vma.mm;
  const range = hasNotifiers(mm, first, first + HPAGE_PMD_NR)
    ? notifierRange(mm, vma, first, first + HPAGE_PMD_NR, MMU_NOTIFY_CLEAR)
    : null;
  if (range !== null) yield* mmuNotifierInvalidateRangeStart(k, range);
  yield* pmdLock(k, pmdKey, "hugetlb_wp: huge_pte_lock, pte_same recheck");
  if (k.pt.pmdLeaf(pmdKey) !== leaf) {
    k.pmdLock.unlock(pmdKey);
    if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
    k.pages.put(head);
    return 0;
  }
  assert(vma.anonVma !== null, "hugetlb copy in a VMA with no anon_vma");
  pages.entireMapcount[head / HPAGE_PMD_NR] = 1;
  pages.set(head, PG_anon | PG_anon_exclusive | PG_uptodate);
  pages.mapping[head] = vma.anonVma.id;
  pages.index[head] = vma.linearIndex(first);
  k.pt.setPmdLeaf(pmdKey, hugePte(vma, head, write, write));
  k.tlb.flushRange(vma.mm.id, first, first + HPAGE_PMD_NR);
  pages.handOver(head);
  // hugetlb_remove_rmap and the PTE's reference on the old folio.
  pages.entireMapcount[old / HPAGE_PMD_NR]!--;
  pages.putStructural(old);
  k.pmdLock.unlock(pmdKey);
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
  return 0;
}

/**
 * __unmap_hugepage_range over [start, end) of a hugetlb VMA (both 2 MiB-aligned): each leaf is cleared
 * under its lock, the TLB flushed, and the folio loses its mapping and the PTE's reference (back to the
 * pool when that was the last). The caller brackets it with the MMU notifier.
 */
export function* unmapHugepageRange(k: Kernel, vma: Vma, start: number, end: number): Kfn<void> {
  assert(
    start % HPAGE_PMD_NR === 0 && end % HPAGE_PMD_NR === 0,
    "hugetlb unmap of part of a huge page",
    () => `${start}..${end}`,
  );
  const pages = k.pages;
  for (let first = start; first < end; first += HPAGE_PMD_NR) {
    const pmdKey = k.pt.lookupPmd(vma.mm.root, first);
    if (pmdKey < 0 || k.pt.pmdLeaf(pmdKey) === 0) continue;
    yield* pmdLock(k, pmdKey, "__unmap_hugepage_range: huge_pte_lock");
    const leaf = k.pt.pmdLeaf(pmdKey);
    if (leaf !== 0) {
      k.pt.setPmdLeaf(pmdKey, 0);
      k.tlb.flushRange(vma.mm.id, first, first + HPAGE_PMD_NR);
      const head = pteFrame(leaf);
      if ((leaf & _PAGE_DIRTY) !== 0) pages.set(head, PG_dirty);
      pages.entireMapcount[head / HPAGE_PMD_NR]!--;
      pages.putStructural(head);
    }
    k.pmdLock.unlock(pmdKey);
  }
}

/**
 * copy_hugetlb_page_range for fork: the child maps the parent's folios, both read-only (COW); each folio
 * is shared (hugetlb_try_dup_anon_rmap clears PageAnonExclusive) and gains the child's mapping and
 * reference. Deliberate difference: a folio that may be DMA-pinned is shared too, where the kernel
 * copies it for the child.
 */
export function* copyHugetlbPageRange(k: Kernel, dst: Vma, src: Vma): Kfn<number> {
  const pages = k.pages;
  const cow = (src.flags & VM_SHARED) === 0;
  for (let first = src.start - (src.start % HPAGE_PMD_NR); first < src.end; first += HPAGE_PMD_NR) {
    const srcKey = k.pt.lookupPmd(src.mm.root, first);
    if (srcKey < 0 || k.pt.pmdLeaf(srcKey) === 0) continue;
    const dstKey = k.pt.ensurePmd(dst.mm.root, first);
    yield* pmdLock(k, srcKey, "copy_hugetlb_page_range: huge_pte_lock of the parent");
    let leaf = k.pt.pmdLeaf(srcKey);
    if (leaf !== 0) {
      if (cow && pteWrite(leaf)) {
        leaf -= _PAGE_RW;
        k.pt.setPmdLeaf(srcKey, leaf);
        k.tlb.flushRange(src.mm.id, first, first + HPAGE_PMD_NR);
      }
      const head = pteFrame(leaf);
      pages.clear(head, PG_anon_exclusive);
      pages.entireMapcount[head / HPAGE_PMD_NR]!++;
      pages.getStructural(head);
      k.pt.setPmdLeaf(dstKey, leaf);
    }
    k.pmdLock.unlock(srcKey);
  }
  return 0;
}

/**
 * hugetlb_change_protection over [start, end) of a hugetlb VMA whose flags are now `vma.flags`: each
 * leaf takes the new protection, read-only in a private mapping (PAGE_COPY: a write goes through
 * hugetlb_wp, which reuses an exclusive folio), inaccessible under PROT_NONE.
 */
export function* hugetlbChangeProtection(k: Kernel, vma: Vma, start: number, end: number): Kfn<void> {
  // An MMU_NOTIFY_PROTECTION_VMA invalidation around the walk, as for 4 KiB pages.
  const mm = vma.mm;
  const range = hasNotifiers(mm, start, end)
    ? notifierRange(mm, vma, start, end, MMU_NOTIFY_PROTECTION_VMA)
    : null;
  if (range !== null) yield* mmuNotifierInvalidateRangeStart(k, range);
  for (let first = start; first < end; first += HPAGE_PMD_NR) {
    const pmdKey = k.pt.lookupPmd(vma.mm.root, first);
    if (pmdKey < 0 || k.pt.pmdLeaf(pmdKey) === 0) continue;
    yield* pmdLock(k, pmdKey, "hugetlb_change_protection: huge_pte_lock");
    const leaf = k.pt.pmdLeaf(pmdKey);
    if (leaf !== 0) {
      k.pt.setPmdLeaf(pmdKey, hugePte(vma, pteFrame(leaf), false, (leaf & _PAGE_DIRTY) !== 0));
      k.tlb.flushRange(vma.mm.id, first, first + HPAGE_PMD_NR);
    }
    k.pmdLock.unlock(pmdKey);
  }
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
}
