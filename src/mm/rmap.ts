/**
 * The reverse map (mm/rmap.c): which PTEs map a page, for anonymous pages through their anon_vma and
 * for file pages through their address_space; and the two rmap users migration needs, try_to_migrate
 * and remove_migration_ptes.
 *
 * Deliberate differences: the anon_vma and i_mmap locks are not modelled; a walk that yields re-reads
 * the live VMA set instead (see rmapWalk); there are no huge mappings.
 */
import { assert, fail } from "../base/assert.js";
import type { Kfn } from "../sched/thread.js";
import type { Kernel } from "./kernel.js";
import { AnonVma, VM_ACCESS_FLAGS, VM_WRITE, type Vma } from "./mm_types.js";
import {
  hasNotifiers,
  MMU_NOTIFY_CLEAR,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  notifierRange,
} from "./mmu_notifier.js";
import {
  assertPage,
  folioMaybeDmaPinned,
  PG_anon,
  PG_anon_exclusive,
  PG_dirty,
  PG_swapbacked,
} from "./page.js";
import {
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  _PAGE_PROTNONE,
  _PAGE_RW,
  isDeviceExclusiveEntry,
  isDevicePrivateEntry,
  isMigrationEntry,
  isReadableMigrationEntry,
  isWritableDevicePrivateEntry,
  isWritableMigrationEntry,
  makeDevicePrivateEntry,
  makeUnmapMigrationEntry,
  mkPte,
  PageTables,
  pteDirty,
  pteFrame,
  ptePresent,
  pteSpecial,
  pteWrite,
  pteYoung,
} from "./pgtable.js";

/** anon_vma_prepare: gives a VMA its own anon_vma on its first anonymous page. */
export function anonVmaPrepare(k: Kernel, vma: Vma): AnonVma {
  if (vma.anonVma !== null) return vma.anonVma;
  const anonVma = k.newAnonVma(null);
  anonVma.link(vma);
  vma.anonVma = anonVma;
  vma.anonVmaChain.push(anonVma);
  return anonVma;
}

/** Links `vma` into every anon_vma `from` is linked into (anon_vma_clone, for split and fork). */
export function anonVmaClone(vma: Vma, from: Vma): void {
  for (const anonVma of from.anonVmaChain) {
    anonVma.link(vma);
    vma.anonVmaChain.push(anonVma);
  }
  vma.anonVma = from.anonVma;
}

/** unlink_anon_vmas: the VMA is going away. */
export function unlinkAnonVmas(vma: Vma): void {
  for (const anonVma of vma.anonVmaChain) anonVma.unlink(vma);
  vma.anonVmaChain = [];
  if (vma.file !== null) vma.file.mmaps.delete(vma);
}

/** folio_add_new_anon_rmap: a new anonymous page, mapped once, exclusively. */
export function pageAddNewAnonRmap(k: Kernel, pfn: number, vma: Vma, vpn: number): void {
  const pages = k.pages;
  assert(vma.anonVma !== null, "new anon rmap in a VMA with no anon_vma", () => vma.toString());
  assertPage(pages.mapcount[pfn] === 0, "new anon rmap of a mapped page", pages, pfn);
  pages.mapcount[pfn] = 1;
  // Anonymous pages are swap-backed (__folio_set_swapbacked), so they go on the anon LRU lists.
  pages.set(pfn, PG_anon | PG_anon_exclusive | PG_swapbacked);
  pages.mapping[pfn] = vma.anonVma.id;
  pages.index[pfn] = vma.linearIndex(vpn);
  vma.mm.rssAnon++;
}

/** page_add_anon_rmap / page_dup_rmap / page_add_file_rmap: one more PTE maps the page. */
export function pageAddRmap(k: Kernel, pfn: number, vma: Vma): void {
  k.pages.mapcount[pfn]!++;
  if (k.pages.isAnon(pfn)) vma.mm.rssAnon++;
  else vma.mm.rssFile++;
}

