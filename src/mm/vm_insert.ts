/**
 * vm_insert_page (mm/memory.c): how a driver's ->mmap puts pages of its own into the VMA it is given,
 * as lib/test_hmm.c's dmirror_fops_mmap does with zeroed pages (what hmm-tests' mixedmap snapshots).
 */
import { EBUSY, EFAULT, EINVAL } from "../base/errno.js";
import type { Kfn } from "../sched/thread.js";
import type { Kernel } from "./kernel.js";
import { ptlLock } from "./memory.js";
import { VM_ACCESS_FLAGS, VM_MIXEDMAP, VM_PFNMAP, VM_SHARED, VM_WRITE, type Vma } from "./mm_types.js";
import { assertPage } from "./page.js";
import { _PAGE_ACCESSED, _PAGE_PROTNONE, _PAGE_RW, mkPte, PageTables } from "./pgtable.js";
import { pageAddRmap } from "./rmap.js";

/**
 * vm_insert_page(vma, addr, page): maps `pfn`, a page the driver allocated (not anonymous, in no page
 * cache, referenced), at `vpn` of `vma`, its own VMA, during ->mmap with mmap_lock held for write. The
 * first insertion marks the VMA VM_MIXEDMAP; insert_page takes a reference and a file rmap (RSS file)
 * and installs a PTE with the VMA's page protection: writable only in a shared writable mapping, so a
 * write to a private one copies the page (do_wp_page). Returns 0 or -errno: EFAULT outside the VMA,
 * EINVAL for a free or anonymous page (validate_page_before_insert), EBUSY over an existing entry
 * (insert_page_into_pte_locked). Deliberate difference: a ZONE_DEVICE page is EINVAL too; the kernel
 * lets P2PDMA memory through, and hmmsim's device memory (private or coherent) is never mapped so.
 */
export function* vmInsertPage(k: Kernel, vma: Vma, vpn: number, pfn: number): Kfn<number> {
  const pages = k.pages;
  if (!vma.contains(vpn)) return -EFAULT;
  if (pfn <= 0 || pfn >= pages.capacity || pages.refcount[pfn] === 0) return -EINVAL;
  if (pages.isAnon(pfn) || pages.isZoneDevice(pfn)) return -EINVAL;
  // The kernel BUG()s on a VM_PFNMAP VMA here: a driver mixing the two kinds of mapping is broken.
  assertPage((vma.flags & VM_PFNMAP) === 0, "vm_insert_page into a VM_PFNMAP VMA", pages, pfn);
  vma.flags |= VM_MIXEDMAP;
  const table = k.pt.ensureTable(vma.mm.root, vpn);
  yield* ptlLock(k, table, "insert_page: get_locked_pte");
  try {
    const slot = PageTables.slot(table, vpn);
    if (k.pt.entries[slot] !== 0) return -EBUSY;
    // folio_get for the PTE: a reference the checker counts through the mapping.
    pages.getStructural(pfn);
    pageAddRmap(k, pfn, vma);
    // vm_page_prot of the VMA: PROT_NONE, read-only (private, or shared without PROT_WRITE) or writable.
    let bits = (vma.flags & VM_ACCESS_FLAGS) === 0 ? _PAGE_PROTNONE | _PAGE_ACCESSED : _PAGE_ACCESSED;
    if ((vma.flags & (VM_SHARED | VM_WRITE)) === (VM_SHARED | VM_WRITE)) bits |= _PAGE_RW;
    k.pt.entries[slot] = mkPte(pfn, bits);
    return 0;
  } finally {
    k.ptl.unlock(table);
  }
}
