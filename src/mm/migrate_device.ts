/**
 * Migration of a range of an mm to and from device memory (mm/migrate_device.c today, mm/migrate.c in
 * 4.14 and the seed): collect, prepare and unmap, insert into empty entries, move struct page state,
 * finalize. One core serves every protocol version, steered by MigrateSwitches (migrate_pfn.ts); the
 * modern three-phase API (migrate_vma_setup/pages/finalize, migrate_device_range) is at the end.
 *
 * Deliberate differences: device-page refcounts follow the 6.1 era in every version (a free device
 * page has refcount 0), so 4.14's "+ is_device_private_page" in migrate_page_move_mapping's expected
 * count, which compensated the old base reference, is dropped (4.14's pin check never counted device
 * pages' references; the seed keeps its "+ is_zone_device_page", unreachable since the seed never
 * collects device pages); no THP, so no splitting. Collect's TLB flush follows 4.14 (after the PTE lock
 * is dropped) or 6.0 (before), by collectFlushUnderPtl, for every entry: the 5.19 kernels that flushed an
 * exclusive anonymous page's PTE on the spot (ptep_clear_flush) and the rest after unlocking are not
 * told apart.
 */
import { assert } from "../base/assert.js";
import { EBUSY, EINVAL } from "../base/errno.js";
import { PAGE_SIZE } from "../base/units.js";
import { pageObject, tlbObject } from "../sched/objects.js";
import type { Kfn } from "../sched/thread.js";
import { lockPage, trylockPage, unlockPage } from "./filemap.js";
import { isHugeZeroPmd, splitHugePmd } from "./huge_memory.js";
import type { Kernel } from "./kernel.js";
import { type FaultContext, ptlLock } from "./memory.js";
import { isDevicePrivatePage, MEMORY_DEVICE_PRIVATE } from "./memremap.js";
import { migratePageNoCopy } from "./migrate.js";
import {
  clearFlag,
  hasFlag,
  MIGRATE_VMA_SELECT_DEVICE_COHERENT,
  MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
  MIGRATE_VMA_SELECT_SYSTEM,
  type MigratePfnLayout,
  type MigrateSwitches,
  migratePfn,
  migratePfnToPfn,
  setFlag,
} from "./migrate_pfn.js";
import { VM_HUGETLB, VM_SPECIAL, VM_WRITE, type Vma } from "./mm_types.js";
import {
  MMU_NOTIFY_CLEAR,
  MMU_NOTIFY_MIGRATE,
  type MmuNotifierRange,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  notifierRange,
} from "./mmu_notifier.js";
import {
  assertPage,
  folioMaybeDmaPinned,
  type PageArrays,
  PG_anon,
  PG_anon_exclusive,
  PG_device_coherent,
  PG_dirty,
  PG_locked,
  PG_lru,
  PG_zone_device,
} from "./page.js";
import { ZERO_PFN } from "./page_alloc.js";
import { walkPageRange } from "./pagewalk.js";
import {
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  _PAGE_RW,
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
import {
  anonVmaPrepare,
  PtlBatch,
  pageAddNewAnonRmap,
  pageMapped,
  pageRemoveRmap,
  ptlBatchEnd,
  removeMigrationPtes,
  removeMigrationPtesNow,
  tryToMigrate,
} from "./rmap.js";
import { isolateLruPage, lruAddDrain, lruAddDrainAll, lruCacheAdd, lruDel, putbackLruPage } from "./swap.js";

/** struct migrate_vma. start and end are page numbers here; the kernel's are byte addresses. */
export interface MigrateVma {
  vma: Vma | null;
  src: Float64Array;
  dst: Float64Array;
  cpages: number;
  npages: number;
  start: number;
  end: number;
  pgmapOwner: unknown;
  flags: number;
  /** The locked device page a migrate_to_ram call is for, or -1. */
  faultPage: number;
}

/** What the migration core needs: the fault context plus the version's switches and flag layout. */
export interface MigrateContext extends FaultContext {
  readonly migrate: MigrateSwitches;
  readonly layout: MigratePfnLayout;
}

/** migrate_vma_collect_skip: entries that are not migrated, src and dst 0. */
function collectSkip(m: MigrateVma, start: number, end: number): number {
  for (let vpn = start; vpn < end; vpn++) {
    m.dst[m.npages] = 0;
    m.src[m.npages++] = 0;
  }
  return 0;
}

/** migrate_vma_collect_hole (and collect_skip when empty entries are not selected here). */
function collectHole(
  ctx: MigrateContext,
  m: MigrateVma,
  start: number,
  end: number,
  vma: Vma | null,
): number {
  const sw = ctx.migrate;
  // Holes are selected whatever the MIGRATE_VMA_SELECT_* flags say: only the VMA kind matters.
  const select = sw.allocOnEmpty && (!sw.emptyOnlyInAnonymous || (vma?.isAnonymous ?? false));
  for (let vpn = start; vpn < end; vpn++) {
    m.dst[m.npages] = 0;
    m.src[m.npages++] = select ? ctx.layout.MIGRATE : 0;
    if (select) m.cpages++;
  }
  return 0;
}

/**
 * One entry of migrate_vma_collect_pmd, every case: returns the entry's migrate PFN word (0 when it is
 * not collected) after taking what the version takes (reference, lock, migration entry), and counts it
 * in m.cpages.
 */
function collectEntry(ctx: MigrateContext, m: MigrateVma, slot: number, vma: Vma): number {
  const k = ctx.k;
  const sw = ctx.migrate;
  const L = ctx.layout;
  const pages = k.pages;
  const entries = k.pt.entries;
  const pte = entries[slot]!;
  // pte_none is selected like a hole; the zero page only when system memory is selected too.
  const emptyOk = sw.allocOnEmpty && (!sw.emptyOnlyInAnonymous || vma.isAnonymous);
  const selectSystem = !sw.selectByFlags || (m.flags & MIGRATE_VMA_SELECT_SYSTEM) !== 0;
  let mpfn = 0;
  let pfn = -1;
  if (pte === 0) {
    if (emptyOk) {
      m.cpages++;
      return L.MIGRATE;
    }
    return 0;
  }
  if (!ptePresent(pte)) {
    const candidate = pteFrame(pte);
    const wanted =
      sw.collectDevicePrivate &&
      isDevicePrivateEntry(pte) &&
      (!sw.selectByFlags ||
        ((m.flags & MIGRATE_VMA_SELECT_DEVICE_PRIVATE) !== 0 &&
          ctx.pagemaps.of(candidate).owner === m.pgmapOwner));
    if (wanted) {
      pfn = candidate;
      mpfn = migratePfn(L, pfn) + L.MIGRATE + L.DEVICE + (isWritableDevicePrivateEntry(pte) ? L.WRITE : 0);
    }
  } else if (pteSpecial(pte)) {
    // The zero page is an empty entry to 4.14 and later; vm_normal_page gives the seed no page.
    if (pteFrame(pte) === ZERO_PFN && emptyOk && selectSystem) {
      m.cpages++;
      return L.MIGRATE;
    }
    return 0;
  } else {
    const candidate = pteFrame(pte);
    if (pages.isZoneDevice(candidate)) {
      // Of ZONE_DEVICE memory only device-coherent pages are mapped by present PTEs; they are selected
      // by MIGRATE_VMA_SELECT_DEVICE_COHERENT and the owner, whatever SELECT_SYSTEM says.
      assertPage(
        pages.isDeviceCoherent(candidate),
        "a present PTE maps a device-private page",
        pages,
        candidate,
      );
      if (
        (m.flags & MIGRATE_VMA_SELECT_DEVICE_COHERENT) !== 0 &&
        ctx.pagemaps.of(candidate).owner === m.pgmapOwner
      ) {
        pfn = candidate;
        mpfn = migratePfn(L, pfn) + L.MIGRATE + (pteWrite(pte) ? L.WRITE : 0);
      }
    } else if (selectSystem) {
      pfn = candidate;
      mpfn = migratePfn(L, pfn) + L.MIGRATE + (pteWrite(pte) ? L.WRITE : 0);
    }
  }
  // No struct page mapping (page->mapping NULL) means nothing migrate_vma can move.
  if (pfn < 0 || pages.mapping[pfn] === 0) return 0;
  if (sw.skipMaybePinnedExclusive && maybePinnedExclusive(pages, pfn)) {
    // folio_try_share_anon_rmap_pte fails for a possibly pinned exclusive page: leave it.
    return 0;
  }
  // The collect reference: it "freezes" the PTE until the page is locked and unmapped.
  pages.get(pfn);
  if (!sw.collectOnlyLocked) m.cpages++;
  const locked = sw.unmapWhileCollecting && (pfn === m.faultPage || trylockPage(k, pfn));
  if (locked) {
    mpfn = setFlag(mpfn, L.LOCKED);
    if (sw.collectOnlyLocked) m.cpages++;
    const write = sw.writeFromMpfn ? hasFlag(mpfn, L.WRITE) : ptePresent(pte) && pteWrite(pte);
    unmapCollected(k, slot, pte, pfn, vma, write, sw.collectCopiesDirty);
  } else if (sw.collectOnlyLocked) {
    pages.put(pfn);
    mpfn = 0;
  }
  return mpfn;
}

/**
 * The unmap half of collecting a locked page: the PTE becomes a migration entry (with the PTE's young
 * and dirty bits, and the dirty bit moved to the page, where the version copies them) and the mapping's
 * rmap and reference go. An exclusive anonymous page stops being exclusive and the entry says it was
 * (folio_try_share_anon_rmap_pte, then a writable or readable-exclusive entry); collectEntry has already
 * left out the page that may be pinned, for which sharing fails.
 */
function unmapCollected(
  k: Kernel,
  slot: number,
  pte: number,
  pfn: number,
  vma: Vma,
  write: boolean,
  copyDirty: boolean,
): void {
  const pages = k.pages;
  if (copyDirty && pteDirty(pte)) pages.set(pfn, PG_dirty);
  const exclusive = pages.isAnon(pfn) && pages.has(pfn, PG_anon_exclusive);
  if (exclusive) pages.clear(pfn, PG_anon_exclusive);
  const copyBits = copyDirty && ptePresent(pte);
  k.pt.entries[slot] = makeUnmapMigrationEntry(
    pfn,
    write,
    exclusive,
    copyBits && pteYoung(pte),
    copyBits && pteDirty(pte),
  );
  pageRemoveRmap(k, pfn, vma);
  pages.putStructural(pfn);
}

/**
 * An exclusive anonymous page whose references look like a GUP pin: folio_try_share_anon_rmap_pte fails
 * for it (folio_maybe_dma_pinned), except for device-private pages, which cannot be pinned (a
 * device-coherent page can be, by a short-term pin).
 */
function maybePinnedExclusive(pages: PageArrays, pfn: number): boolean {
  return pages.has(pfn, PG_anon_exclusive) && !pages.isDevicePrivate(pfn) && folioMaybeDmaPinned(pages, pfn);
}

/**
 * Whether the version collects as 5.16 and later do (only pages it can lock, each unmapped on the
 * spot with its dirty and young bits, the write bit from the mpfn, dst cleared): the versions whose
 * common entry collectPmd takes without collectEntry's case analysis.
 */
function collectsLockedOnly(ctx: MigrateContext): boolean {
  const sw = ctx.migrate;
  return (
    sw.unmapWhileCollecting &&
    sw.collectOnlyLocked &&
    sw.collectCopiesDirty &&
    sw.writeFromMpfn &&
    sw.protocol !== "seed" &&
    ctx.layout.LOCKED === 0
  );
}

/**
 * migrate_vma_collect_pmd: one PTE table's worth of the range, under its lock. With the kernel's fast
 * paths on, the common entry of today's versions, a present anonymous page that is not pinned and can
 * be locked, is taken here with the same steps as collectEntry in the same order; every other entry,
 * and every entry of the older versions, goes through collectEntry. The property test
 * fast-paths.property.test.ts holds the two to the same result.
 */
function* collectPmd(
  ctx: MigrateContext,
  m: MigrateVma,
  table: number,
  start: number,
  end: number,
  vma: Vma,
): Kfn<number> {
  const k = ctx.k;
  yield* ptlLock(k, table, "migrate_vma_collect_pmd: pte_offset_map_lock");
  const unmapped = collectPmdLocked(ctx, m, table, start, end, vma);
  // "Only flush the TLB if we actually modified any entries": since 60bae7370896 (6.0) before the PTE
  // lock goes; 4.14 to 5.19 after pte_unmap_unlock, so a zap that takes the lock in between finds the
  // migration entries, flushes nothing, and returns while CPUs still reach the pages (S12).
  if (unmapped > 0 && ctx.migrate.collectFlushUnderPtl) k.tlb.flushRange(vma.mm.id, start, end);
  k.ptl.unlock(table);
  if (unmapped > 0 && !ctx.migrate.collectFlushUnderPtl) {
    if (k.sched.contended) yield k.sched.at("migrate_vma_collect_pmd: flush_tlb_range", tlbObject(vma.mm.id));
    k.tlb.flushRange(vma.mm.id, start, end);
  }
  return 0;
}

/**
 * collectPmd's loop over the table's entries, with its lock held. Returns how many present PTEs it
 * unmapped (the kernel's `unmapped`, which decides the TLB flush).
 */

function collectPmdLocked(
  ctx: MigrateContext,
  m: MigrateVma,
  table: number,
  start: number,
  end: number,
  vma: Vma,
): number {
  const k = ctx.k;
  const L = ctx.layout;
  const pages = k.pages;
  // The seed's collect_pmd leaves dst alone (only collect_hole clears it); 4.14 clears both.
  const clearDst = ctx.migrate.protocol !== "seed";
  const quick =
    k.fastPaths &&
    collectsLockedOnly(ctx) &&
    (!ctx.migrate.selectByFlags || (m.flags & MIGRATE_VMA_SELECT_SYSTEM) !== 0);
  const faultPage = m.faultPage;
  const src = m.src;
  const dst = m.dst;
  // Nothing in the loop adds page tables, so the PTE pool stays the same array.
  const entries = k.pt.entries;
  const { flags, mapcount, heldRefs, lockHolder, mapping } = pages;
  const me = k.sched.current().id;
  let n = m.npages;
  let unmapped = 0;
  assert(n + (end - start) <= src.length, "collect overran src", () => `${n} + ${end - start}`);
  for (let vpn = start; vpn < end; vpn++, n++) {
    const slot = PageTables.slot(table, vpn);
    const pte = entries[slot]!;
    if (clearDst) dst[n] = 0;
    if (quick && ptePresent(pte) && !pteSpecial(pte)) {
      const pfn = pteFrame(pte);
      if (
        pfn !== faultPage &&
        (flags[pfn]! & (PG_anon | PG_zone_device | PG_locked)) === PG_anon &&
        mapping[pfn] !== 0 &&
        mapcount[pfn]! > 0 &&
        !maybePinnedExclusive(pages, pfn)
      ) {
        // collectEntry's steps for this entry, on the arrays: get_page (held), trylock_page (free, so
        // taken), then unmapCollected's migration entry with the PTE's young and dirty bits, PG_dirty
        // from the PTE, and the rmap and the mapping's reference dropped. The get and the mapping's put
        // cancel in refcount, and the reference now held keeps the page, so nothing is freed here.
        const write = pteWrite(pte);
        const dirty = pteDirty(pte);
        const pageFlags = flags[pfn]!;
        heldRefs[pfn]!++;
        // PG_anon_exclusive moves into the entry (folio_try_share_anon_rmap_pte, see unmapCollected).
        flags[pfn] = (pageFlags & ~PG_anon_exclusive) | (dirty ? PG_locked | PG_dirty : PG_locked);
        lockHolder[pfn] = me;
        entries[slot] = makeUnmapMigrationEntry(
          pfn,
          write,
          (pageFlags & PG_anon_exclusive) !== 0,
          pteYoung(pte),
          dirty,
        );
        mapcount[pfn]!--;
        vma.mm.rssAnon--;
        m.cpages++;
        unmapped++;
        src[n] = migratePfn(L, pfn) + L.MIGRATE + (write ? L.WRITE : 0);
        continue;
      }
    }
    src[n] = collectEntry(ctx, m, slot, vma);
    if (ptePresent(pte) && !ptePresent(entries[slot]!)) unmapped++;
  }
  m.npages = n;
  return unmapped;
}

/** migrate_vma_collect: the walk, bracketed by the version's invalidation. */
export function* migrateVmaCollect(ctx: MigrateContext, m: MigrateVma): Kfn<void> {
  const k = ctx.k;
  const vma = m.vma;
  assert(vma !== null, "collect needs a VMA");
  const sw = ctx.migrate;
  let range: MmuNotifierRange | null = null;
  if (sw.collectNotifier !== "none") {
    const migrateEvent = sw.collectNotifier === "migrate";
    range = notifierRange(
      vma.mm,
      vma,
      m.start,
      m.end,
      migrateEvent ? MMU_NOTIFY_MIGRATE : MMU_NOTIFY_CLEAR,
      migrateEvent ? m.pgmapOwner : null,
    );
    yield* mmuNotifierInvalidateRangeStart(k, range);
  }
  // A huge PMD: the seed's collect_pmd takes it for a hole (pmd_trans_unstable, "FIXME support THP");
  // 4.14 splits it (split_huge_pmd of the huge zero folio, split_huge_page of a THP), which the walk
  // does for it, and collects its pages. Today's migrate_vma_collect_huge_pmd (6.19) skips it when
  // system memory is not selected, takes the huge zero PMD for a hole (migrate_vma_insert_page splits
  // it later), and splits a THP it cannot take whole: hmmsim has no MIGRATE_VMA_SELECT_COMPOUND yet,
  // so that is every THP.
  const hugeOps =
    sw.protocol === "seed"
      ? {
          *pmdHuge(_pmdKey: number, _leaf: number, start: number, end: number, walkVma: Vma): Kfn<number> {
            return collectHole(ctx, m, start, end, walkVma);
          },
        }
      : {
          *pmdHuge(_pmdKey: number, leaf: number, start: number, end: number, walkVma: Vma): Kfn<number> {
            if (sw.selectByFlags && (m.flags & MIGRATE_VMA_SELECT_SYSTEM) === 0)
              return collectSkip(m, start, end);
            const head = pteFrame(leaf);
            if (head === k.hugeZeroPfn) {
              if (sw.selectByFlags) return collectHole(ctx, m, start, end, walkVma);
            } else if (
              k.pages.has(head, PG_locked) ||
              k.pages.refcount[head] !== k.pages.folioMapcount(head)
            ) {
              // folio_trylock failed, or split_folio would (a reference beyond the mapping's: a pin, a
              // get, another thread's): the whole range is skipped.
              return collectSkip(m, start, end);
            }
            // split_huge_pmd of the huge zero folio (4.14), or split_folio (hmmsim splits the PMD with
            // it), then the PTE-level collect.
            yield* splitHugePmd(k, walkVma, start);
            const table = k.pt.lookupTable(walkVma.mm.root, start);
            if (table < 0) return collectHole(ctx, m, start, end, walkVma);
            return yield* collectPmd(ctx, m, table, start, end, walkVma);
          },
        };
  yield* walkPageRange(k, vma.mm, m.start, m.end, {
    pmdEntry: (table, start, end, walkVma) => collectPmd(ctx, m, table, start, end, walkVma),
    *pteHole(start, end, walkVma) {
      return collectHole(ctx, m, start, end, walkVma);
    },
    ...hugeOps,
  });
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
  m.end = m.start + m.npages;
  k.stats.migrateCollected += m.cpages;
  assert(m.npages <= m.src.length, "collect overran src", () => `${m.npages}`);
}

/**
 * migrate_vma_check_page: false when someone besides the mappings and the migration holds the page.
 * seed: refcount - 1 > mapcount fails. 4.14: device-private pages always pass (their waiters' references
 * look like pins); a page-cache page is allowed its cache reference. Modern: one more for the fault
 * page and for ZONE_DEVICE pages (a leftover of the old base reference, now slack).
 */
export function migrateVmaCheckPage(ctx: MigrateContext, pfn: number, faultPage: number): boolean {
  const pages = ctx.k.pages;
  const sw = ctx.migrate;
  let extra = 1;
  if (sw.protocol === "4.14" && pages.isZoneDevice(pfn)) return isDevicePrivatePage(ctx.k, ctx.pagemaps, pfn);
  if (sw.faultPageExtraRef && pfn === faultPage) extra++;
  if (sw.protocol === "modern" && pages.isZoneDevice(pfn)) extra++;
  if (sw.protocol !== "seed" && !pages.isAnon(pfn) && pages.mapping[pfn] !== 0) extra++;
  return pages.refcount[pfn]! - extra <= pages.mapcount[pfn]!;
}

/** putback_lru_page, or put_page for ZONE_DEVICE pages where the version knows better (S10). */
function putbackOrPut(ctx: MigrateContext, pfn: number): void {
  const k = ctx.k;
  if (ctx.migrate.zoneDeviceAwarePutback && k.pages.isZoneDevice(pfn)) k.pages.put(pfn);
  else putbackLruPage(k, pfn, k.sched.current().cpu);
}

/**
 * migrate_vma_prepare (seed and 4.14): lock what collect did not, isolate from the LRU, check pins.
 * The seed takes the page lock with lock_page, which blocks (S3), and never drops collect's reference,
 * so every page it isolates fails the pin check and keeps one reference too many.
 */
export function* migrateVmaPrepare(ctx: MigrateContext, m: MigrateVma): Kfn<void> {
  const k = ctx.k;
  const sw = ctx.migrate;
  const L = ctx.layout;
  const pages = k.pages;
  const cpu = k.sched.current().cpu;
  let allowDrain = true;
  let restore = 0;
  lruAddDrain(k, cpu);
  // 4.14 stops once nothing is left to prepare; the seed walks every entry.
  for (let i = 0; i < m.npages && (m.cpages > 0 || sw.protocol === "seed"); i++) {
    const pfn = migratePfnToPfn(L, m.src[i]!);
    if (pfn < 0) continue;
    let remap = true;
    if (!hasFlag(m.src[i]!, L.LOCKED)) {
      if (sw.prepareTrylock) {
        if (!trylockPage(k, pfn)) {
          m.src[i] = 0;
          m.cpages--;
          pages.put(pfn);
          continue;
        }
      } else {
        yield* lockPage(k, pfn);
      }
      remap = false;
      m.src[i] = setFlag(m.src[i]!, L.LOCKED);
    } else if (!sw.unmapWhileCollecting) {
      remap = false;
    }
    const device = pages.isZoneDevice(pfn);
    if (!device || !sw.zoneDeviceAwarePutback) {
      if (!pages.has(pfn, PG_lru) && allowDrain) {
        lruAddDrainAll(k);
        allowDrain = false;
      }
      if (isolateLruPage(k, pfn) !== 0) {
        if (remap) {
          m.src[i] = clearFlag(m.src[i]!, L.MIGRATE);
          m.cpages--;
          restore++;
        } else {
          m.src[i] = 0;
          unlockPage(k, pfn);
          m.cpages--;
          pages.put(pfn);
        }
        continue;
      }
      if (sw.dropCollectRefAfterIsolate) pages.put(pfn);
    }
    if (!migrateVmaCheckPage(ctx, pfn, m.faultPage)) {
      if (remap) {
        m.src[i] = clearFlag(m.src[i]!, L.MIGRATE);
        m.cpages--;
        restore++;
        if (!device) {
          pages.get(pfn);
          putbackLruPage(k, pfn, cpu);
        }
      } else {
        m.src[i] = 0;
        unlockPage(k, pfn);
        m.cpages--;
        putbackOrPut(ctx, pfn);
      }
    }
  }
  for (let i = 0; i < m.npages && restore > 0; i++) {
    const pfn = migratePfnToPfn(L, m.src[i]!);
    if (pfn < 0 || hasFlag(m.src[i]!, L.MIGRATE)) continue;
    yield* removeMigrationPtes(k, pfn, pfn);
    m.src[i] = 0;
    unlockPage(k, pfn);
    pages.put(pfn);
    restore--;
  }
}

/**
 * migrate_vma_unmap (seed and 4.14): try_to_unmap what is still mapped, recheck pins, and restore
 * the pages that cannot move.
 */
export function* migrateVmaUnmap(ctx: MigrateContext, m: MigrateVma): Kfn<void> {
  const k = ctx.k;
  const L = ctx.layout;
  const sw = ctx.migrate;
  let restore = 0;
  for (let i = 0; i < m.npages; i++) {
    const pfn = migratePfnToPfn(L, m.src[i]!);
    if (pfn < 0 || !hasFlag(m.src[i]!, L.MIGRATE)) continue;
    // The seed unmaps unconditionally; 4.14 only what collect left mapped.
    if (!sw.unmapWhileCollecting || pageMapped(k, pfn)) yield* tryToMigrate(k, pfn);
    if (pageMapped(k, pfn) || !migrateVmaCheckPage(ctx, pfn, m.faultPage)) {
      m.src[i] = clearFlag(m.src[i]!, L.MIGRATE);
      m.cpages--;
      restore++;
    }
  }
  for (let i = 0; i < m.npages && restore > 0; i++) {
    const pfn = migratePfnToPfn(L, m.src[i]!);
    if (pfn < 0 || hasFlag(m.src[i]!, L.MIGRATE)) continue;
    yield* removeMigrationPtes(k, pfn, pfn);
    m.src[i] = 0;
    unlockPage(k, pfn);
    restore--;
    putbackOrPut(ctx, pfn);
  }
}

/**
 * migrateDeviceUnmap's common entry: an anonymous system page on an LRU list that collect unmapped,
 * with no reference but the one collect holds (so isolation succeeds and the pin check passes).
 */
function isolatesUnmapped(pages: PageArrays, pfn: number): boolean {
  return (
    (pages.flags[pfn]! & (PG_lru | PG_anon | PG_zone_device)) === (PG_lru | PG_anon) &&
    pages.mapcount[pfn] === 0 &&
    pages.refcount[pfn] === 1 &&
    pages.heldRefs[pfn] === 1
  );
}

/**
 * migrate_device_unmap (5.16 and later): prepare and unmap in one pass over pages collect locked.
 * Returns the number of entries still migrating, holes included.
 */
export function* migrateDeviceUnmap(
  ctx: MigrateContext,
  src: Float64Array,
  npages: number,
  faultPage: number,
): Kfn<number> {
  const k = ctx.k;
  const L = ctx.layout;
  const pages = k.pages;
  const cpu = k.sched.current().cpu;
  let allowDrain = true;
  let restore = 0;
  let unmapped = 0;
  lruAddDrain(k, cpu);
  const quick = k.fastPaths;
  for (let i = 0; i < npages; i++) {
    const pfn = migratePfnToPfn(L, src[i]!);
    if (pfn < 0) {
      if (hasFlag(src[i]!, L.MIGRATE)) unmapped++;
      continue;
    }
    if (quick && isolatesUnmapped(pages, pfn)) {
      // isolate_lru_page's get and the put of collect's reference cancel out: what is left is the
      // unlink, and the pin check passes on refcount 1 and no mappings.
      lruDel(k, pfn);
      unmapped++;
      continue;
    }
    const device = pages.isZoneDevice(pfn);
    if (!device) {
      if (!pages.has(pfn, PG_lru) && allowDrain) {
        lruAddDrainAll(k);
        allowDrain = false;
      }
      if (isolateLruPage(k, pfn) !== 0) {
        src[i] = clearFlag(src[i]!, L.MIGRATE);
        restore++;
        continue;
      }
      pages.put(pfn);
    }
    if (pageMapped(k, pfn)) yield* tryToMigrate(k, pfn);
    if (pageMapped(k, pfn) || !migrateVmaCheckPage(ctx, pfn, faultPage)) {
      if (!device) {
        pages.get(pfn);
        putbackLruPage(k, pfn, cpu);
      }
      src[i] = clearFlag(src[i]!, L.MIGRATE);
      restore++;
      continue;
    }
    unmapped++;
  }
  for (let i = 0; i < npages && restore > 0; i++) {
    const pfn = migratePfnToPfn(L, src[i]!);
    if (pfn < 0 || hasFlag(src[i]!, L.MIGRATE)) continue;
    yield* removeMigrationPtes(k, pfn, pfn);
    src[i] = 0;
    if (pfn !== faultPage) unlockPage(k, pfn);
    pages.put(pfn);
    restore--;
  }
  return unmapped;
}

/**
 * migrate_vma_insert_page: maps the driver's page into an empty entry of an anonymous VMA. Returns
 * false (and the caller clears MIGRATE) where the kernel aborts.
 */
function* insertPage(ctx: MigrateContext, vma: Vma, vpn: number, newPfn: number): Kfn<boolean> {
  const k = ctx.k;
  const pages = k.pages;
  if (!vma.isAnonymous) return false;
  const leaf = k.pt.hugePmds > 0 ? k.pt.readPmdLeaf(vma.mm.root, vpn) : 0;
  if (leaf !== 0) {
    // A huge PMD appeared since collect (a racing fault): 4.14 aborts on pmd_trans_huge; 6.19 splits
    // the huge zero folio's PMD and aborts on a THP.
    if (ctx.migrate.protocol !== "modern" || !isHugeZeroPmd(k, leaf)) return false;
    yield* splitHugePmd(k, vma, vpn);
  }
  const table = k.pt.ensureTable(vma.mm.root, vpn);
  anonVmaPrepare(k, vma);
  yield* ptlLock(k, table, "migrate_vma_insert_page: pte_offset_map_lock");
  const slot = PageTables.slot(table, vpn);
  const pte = k.pt.entries[slot]!;
  const zero = ptePresent(pte) && pteSpecial(pte) && pteFrame(pte) === ZERO_PFN;
  if (pte !== 0 && !zero) {
    k.ptl.unlock(table);
    return false;
  }
  const writable = (vma.flags & VM_WRITE) !== 0;
  pageAddNewAnonRmap(k, newPfn, vma, vpn);
  // ZONE_DEVICE pages are not on an LRU; a device-coherent page is mapped like RAM (mk_pte).
  if (!pages.isZoneDevice(newPfn)) lruCacheAdd(k, newPfn, k.sched.current().cpu);
  pages.getStructural(newPfn);
  k.pt.entries[slot] = pages.isDevicePrivate(newPfn)
    ? makeDevicePrivateEntry(newPfn, writable)
    : mkPte(newPfn, writable ? _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED : _PAGE_ACCESSED);
  // ptep_clear_flush_notify of the zero page's PTE: a CPU must not keep reading zeros from it.
  if (zero) k.tlb.flushPage(vma.mm.id, vpn);
  k.ptl.unlock(table);
  return true;
}

/**
 * migrate_vma_pages / migrate_device_pages: moves struct page state to each destination the driver
 * supplied; fills empty entries (4.14 and later). An entry that fails loses MIGRATE.
 */
export function* migrateVmaPagesCore(ctx: MigrateContext, m: MigrateVma): Kfn<void> {
  const k = ctx.k;
  const L = ctx.layout;
  const sw = ctx.migrate;
  const pages = k.pages;
  const seed = sw.protocol === "seed";
  let range: MmuNotifierRange | null = null;
  for (let i = 0; i < m.npages; i++) {
    const newPfn = migratePfnToPfn(L, m.dst[i]!);
    const pfn = migratePfnToPfn(L, m.src[i]!);
    if (seed) {
      if (pfn < 0 || newPfn < 0 || !hasFlag(m.src[i]!, L.MIGRATE)) continue;
    } else {
      if (newPfn < 0) {
        m.src[i] = clearFlag(m.src[i]!, L.MIGRATE);
        continue;
      }
      if (pfn < 0) {
        if (!hasFlag(m.src[i]!, L.MIGRATE)) continue;
        assert(m.vma !== null, "migrate_device_pages cannot fill holes");
        if (range === null) {
          const migrateEvent = sw.collectNotifier === "migrate";
          range = notifierRange(
            m.vma.mm,
            m.vma,
            m.start + i,
            m.end,
            migrateEvent ? MMU_NOTIFY_MIGRATE : MMU_NOTIFY_CLEAR,
            migrateEvent ? m.pgmapOwner : null,
          );
          yield* mmuNotifierInvalidateRangeStart(k, range);
        }
        if (!(yield* insertPage(ctx, m.vma, m.start + i, newPfn))) m.src[i] = clearFlag(m.src[i]!, L.MIGRATE);
        continue;
      }
      if (!hasFlag(m.src[i]!, L.MIGRATE)) continue;
      // Only anonymous memory may go to device memory: a page-cache page stays.
      if (pages.isZoneDevice(newPfn) && !pages.isAnon(pfn)) {
        m.src[i] = clearFlag(m.src[i]!, L.MIGRATE);
        continue;
      }
    }
    // migrate_page_move_mapping's expectation: one reference held by the migration, plus the fault
    // page's (6.1+), plus the seed's "ZONE_DEVICE pages have 1 refcount always held by their device".
    let expected = 1;
    if (sw.faultPageExtraRef && pfn === m.faultPage) expected++;
    if (seed && pages.isZoneDevice(pfn)) expected++;
    if (migratePageNoCopy(k, newPfn, pfn, expected) !== 0) m.src[i] = clearFlag(m.src[i]!, L.MIGRATE);
  }
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
}

/**
 * The first half of one finalize entry, before its remap: releases a destination that is not used,
 * counts the entry and queues the page that stays mapped for the LRU where the version does. Returns
 * the page the entry's migration PTEs now point at, or -1 when the entry has no source page.
 */
function finalizeEntryStart(
  ctx: MigrateContext,
  src: Float64Array,
  dst: Float64Array,
  i: number,
  cpu: number,
): number {
  const k = ctx.k;
  const L = ctx.layout;
  const sw = ctx.migrate;
  const pages = k.pages;
  let newPfn = migratePfnToPfn(L, dst[i]!);
  const pfn = migratePfnToPfn(L, src[i]!);
  if (pfn < 0) {
    if (newPfn >= 0 && sw.protocol !== "seed") {
      // An empty entry the new page was inserted into (src kept MIGRATE) or could not be.
      if (hasFlag(src[i]!, L.MIGRATE)) k.stats.migrateMoved++;
      unlockPage(k, newPfn);
      pages.put(newPfn);
    }
    return -1;
  }
  if (!hasFlag(src[i]!, L.MIGRATE) || newPfn < 0) {
    if (newPfn >= 0) {
      unlockPage(k, newPfn);
      pages.put(newPfn);
    }
    newPfn = pfn;
    k.stats.migrateRestored++;
  } else {
    k.stats.migrateMoved++;
  }
  if (sw.finalizeLruOnlyDst && !pages.isZoneDevice(newPfn)) lruCacheAdd(k, newPfn, cpu);
  return newPfn;
}

/** The second half, after the remap: unlocks and releases the old page and the new one. */
function finalizeEntryEnd(ctx: MigrateContext, pfn: number, newPfn: number, faultPage: number): void {
  const k = ctx.k;
  const pages = k.pages;
  if (ctx.migrate.finalizeLruOnlyDst) {
    if (pfn !== faultPage) unlockPage(k, pfn);
    pages.put(pfn);
    if (newPfn !== pfn) {
      unlockPage(k, newPfn);
      pages.put(newPfn);
    }
  } else {
    if (pfn !== faultPage) unlockPage(k, pfn);
    putbackOrPut(ctx, pfn);
    if (newPfn !== pfn) {
      unlockPage(k, newPfn);
      putbackOrPut(ctx, newPfn);
    }
  }
}

/**
 * finalizeNow's common entries under the versions that put only dst on the LRU, from `from` on while
 * they last: a page that moved to an anonymous device page, whose migration entry lies in the PTE table
 * the batch holds (see PtlBatch), both pages locked by this thread, nobody waiting on any page. Makes
 * the state changes that finalizeEntryStart, removeMigrationPtesNow (remapMigrationEntry for a
 * device-private dst) and finalizeEntryEnd make for each, in the same order, on the page arrays
 * directly (finalize of 1 GiB took 23 ms through the helpers, 15 ms this way). Returns the first entry
 * it left alone, which the caller takes through the helpers. fast-paths.property.test.ts holds both
 * ways to the same state.
 */
function finalizeMovedRunNow(
  ctx: MigrateContext,
  src: Float64Array,
  dst: Float64Array,
  from: number,
  npages: number,
  faultPage: number,
  batch: PtlBatch,
): number {
  const L = ctx.layout;
  const k = ctx.k;
  const pages = k.pages;
  // The batch already knows the sole VMA of the pages' anon_vma and holds the lock of one PTE table.
  const vma = batch.soleVma;
  if (vma === null || batch.table < 0 || batch.root !== vma.mm.root) return from;
  // unlock_page wakes waiters; with none on any page (and no other thread to add one) it only clears.
  if (!k.pageWaiters.empty) return from;
  const { flags, lockHolder, heldRefs, mapcount, mapping, index } = pages;
  const entries = k.pt.entries;
  const me = k.sched.current().id;
  const writable = (vma.flags & VM_WRITE) !== 0;
  // Nothing in the loop changes the batch (put only frees src), so its table is read once.
  const { table, mappingId, pmdIndex } = batch;
  let moved = 0;
  let anonMapped = 0;
  let i = from;
  for (; i < npages; i++) {
    const srcEntry = src[i]!;
    if (!hasFlag(srcEntry, L.MIGRATE)) break;
    const pfn = migratePfnToPfn(L, srcEntry);
    const newPfn = migratePfnToPfn(L, dst[i]!);
    if (pfn < 0 || newPfn < 0 || pfn === faultPage) break;
    // An anonymous device-private page: its rmap counts in MM_ANONPAGES. (A device-coherent page gets
    // a present PTE, which remapMigrationEntry builds.)
    if ((flags[newPfn]! & (PG_zone_device | PG_device_coherent | PG_anon)) !== (PG_zone_device | PG_anon))
      break;
    if (mapping[newPfn] !== mappingId) break;
    const vpn = vma.vpnOfIndex(index[newPfn]!);
    if (vpn < 0 || pmdIndex !== Math.floor(vpn * (1 / 512))) break;
    const slot = PageTables.slot(table, vpn);
    const pte = entries[slot]!;
    if (!isMigrationEntry(pte) || pteFrame(pte) !== pfn) break;
    if (lockHolder[pfn] !== me || lockHolder[newPfn] !== me || heldRefs[newPfn]! < 1) break;
    moved++;
    // remove_migration_pte: the device-private entry takes a reference and an rmap of dst. With the
    // put_page of dst below, the reference dst's migration held becomes the entry's: refcount stays.
    mapcount[newPfn]!++;
    anonMapped++;
    entries[slot] = makeDevicePrivateEntry(newPfn, writable && isWritableMigrationEntry(pte));
    // RMAP_EXCLUSIVE for every entry but a readable one (remapMigrationEntry).
    if (!isReadableMigrationEntry(pte)) flags[newPfn]! |= PG_anon_exclusive;
    // unlock_page and put_page of src (which frees it through put), then of dst (which stays mapped).
    flags[pfn]! &= ~PG_locked;
    lockHolder[pfn] = 0;
    pages.put(pfn);
    flags[newPfn]! &= ~PG_locked;
    lockHolder[newPfn] = 0;
    heldRefs[newPfn]!--;
  }
  k.stats.migrateMoved += moved;
  vma.mm.rssAnon += anonMapped;
  return i;
}

/**
 * Finalize entries from `from` on for a thread that runs alone (a fast path, see Kernel.fastPaths): the
 * same steps as the generator below without scheduling points, with consecutive remaps in one PTE table
 * under one PTL acquisition, and runs of device-bound entries through finalizeMovedRunNow. Stops
 * where another thread is alive; returns the next entry and adds the entries finalized to `counted`.
 */
function finalizeNow(
  ctx: MigrateContext,
  src: Float64Array,
  dst: Float64Array,
  from: number,
  npages: number,
  faultPage: number,
  cpu: number,
  counted: { finalized: number },
): number {
  const k = ctx.k;
  const L = ctx.layout;
  const batch = new PtlBatch();
  let i = from;
  const quick = ctx.migrate.finalizeLruOnlyDst;
  for (; i < npages && !k.sched.contended; i++) {
    if (quick) {
      const next = finalizeMovedRunNow(ctx, src, dst, i, npages, faultPage, batch);
      counted.finalized += next - i;
      i = next;
      if (i >= npages) break;
    }
    const pfn = migratePfnToPfn(L, src[i]!);
    const startPfn = finalizeEntryStart(ctx, src, dst, i, cpu);
    if (startPfn < 0) continue;
    removeMigrationPtesNow(k, pfn, startPfn, batch);
    finalizeEntryEnd(ctx, pfn, startPfn, faultPage);
    counted.finalized++;
  }
  ptlBatchEnd(k, batch);
  return i;
}

/**
 * migrate_vma_finalize / migrate_device_finalize: points each migration entry at the new page where the
 * entry migrated and back at the old one otherwise, then unlocks and releases both.
 */
export function* migrateVmaFinalizeCore(
  ctx: MigrateContext,
  src: Float64Array,
  dst: Float64Array,
  npages: number,
  faultPage: number,
): Kfn<number> {
  const k = ctx.k;
  const L = ctx.layout;
  const cpu = k.sched.current().cpu;
  const counted = { finalized: 0 };
  for (let i = 0; i < npages; i++) {
    if (k.fastPaths && !k.sched.contended) {
      i = finalizeNow(ctx, src, dst, i, npages, faultPage, cpu, counted);
      if (i >= npages) break;
    }
    const newPfn = finalizeEntryStart(ctx, src, dst, i, cpu);
    if (newPfn < 0) continue;
    const pfn = migratePfnToPfn(L, src[i]!);
    yield* removeMigrationPtes(k, pfn, newPfn);
    finalizeEntryEnd(ctx, pfn, newPfn, faultPage);
    counted.finalized++;
  }
  return counted.finalized;
}

// ---------------------------------------------------------------------------------------------------
// The modern three-phase API.

/** The arguments of migrate_vma_setup, with byte addresses as a driver passes them. */
export interface MigrateVmaArgs {
  vma: Vma | null;
  /** Byte addresses; masked to pages as the kernel does. */
  start: number;
  end: number;
  src: Float64Array | null;
  dst: Float64Array | null;
  pgmapOwner: unknown;
  flags: number;
  /** migrate_to_ram's vmf->page, locked, or -1. */
  faultPage?: number;
  /** Out: entries collected and still migrating after setup. */
  cpages?: number;
  /** Out: entries walked. */
  npages?: number;
  /** The state the later phases continue from (set by setup). */
  state?: MigrateVma;
}

/**
 * migrate_vma_setup: checks the arguments (-EINVAL as the kernel does), collects and unmaps. Returns 0
 * even when nothing can move; args.cpages says how many entries can.
 */
export function* migrateVmaSetup(ctx: MigrateContext, args: MigrateVmaArgs): Kfn<number> {
  const pagesWanted = Math.floor((args.end - args.start) / PAGE_SIZE);
  const start = Math.floor(args.start / PAGE_SIZE);
  const end = Math.floor(args.end / PAGE_SIZE);
  const vma = args.vma;
  const faultPage = args.faultPage ?? -1;
  if (vma === null || (vma.flags & VM_HUGETLB) !== 0 || (vma.flags & VM_SPECIAL) !== 0) return -EINVAL;
  if (pagesWanted <= 0) return -EINVAL;
  if (start < vma.start || start >= vma.end) return -EINVAL;
  if (end <= vma.start || end > vma.end) return -EINVAL;
  if (args.src === null || args.dst === null) return -EINVAL;
  if (args.src.length < pagesWanted || args.dst.length < pagesWanted) return -EINVAL;
  if (
    faultPage >= 0 &&
    !(ctx.k.pages.isZoneDevice(faultPage) && ctx.pagemaps.of(faultPage).type === MEMORY_DEVICE_PRIVATE)
  )
    return -EINVAL;
  if (faultPage >= 0 && !ctx.k.pages.has(faultPage, 1)) return -EINVAL; // PG_locked
  args.src.fill(0, 0, pagesWanted);
  const m: MigrateVma = {
    vma,
    src: args.src,
    dst: args.dst,
    cpages: 0,
    npages: 0,
    start,
    end,
    pgmapOwner: args.pgmapOwner,
    flags: args.flags,
    faultPage,
  };
  yield* migrateVmaCollect(ctx, m);
  if (m.cpages > 0) m.cpages = yield* migrateDeviceUnmap(ctx, m.src, m.npages, faultPage);
  args.state = m;
  args.cpages = m.cpages;
  args.npages = m.npages;
  return 0;
}

/** migrate_vma_pages: after the driver has filled dst with locked pages holding the copied data. */
export function* migrateVmaPages(ctx: MigrateContext, args: MigrateVmaArgs): Kfn<void> {
  const m = args.state;
  assert(m !== undefined, "migrate_vma_pages before a successful migrate_vma_setup");
  yield* migrateVmaPagesCore(ctx, m);
}

/** migrate_vma_finalize: restores or redirects every PTE and releases the pages. */
export function* migrateVmaFinalize(ctx: MigrateContext, args: MigrateVmaArgs): Kfn<void> {
  const m = args.state;
  assert(m !== undefined, "migrate_vma_finalize before a successful migrate_vma_setup");
  yield* migrateVmaFinalizeCore(ctx, m.src, m.dst, m.npages, m.faultPage);
  args.state = undefined;
}

/**
 * migrate_device_range: selects every in-use page of a device pfn range for eviction (no VMA): each
 * page that can be referenced and trylocked is collected and unmapped. Returns 0.
 */
export function* migrateDeviceRange(
  ctx: MigrateContext,
  src: Float64Array,
  startPfn: number,
  npages: number,
): Kfn<number> {
  const k = ctx.k;
  const L = ctx.layout;
  for (let i = 0; i < npages; i++) {
    const pfn = startPfn + i;
    src[i] = 0;
    // get_page_unless_zero with no lock held: a racing final put decides whether the page is taken.
    if (k.sched.contended) yield k.sched.at("migrate_device_range: get_page_unless_zero", pageObject(pfn));
    k.sched.touch(pageObject(pfn));
    if (k.pages.refcount[pfn] === 0) continue;
    k.pages.get(pfn);
    if (!trylockPage(k, pfn)) {
      k.pages.put(pfn);
      continue;
    }
    src[i] = migratePfn(L, pfn) + L.MIGRATE;
  }
  yield* migrateDeviceUnmap(ctx, src, npages, -1);
  return 0;
}

/** migrate_device_pages: migrate_vma_pages without a VMA (no holes). */
export function* migrateDevicePages(
  ctx: MigrateContext,
  src: Float64Array,
  dst: Float64Array,
  npages: number,
): Kfn<void> {
  const m: MigrateVma = {
    vma: null,
    src,
    dst,
    cpages: 0,
    npages,
    start: 0,
    end: npages,
    pgmapOwner: null,
    flags: 0,
    faultPage: -1,
  };
  yield* migrateVmaPagesCore(ctx, m);
}

/** migrate_device_finalize. */
export function* migrateDeviceFinalize(
  ctx: MigrateContext,
  src: Float64Array,
  dst: Float64Array,
  npages: number,
): Kfn<void> {
  yield* migrateVmaFinalizeCore(ctx, src, dst, npages, -1);
}

/**
 * migrate_device_coherent_folio: moves one device-coherent page to RAM without a VMA (for a long-term
 * pin, which such a page must not get). The caller holds a reference, which stands in for collect's.
 * Returns 0 when the page moved, -EBUSY when it could not be unmapped or had no RAM page to go to.
 */
export function* migrateDeviceCoherentFolio(ctx: MigrateContext, pfn: number): Kfn<number> {
  const k = ctx.k;
  const L = ctx.layout;
  assertPage(
    k.pages.isDeviceCoherent(pfn),
    "migrate_device_coherent_folio of a page that is not coherent",
    k.pages,
    pfn,
  );
  yield* lockPage(k, pfn);
  const src = new Float64Array([migratePfn(L, pfn) + L.MIGRATE]);
  const dst = new Float64Array(1);
  // migrate_device_unmap, as migrate_vma_setup would; a page it cannot unmap is unlocked and put there.
  if ((yield* migrateDeviceUnmap(ctx, src, 1, -1)) === 0) return -EBUSY;
  const dpfn = k.ram.allocPage();
  if (dpfn >= 0) {
    assert(trylockPage(k, dpfn), "a fresh page is unlocked");
    dst[0] = migratePfn(L, dpfn);
  }
  yield* migrateDevicePages(ctx, src, dst, 1);
  const moved = hasFlag(src[0]!, L.MIGRATE);
  if (moved) k.store.copy(dpfn, pfn);
  yield* migrateDeviceFinalize(ctx, src, dst, 1);
  return moved ? 0 : -EBUSY;
}