/** page_remove_rmap: one PTE no longer maps the page. */
export function pageRemoveRmap(k: Kernel, pfn: number, vma: Vma): void {
  const pages = k.pages;
  assertPage(pages.mapcount[pfn]! > 0, "removing rmap of an unmapped page", pages, pfn);
  pages.mapcount[pfn]!--;
  if (pages.isAnon(pfn)) vma.mm.rssAnon--;
  else vma.mm.rssFile--;
}

/** page_mapped. */
export function pageMapped(k: Kernel, pfn: number): boolean {
  return k.pages.mapcount[pfn]! > 0;
}

/**
 * rmap_walk for a thread that runs alone: the (VMA, vpn) pairs where the page could be mapped, from
 * page->mapping and page->index. The caller checks the PTE at each and must not yield in between.
 */
export function rmapTargets(k: Kernel, pfn: number): { vma: Vma; vpn: number }[] {
  const targets: { vma: Vma; vpn: number }[] = [];
  const mapping = k.mappingOf(pfn);
  if (mapping === null) return targets;
  const index = k.pages.index[pfn]!;
  const vmas = mapping instanceof AnonVma ? mapping.vmas : mapping.mmaps;
  for (const vma of vmas) {
    if (vma.mm.exited) continue;
    const vpn = vma.vpnOfIndex(index);
    if (vpn >= 0) targets.push({ vma, vpn });
  }
  return targets;
}

/**
 * rmap_walk (rmap_walk_anon / rmap_walk_file): calls `visit(vma, vpn)` for every VMA where the page
 * could be mapped, from page->mapping and page->index; `visit` may yield, and returns false to stop the
 * walk (rwc->rmap_one returning false).
 *
 * Deliberate difference: the kernel holds the anon_vma (or i_mmap) rwsem for read across the walk, so
 * fork (anon_vma_fork), VMA splits and unlinks wait for it. hmmsim does not model that lock; instead
 * the walk iterates the live set of VMAs across its yields (a Set's iterator visits what is added
 * after its position and skips what is deleted) and computes each vpn when it gets there. A VMA is
 * always linked after the VMA it copies its PTEs from (fork links the child's VMA, a split its tail,
 * mremap its new VMA, each after the original), so a PTE copied or moved during the walk lands in a VMA
 * the walk has yet to visit, which is what the lock guarantees; unlinked VMAs and exited mms are
 * skipped, as the lock would have kept them out.
 */
export function* rmapWalk(k: Kernel, pfn: number, visit: (vma: Vma, vpn: number) => Kfn<boolean>): Kfn<void> {
  const mapping = k.mappingOf(pfn);
  if (mapping === null) return;
  const index = k.pages.index[pfn]!;
  const vmas = mapping instanceof AnonVma ? mapping.vmas : mapping.mmaps;
  for (const vma of vmas) {
    if (vma.mm.exited) continue;
    const vpn = vma.vpnOfIndex(index);
    if (vpn >= 0 && !(yield* visit(vma, vpn))) return;
  }
}

/** Whether `vma` is still one the page's rmap reaches: after a yield it may have been unlinked. */
function stillMapped(k: Kernel, pfn: number, vma: Vma): boolean {
  if (vma.mm.exited) return false;
  const mapping = k.mappingOf(pfn);
  if (mapping === null) return false;
  return mapping instanceof AnonVma ? mapping.vmas.has(vma) : mapping.mmaps.has(vma);
}

/**
 * The VMA of an anonymous page whose anon_vma has exactly one VMA, in a live mm; null otherwise (walk
 * the rmap instead).
 */
function soleAnonVma(k: Kernel, pfn: number): Vma | null {
  const mapping = k.mappingOf(pfn);
  if (!(mapping instanceof AnonVma)) return null;
  const vma = mapping.soleVma;
  if (vma === null || vma.mm.exited) return null;
  return vma;
}

