/**
 * walk_page_range (mm/pagewalk.c) at the granularity hmmsim has: the range is cut at VMA boundaries
 * and at PMD boundaries; each PMD span gets `pmdEntry` with its PTE table, or `pteHole` when no PTE
 * table exists there or no VMA covers it (`vma` null). A callback returning non-zero stops the walk,
 * and the walk returns that value.
 *
 * A huge PMD goes to `pmdHuge` when the caller gives one (pmd_entry seeing pmd_trans_huge); otherwise
 * the walk splits it first (split_huge_pmd, as walk_pmd_range does for walkers with only PTE
 * callbacks) and calls `pmdEntry` with the new PTE table.
 *
 * Deliberate differences: no PUD leaves (no huge PUDs); no test_walk hook (callers check their VMAs
 * themselves); the caller holds mmap_lock.
 */
import type { Kfn } from "../sched/thread.js";
import { splitHugePmd } from "./huge_memory.js";
import type { Kernel } from "./kernel.js";
import type { MmStruct, Vma } from "./mm_types.js";

/**
 * struct mm_walk_ops, the callbacks walkPageRange calls (the part hmm_range_fault and migrate_vma_collect
 * use).
 */
export interface MmWalkOps {
  /** pmd_entry: called with the PTE table of [start, end) inside `vma`; a non-zero return stops the walk. */
  pmdEntry(table: number, start: number, end: number, vma: Vma): Kfn<number>;
  /**
   * pte_hole: called for [start, end) with no PTE table or no VMA (`vma` null); a non-zero return stops the
   * walk.
   */
  pteHole(start: number, end: number, vma: Vma | null): Kfn<number>;
  /**
   * pmd_entry of a huge PMD (PMD key and leaf word) covering [start, end) inside `vma`; a non-zero return
   * stops the walk. Without it the walk splits the PMD and calls pmdEntry.
   */
  pmdHuge?(pmdKey: number, leaf: number, start: number, end: number, vma: Vma): Kfn<number>;
}

/**
 * walk_page_range: walks [start, end) of `mm`, calling `ops` for each PTE table and hole; returns the first
 * non-zero callback result, or 0.
 */
export function* walkPageRange(
  k: Kernel,
  mm: MmStruct,
  start: number,
  end: number,
  ops: MmWalkOps,
): Kfn<number> {
  let vpn = start;
  // Bounded: vpn advances by at least one page per pass and never past end.
  while (vpn < end) {
    const vma = mm.findVma(vpn);
    if (vma === null) {
      const next = mm.findVmaFrom(vpn);
      const holeEnd = next === null ? end : Math.min(end, next.start);
      const ret = yield* ops.pteHole(vpn, holeEnd, null);
      if (ret !== 0) return ret;
      vpn = holeEnd;
      continue;
    }
    const vmaEnd = Math.min(end, vma.end);
    while (vpn < vmaEnd) {
      const spanEnd = Math.min(vmaEnd, (Math.floor(vpn / 512) + 1) * 512);
      let table = k.pt.lookupTable(mm.root, vpn);
      if (table < 0 && k.pt.hugePmds > 0) {
        const pmdKey = k.pt.lookupPmd(mm.root, vpn);
        const leaf = pmdKey < 0 ? 0 : k.pt.pmdLeaf(pmdKey);
        if (leaf !== 0 && ops.pmdHuge !== undefined) {
          const ret = yield* ops.pmdHuge(pmdKey, leaf, vpn, spanEnd, vma);
          if (ret !== 0) return ret;
          vpn = spanEnd;
          continue;
        }
        if (leaf !== 0) {
          yield* splitHugePmd(k, vma, vpn);
          table = k.pt.lookupTable(mm.root, vpn);
        }
      }
      const ret =
        table < 0 ? yield* ops.pteHole(vpn, spanEnd, vma) : yield* ops.pmdEntry(table, vpn, spanEnd, vma);
      if (ret !== 0) return ret;
      vpn = spanEnd;
    }
  }
  return 0;
}
