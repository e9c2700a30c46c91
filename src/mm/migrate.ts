/**
 * The struct-page half of migration (mm/migrate.c): migrate_page_move_mapping and migrate_page in
 * MIGRATE_SYNC_NO_COPY mode, used by migrate_vma once the driver has copied the data.
 */
import { EAGAIN } from "../base/errno.js";
import type { Kernel } from "./kernel.js";
import {
  assertPage,
  PG_active,
  PG_anon,
  PG_anon_exclusive,
  PG_dirty,
  PG_memcg_moved,
  PG_referenced,
  PG_swapbacked,
  PG_uptodate,
} from "./page.js";

/** MIGRATEPAGE_SUCCESS: what migrate_page and its helpers return when the page moved. */
export const MIGRATEPAGE_SUCCESS = 0;

/**
 * Flags that migrate_page_states / folio_migrate_flags carry to the new page. Not PG_anon_exclusive:
 * it "is always migrated via migration entries" (folio_migrate_flags), so remove_migration_pte sets it
 * on the new page from the entry (migratePageNoCopy copies it only for a page no PTE maps any more).
 */
const MIGRATED_FLAGS = PG_dirty | PG_uptodate | PG_active | PG_referenced | PG_swapbacked | PG_anon;

/**
 * migrate_page_move_mapping / folio_migrate_mapping for pages without a page-cache mapping (hmmsim
 * migrates only anonymous memory): the old page must hold exactly `expected` references, else -EAGAIN;
 * then the new page takes over mapping and index. With a mapping (a file page) the kernel would move the
 * page-cache slot; hmmsim does not model that and returns -EAGAIN, so a page-cache page stays where it is
 * (migrate_vma already refuses them for device destinations, as the kernel does).
 */
export function migratePageMoveMapping(k: Kernel, newPfn: number, pfn: number, expected: number): number {
  const pages = k.pages;
  if (!pages.isAnon(pfn) && pages.mapping[pfn] !== 0) return -EAGAIN;
  if (pages.refcount[pfn] !== expected) return -EAGAIN;
  pages.mapping[newPfn] = pages.mapping[pfn]!;
  pages.index[newPfn] = pages.index[pfn]!;
  return MIGRATEPAGE_SUCCESS;
}

/** migrate_page(mapping, newpage, page, MIGRATE_SYNC_NO_COPY): metadata only; the data was copied. */
export function migratePageNoCopy(k: Kernel, newPfn: number, pfn: number, expected: number): number {
  const ret = migratePageMoveMapping(k, newPfn, pfn, expected);
  if (ret !== MIGRATEPAGE_SUCCESS) return ret;
  const pages = k.pages;
  // migrate_page_states: the new page inherits the state flags; the old keeps its mapping until freed.
  pages.flags[newPfn] = (pages.flags[newPfn]! & ~MIGRATED_FLAGS) | (pages.flags[pfn]! & MIGRATED_FLAGS);
  // folio_migrate_flags: PG_anon_exclusive travels in migration entries, so a page still marked here is
  // one no PTE maps any more ("effectively unmapped and unreferenced": zapped by munmap or
  // MADV_DONTNEED after migrate_device_range took it, before try_to_migrate would have cleared it). The
  // kernel copies the bit (PG_mappedtodisk); the new page, mapped by nothing, is freed by finalize.
  if (pages.has(pfn, PG_anon_exclusive)) {
    assertPage(pages.mapcount[pfn] === 0, "migrating a mapped page still marked exclusive", pages, pfn);
    pages.set(newPfn, PG_anon_exclusive);
  }
  // folio_migrate_flags → mem_cgroup_migrate (6.x): the charge, and memcg_data, go to the new page.
  if (k.protocol === "modern") pages.set(pfn, PG_memcg_moved);
  return MIGRATEPAGE_SUCCESS;
}
