/**
 * lib/test_hmm.c's dmirror_fops_mmap: mmap of the device file itself fills the VMA with zeroed pages
 * of system memory (what hmm-tests' mixedmap snapshots).
 */
import { ENOMEM } from "../base/errno.js";
import type { Kernel } from "../mm/kernel.js";
import type { Vma } from "../mm/mm_types.js";
import type { DriverFile } from "../mm/mmap.js";
import { vmInsertPage } from "../mm/vm_insert.js";
import type { Kfn } from "../sched/thread.js";
import type { Dmirror } from "./dmirror.js";

/**
 * The device file as mmap(2) sees it (struct file and its f_op->mmap). Under "seed" and "4.14" the
 * driver has no ->mmap: dmirror_fops_mmap came with 6.0, with the mixedmap test, so mmap fails with
 * ENODEV there.
 */
export function dmirrorDriverFile(mirror: Dmirror): DriverFile {
  const mmap = mirror.ctx.migrate.protocol === "modern" ? (k: Kernel, vma: Vma) => fopsMmap(k, vma) : null;
  return { name: `hmm_dmirror${mirror.device.minor}`, mmap };
}

/**
 * dmirror_fops_mmap: fills the whole VMA with zeroed pages of system memory (alloc_page with
 * __GFP_ZERO), one vm_insert_page each, the page's own reference put once it is mapped. -ENOMEM when
 * RAM runs out, vm_insert_page's error otherwise; mmap then unmaps what was inserted.
 */
function* fopsMmap(k: Kernel, vma: Vma): Kfn<number> {
  for (let vpn = vma.start as number; vpn < vma.end; vpn++) {
    const pfn = k.ram.allocPage();
    if (pfn < 0) return -ENOMEM;
    k.store.zero(pfn);
    const ret = yield* vmInsertPage(k, vma, vpn, pfn);
    k.pages.put(pfn);
    if (ret < 0) return ret;
  }
  return 0;
}