/**
 * Does this PTE map pfn: a present PTE, a device-private entry, or (since the 6.15 rework, which made
 * it count in the mapcount) a device-exclusive entry for it?
 */
export function pteMapsPfn(pte: number, pfn: number): boolean {
  if (pte === 0 || pteFrame(pte) !== pfn) return false;
  return (ptePresent(pte) && !pteSpecial(pte)) || isDevicePrivateEntry(pte) || isDeviceExclusiveEntry(pte);
}

/**
 * try_to_migrate (TTU_MIGRATION in older kernels): replaces every PTE that maps the page with a
 * migration entry (try_to_migrate_one for each VMA of the rmap walk), moving its dirty bit to the page
 * and dropping the mapping's reference and rmap. Each VMA's range is invalidated (MMU_NOTIFY_CLEAR)
 * first. Takes each PTE table's lock. The caller sees whether the page is still mapped (page_mapped).
 */
export function* tryToMigrate(k: Kernel, pfn: number): Kfn<void> {
  const pages = k.pages;
  assertPage(pages.refcount[pfn]! > 0, "unmapping a free page", pages, pfn);
  // Large folios reach migration only split (huge_memory.ts's eager split): this walk knows PTEs only.
  assertPage(!pages.isLargeHead(pfn), "try_to_migrate of a large folio", pages, pfn);
  yield* rmapWalk(k, pfn, (vma, vpn) => tryToMigrateOne(k, pfn, vma, vpn));
}

/** try_to_migrate_one for the PTE at vpn of vma; false stops the walk (the page stays mapped there). */
function* tryToMigrateOne(k: Kernel, pfn: number, vma: Vma, vpn: number): Kfn<boolean> {
  const mm = vma.mm;
  if (k.pt.lookupTable(mm.root, vpn) < 0) return true;
  const range = hasNotifiers(mm, vpn, vpn + 1)
    ? notifierRange(mm, vma, vpn, vpn + 1, MMU_NOTIFY_CLEAR)
    : null;
  if (range !== null) yield* mmuNotifierInvalidateRangeStart(k, range);
  let unmapped = true;
  // Page tables go only when their mm exits, which stillMapped rules out after every yield.
  const table = stillMapped(k, pfn, vma) ? k.pt.lookupTable(mm.root, vpn) : -1;
  if (table >= 0) {
    if (k.sched.contended || !k.ptl.tryLock(table))
      yield* k.ptl.lock(table, "try_to_migrate_one: page_vma_mapped_walk pte lock");
    if (stillMapped(k, pfn, vma))
      unmapped = unmapForMigrationLocked(k, pfn, vma, vpn, PageTables.slot(table, vpn));
    k.ptl.unlock(table);
  }
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
  return unmapped;
}

/**
 * try_to_migrate_one's work on one PTE, under its table's lock: the migration entry replaces a present
 * PTE or a device-private entry that maps the page. An exclusive anonymous page stops being exclusive
 * (folio_try_share_anon_rmap_pte) and the entry records that it was (readable-exclusive, or writable);
 * today's kernel leaves a page that may be DMA-pinned mapped instead (returns false). hmmsim keeps
 * PG_anon_exclusive in every era as its rule for reusing a page on a write fault, so every era moves
 * it into the entry.
 */
