/**
 * fork and exit for address spaces (kernel/fork.c dup_mm/dup_mmap, mm/mmap.c exit_mmap).
 *
 * Deliberate differences: no VM_WIPEONFORK; the parent's whole range is invalidated with
 * MMU_NOTIFY_PROTECTION_PAGE per COW VMA rather than per page table.
 */
import type { Kfn } from "../sched/thread.js";
import type { Kernel } from "./kernel.js";
import { copyPageRange, zapPageRange } from "./memory.js";
import {
  type MmStruct,
  VM_DONTCOPY,
  VM_MAYWRITE,
  VM_MIXEDMAP,
  VM_PFNMAP,
  VM_SHARED,
  Vma,
} from "./mm_types.js";
import {
  hasNotifiers,
  MMU_NOTIFY_PROTECTION_PAGE,
  MMU_NOTIFY_RELEASE,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  notifierRange,
} from "./mmu_notifier.js";
import { anonVmaClone, unlinkAnonVmas } from "./rmap.js";

/** dup_mm: a child address space that shares file pages and COW-shares anonymous ones. Returns the child mm or -ENOMEM. */
export function* dupMm(k: Kernel, parent: MmStruct): Kfn<MmStruct | number> {
  const child = k.newMm();
  yield* parent.mmapLock.downWrite();
  try {
    for (const vma of parent.vmas) {
      if ((vma.flags & VM_DONTCOPY) !== 0) continue;
      const copy = new Vma(child, vma.start, vma.end, vma.flags, vma.pgoff, vma.file, null, vma.driverFile);
      if (vma.anonVma !== null) {
        // anon_vma_fork: the child joins the parent's anon_vmas and gets one of its own for new pages.
        anonVmaClone(copy, vma);
        const own = k.newAnonVma(vma.anonVma);
        own.link(copy);
        copy.anonVmaChain.push(own);
        copy.anonVma = own;
      }
      if (copy.file !== null) copy.file.mmaps.add(copy);
      child.insertVma(copy);
      // copy_page_range skips VMAs whose pages a fault will find again (no anon pages, nothing special).
      if (vma.anonVma === null && (vma.flags & (VM_PFNMAP | VM_MIXEDMAP)) === 0) continue;
      const cow = (vma.flags & VM_SHARED) === 0 && (vma.flags & VM_MAYWRITE) !== 0;
      const range =
        cow && hasNotifiers(parent, vma.start, vma.end)
          ? notifierRange(parent, vma, vma.start, vma.end, MMU_NOTIFY_PROTECTION_PAGE)
          : null;
      if (range !== null) yield* mmuNotifierInvalidateRangeStart(k, range);
      const ret = yield* copyPageRange(k, copy, vma);
      if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
      if (ret < 0) {
        parent.mmapLock.upWrite();
        yield* exitMmap(k, child);
        yield* parent.mmapLock.downWrite();
        return ret;
      }
    }
    return child;
  } finally {
    // dup_mmap's flush_tlb_mm(oldmm): the parent's CPUs drop the writable entries of the pages COW now
    // shares, before mmap_lock goes (until here a parent thread could still write to a shared page,
    // as in the kernel: the fork has not returned).
    k.tlb.flushMm(parent.id);
    parent.mmapLock.upWrite();
  }
}

/** exit_mmap: tears down every VMA and the page tables; the mm is gone afterwards. */
export function* exitMmap(k: Kernel, mm: MmStruct): Kfn<void> {
  yield* mm.mmapLock.downWrite();
  try {
    // mmu_notifier_release: every subscriber hears that the whole address space is going.
    for (const sub of [...mm.notifiers]) {
      const range = notifierRange(mm, null, sub.start, sub.end, MMU_NOTIFY_RELEASE);
      yield* mmuNotifierInvalidateRangeStart(k, range);
      mmuNotifierInvalidateRangeEnd(k, range);
    }
    for (const vma of [...mm.vmas]) {
      yield* zapPageRange(k, vma, vma.start, vma.end, MMU_NOTIFY_RELEASE);
      mm.removeVma(vma);
      unlinkAnonVmas(vma);
    }
    // tlb_finish_mmu of exit_mmap: the zaps flushed what they cleared; nothing of the mm is left cached.
    k.tlb.flushMm(mm.id);
    k.pt.freeRoot(mm.root);
    mm.exited = true;
    k.mms.delete(mm.id);
  } finally {
    mm.mmapLock.upWrite();
  }
  // The mm is gone (the model's mmput): its mmap_lock no longer needs watching.
  k.sched.untrackLocks(mm.mmapLock);
}