function unmapForMigrationLocked(k: Kernel, pfn: number, vma: Vma, vpn: number, slot: number): boolean {
  const pages = k.pages;
  const pte = k.pt.entries[slot]!;
  if (!pteMapsPfn(pte, pfn)) return true;
  const exclusive = pages.isAnon(pfn) && pages.has(pfn, PG_anon_exclusive);
  if (exclusive) {
    // Device-private pages cannot be pinned, so sharing them always succeeds.
    if (k.protocol === "modern" && !pages.isDevicePrivate(pfn) && folioMaybeDmaPinned(pages, pfn))
      return false;
    pages.clear(pfn, PG_anon_exclusive);
  }
  let entry: number;
  if (ptePresent(pte)) {
    // ptep_clear_flush: the PTE goes and every CPU's TLB entry with it, under the PTE lock.
    k.tlb.flushPage(vma.mm.id, vpn);
    if (pteDirty(pte)) pages.set(pfn, PG_dirty);
    entry = makeUnmapMigrationEntry(pfn, pteWrite(pte), exclusive, pteYoung(pte), pteDirty(pte));
  } else {
    // 4.14's try_to_unmap_one made a device page's entry read-only (make_migration_entry(page, 0)).
    const write = k.protocol === "modern" && isWritableDevicePrivateEntry(pte);
    entry = makeUnmapMigrationEntry(pfn, write, exclusive, false, false);
  }
  k.pt.entries[slot] = entry;
  pageRemoveRmap(k, pfn, vma);
  pages.putStructural(pfn);
  return true;
}

/**
 * remove_migration_ptes(src, dst): every migration entry for `src` in the rmap of `dst` becomes a
 * mapping of `dst` (dst == src when the migration of this page failed). A device-private dst gets a
 * device-private entry; otherwise a present PTE, writable if the entry was, with the entry's
 * young and dirty bits. Takes a reference and an rmap for each.
 */
export function* removeMigrationPtes(k: Kernel, src: number, dst: number): Kfn<void> {
  const pages = k.pages;
  assertPage(pages.refcount[dst]! > 0, "remapping to a free page", pages, dst);
  assertPage(!pages.isLargeHead(dst), "remove_migration_ptes of a large folio", pages, dst);
  yield* rmapWalk(k, dst, function* (vma, vpn) {
    const table = k.pt.lookupTable(vma.mm.root, vpn);
    if (table < 0) return true;
    if (k.sched.contended || !k.ptl.tryLock(table))
      yield* k.ptl.lock(table, "remove_migration_pte: page_vma_mapped_walk pte lock");
    if (stillMapped(k, dst, vma)) remapMigrationEntry(k, src, dst, vma, PageTables.slot(table, vpn));
    k.ptl.unlock(table);
    return true;
  });
}

/**
 * A page-table lock that a thread running alone keeps between calls of removeMigrationPtesNow, so a
 * batch of remaps in one PTE table takes the lock once and looks the table up once. The kernel takes
 * and drops it per page; with no other thread alive nothing can see the difference, and nothing can
 * free or replace a page table, or change a VMA or anon_vma, in between (tables go only when their mm
 * exits). The caller ends the batch (ptlBatchEnd) before anything that could yield.
 */
export class PtlBatch {
  /** The PTE table whose lock the batch holds, or -1; it covers `pmdIndex` (vpn / 512) of `root`. */
  table = -1;
  root = -1;
  pmdIndex = -1;
  /** The last single-VMA anon_vma seen (page->mapping id) and its VMA, or -1 and null. */
  mappingId = -1;
  soleVma: Vma | null = null;
}

/** Drops the lock a batch holds, if any. */
export function ptlBatchEnd(k: Kernel, batch: PtlBatch): void {
  if (batch.table < 0) return;
  k.ptl.unlock(batch.table);
  batch.table = -1;
}

/**
 * removeMigrationPtes for a thread that is the only one running, so no scheduling point could let
 * another thread in: the same work without a generator, for the hot path of large migrations. With a
 * batch, the last PTE table's lock stays held for the next call (see PtlBatch).
 */
export function removeMigrationPtesNow(
  k: Kernel,
  src: number,
  dst: number,
  batch: PtlBatch | null = null,
): void {
  assert(!k.sched.contended, "the non-yielding remap needs an uncontended scheduler");
  const pages = k.pages;
  assertPage(pages.refcount[dst]! > 0, "remapping to a free page", pages, dst);
  // The common case, a private page of one VMA, needs no list of targets.
  let vma: Vma | null;
  if (batch !== null && batch.mappingId === pages.mapping[dst]) {
    vma = batch.soleVma;
  } else {
    vma = soleAnonVma(k, dst);
    if (vma !== null && batch !== null) {
      batch.mappingId = pages.mapping[dst]!;
      batch.soleVma = vma;
    }
  }
  if (vma === null) {
    remapEveryTargetNow(k, src, dst, batch);
    return;
  }
  const vpn = vma.vpnOfIndex(pages.index[dst]!);
  if (vpn >= 0) remapOneNow(k, src, dst, vma, vpn, batch);
}

/** removeMigrationPtesNow's rmap walk, for a page that may be mapped in more than one VMA. */
function remapEveryTargetNow(k: Kernel, src: number, dst: number, batch: PtlBatch | null): void {
  for (const target of rmapTargets(k, dst)) remapOneNow(k, src, dst, target.vma, target.vpn, batch);
}

function remapOneNow(
  k: Kernel,
  src: number,
  dst: number,
  vma: Vma,
  vpn: number,
  batch: PtlBatch | null,
): void {
  const root = vma.mm.root;
  // Exact: 512 is a power of two (see pgtable.ts).
  const pmdIndex = Math.floor(vpn * (1 / 512));
  let table: number;
  if (batch !== null && batch.table >= 0 && batch.root === root && batch.pmdIndex === pmdIndex) {
    table = batch.table;
  } else {
    table = k.pt.lookupTable(root, vpn);
    if (table < 0) return;
    if (batch !== null) ptlBatchEnd(k, batch);
    if (!k.ptl.tryLock(table)) failPtlHeld(table);
  }
  remapMigrationEntry(k, src, dst, vma, PageTables.slot(table, vpn));
  if (batch === null) {
    k.ptl.unlock(table);
  } else {
    batch.table = table;
    batch.root = root;
    batch.pmdIndex = pmdIndex;
  }
}

function failPtlHeld(table: number): never {
  fail("page-table lock held with no other thread running", () => String(table));
}

/** remove_migration_pte for one PTE, under its table's lock. */
function remapMigrationEntry(k: Kernel, src: number, dst: number, vma: Vma, slot: number): void {
  const pages = k.pages;
  const pte = k.pt.entries[slot]!;
  if (!isMigrationEntry(pte) || pteFrame(pte) !== src) return;
  const write = isWritableMigrationEntry(pte) && (vma.flags & VM_WRITE) !== 0;
  pages.getStructural(dst);
  pageAddRmap(k, dst, vma);
  // folio_add_anon_rmap_pte with RMAP_EXCLUSIVE for every entry but a readable one: exclusivity comes
  // back from the entry, never from the old page (folio_migrate_flags does not carry it).
  if (pages.isAnon(dst) && !isReadableMigrationEntry(pte)) pages.set(dst, PG_anon_exclusive);
  k.pt.entries[slot] = pages.isDevicePrivate(dst)
    ? makeDevicePrivateEntry(dst, write)
    : presentPteFromMigration(k, pte, dst, vma, write);
}

/** The present PTE that replaces migration entry `pte` for a system-memory page. */
function presentPteFromMigration(k: Kernel, pte: number, dst: number, vma: Vma, write: boolean): number {
  // Since 6.1 the entry carries the old PTE's young bit, and its dirty bit counts if the page is dirty
  // too; 4.14 and the seed made the PTE old and clean (pte_mkold(mk_pte(...))).
  let bits = write ? _PAGE_RW : 0;
  if (k.protocol === "modern") {
    if (pteYoung(pte)) bits |= _PAGE_ACCESSED;
    if (pteDirty(pte) && k.pages.has(dst, PG_dirty)) bits |= _PAGE_DIRTY;
  }
  // mk_pte(new, vma->vm_page_prot): a VMA without access gives an inaccessible PTE.
  if ((vma.flags & VM_ACCESS_FLAGS) === 0) bits |= _PAGE_PROTNONE;
  return mkPte(dst, bits);
}
