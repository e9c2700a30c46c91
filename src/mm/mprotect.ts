/**
 * mprotect(2) (mm/mprotect.c): do_mprotect_pkey, mprotect_fixup and change_protection.
 *
 * As in the kernel, mprotect walks the VMAs in order and changes each before it looks at the next: a
 * hole part-way through the range (or a VMA the new protection is not allowed on) stops the walk with
 * ENOMEM (or EACCES) after the VMAs before it have changed. Only a failure at the start, or of an
 * argument check, changes nothing.
 *
 * Deliberate differences: no protection keys, personalities (READ_IMPLIES_EXEC) or sealing; VMAs are
 * never merged back; mprotect never makes PTEs writable (the next write fault does), where the kernel
 * upgrades exclusive anonymous PTEs at once (MM_CP_TRY_CHANGE_WRITABLE).
 */
import { minU64, ulongArg } from "../base/abi.js";
import { EACCES, EINVAL, ENOMEM } from "../base/errno.js";
import type { Kfn } from "../sched/thread.js";
import { pmdLock, splitHugePmdsAround } from "./huge_memory.js";
import { hugetlbChangeProtection, hugetlbMaySplit, isVmHugetlbPage } from "./hugetlb.js";
import type { Kernel } from "./kernel.js";
import {
  type MmStruct,
  VM_ACCESS_FLAGS,
  VM_EXEC,
  VM_GROWSDOWN,
  VM_READ,
  VM_WRITE,
  type Vma,
} from "./mm_types.js";
import { PROT_EXEC, PROT_GROWSDOWN, PROT_GROWSUP, PROT_READ, PROT_SEM, PROT_WRITE } from "./mman.js";
import { isolateVma, PAGE_BYTES, pageAlignUlong, protToVmFlags, TASK_BYTES } from "./mmap.js";
import {
  hasNotifiers,
  MMU_NOTIFY_PROTECTION_VMA,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  notifierRange,
} from "./mmu_notifier.js";
import {
  _PAGE_PROTNONE,
  _PAGE_RW,
  isWritableDevicePrivateEntry,
  isWritableMigrationEntry,
  makeDevicePrivateEntry,
  migrationEntryReadOnly,
  PageTables,
  pteFrame,
  ptePresent,
  pteWithBits,
} from "./pgtable.js";

const U64_LIMIT = 1n << 64n;
const GROWS = BigInt(PROT_GROWSDOWN | PROT_GROWSUP);
/** arch_validate_prot (the generic one, which x86 uses): the bits mprotect accepts. */
const PROT_VALID = BigInt(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM);

/**
 * mprotect(2): do_mprotect_pkey without a key. Argument checks in the kernel's order: both GROWS
 * flags, an unaligned start (EINVAL); length 0 (success, whatever the protection); a range that wraps
 * (ENOMEM); unknown protection bits (EINVAL). Then the walk: no VMA at the start (ENOMEM); PROT_GROWSDOWN
 * or PROT_GROWSUP on a VMA that does not grow (EINVAL, and no VMA grows in hmmsim); per VMA, a hole
 * before it (ENOMEM) or an access the VMA may never have (EACCES); and ENOMEM when the range runs past
 * the last VMA.
 */
export function* sysMprotect(
  k: Kernel,
  mm: MmStruct,
  addr: number,
  length: number,
  prot: number,
): Kfn<number> {
  const start = ulongArg(addr);
  const lenIn = ulongArg(length);
  const protIn = ulongArg(prot);
  if (start === null || lenIn === null || protIn === null) return -EINVAL;
  const grows = protIn & GROWS;
  const access = protIn & ~GROWS;
  if (grows === GROWS) return -EINVAL;
  if (start % PAGE_BYTES !== 0n) return -EINVAL;
  if (lenIn === 0n) return 0;
  const end = (start + pageAlignUlong(lenIn)) % U64_LIMIT;
  if (end <= start) return -ENOMEM;
  if ((access & ~PROT_VALID) !== 0n) return -EINVAL;
  const newAccess = protToVmFlags(Number(access & 7n));
  yield* mm.mmapLock.downWrite();
  try {
    // No VMA lies at or above TASK_SIZE: clamp there, and remember the range ran past it.
    const startVpn = Number(minU64(start, TASK_BYTES) / PAGE_BYTES);
    const endVpn = Number(minU64(end, TASK_BYTES) / PAGE_BYTES);
    const vmas = startVpn < endVpn ? mm.vmasIn(startVpn, endVpn) : [];
    const first = vmas[0];
    if (first === undefined) return -ENOMEM;
    if ((grows & BigInt(PROT_GROWSDOWN)) !== 0n) {
      if ((first.flags & VM_GROWSDOWN) === 0) return -EINVAL;
    } else {
      if (first.start > startVpn) return -ENOMEM;
      // x86 has no VM_GROWSUP: no VMA can take PROT_GROWSUP.
      if ((grows & BigInt(PROT_GROWSUP)) !== 0n) return -EINVAL;
    }
    let done: number = first.start;
    let nstart = startVpn;
    for (const vma of vmas) {
      if (vma.start !== done) return -ENOMEM;
      const newFlags = newAccess | (vma.flags & ~VM_ACCESS_FLAGS);
      // "newflags >> 4 shift VM_MAY% in place of VM_%": an access the VMA may never have.
      if ((newFlags & ~(newFlags >> 4) & VM_ACCESS_FLAGS) !== 0) return -EACCES;
      const pieceEnd = Math.min(vma.end, endVpn);
      const ret = yield* mprotectFixup(k, vma, nstart, pieceEnd, newFlags);
      if (ret !== 0) return ret;
      done = pieceEnd;
      nstart = pieceEnd;
    }
    return BigInt(done) * PAGE_BYTES < end ? -ENOMEM : 0;
  } finally {
    mm.mmapLock.upWrite();
  }
}

/**
 * mprotect_fixup: gives [start, end) of `vma` the new flags, splitting it so that one VMA covers exactly
 * that part, and changes its PTEs. A VMA whose flags do not change is left alone, unsplit. A split
 * inside a huge page of a hugetlb VMA fails with EINVAL (hugetlb_vm_op_split), leaving the VMAs before
 * it changed, as the kernel's loop does. Returns 0 or -EINVAL.
 */
function* mprotectFixup(k: Kernel, vma: Vma, start: number, end: number, newFlags: number): Kfn<number> {
  if (newFlags === vma.flags) return 0;
  if (isVmHugetlbPage(vma)) {
    const split = hugetlbMaySplit(vma.mm, start, end);
    if (split !== 0) return split;
    const piece = isolateVma(vma, start, end);
    piece.flags = newFlags;
    yield* hugetlbChangeProtection(k, piece, piece.start, piece.end);
    return 0;
  }
  yield* splitHugePmdsAround(k, vma.mm, start, end);
  const piece = isolateVma(vma, start, end);
  piece.flags = newFlags;
  yield* changeProtection(k, piece, (newFlags & (VM_READ | VM_WRITE | VM_EXEC)) === 0);
  return 0;
}

/**
 * A present entry (PTE or huge PMD) under the VMA's new protection: write access the VMA no longer grants
 * goes, PROT_NONE makes it inaccessible and access coming back makes it accessible again.
 */
function protectedPresentEntry(entry: number, writable: boolean, noAccess: boolean): number {
  const clear = (writable ? 0 : _PAGE_RW) | (noAccess ? 0 : _PAGE_PROTNONE);
  return pteWithBits(entry, noAccess ? _PAGE_PROTNONE : 0, clear | (noAccess ? _PAGE_RW : 0));
}

/**
 * change_protection over a whole VMA whose flags have just changed: PTEs lose write access the VMA no
 * longer grants, PROT_NONE PTEs become inaccessible (and accessible again when access returns), and
 * writable device-private and migration entries become read-only whatever the new protection.
 */
function* changeProtection(k: Kernel, vma: Vma, noAccess: boolean): Kfn<void> {
  const mm = vma.mm;
  const writable = (vma.flags & VM_WRITE) !== 0;
  const range = hasNotifiers(mm, vma.start, vma.end)
    ? notifierRange(mm, vma, vma.start, vma.end, MMU_NOTIFY_PROTECTION_VMA)
    : null;
  if (range !== null) yield* mmuNotifierInvalidateRangeStart(k, range);
  let vpn = vma.start as number;
  let changedPresent = false;
  while (vpn < vma.end) {
    const tableEnd = Math.min(vma.end, (Math.floor(vpn / 512) + 1) * 512);
    const table = k.pt.lookupTable(mm.root, vpn);
    if (table < 0 && k.pt.hugePmds > 0 && k.pt.readPmdLeaf(mm.root, vpn) !== 0) {
      // change_huge_pmd: the VMA was split at PMD boundaries (or its huge PMDs split), so this huge
      // PMD lies wholly inside it and changes as one entry.
      const pmdKey = k.pt.lookupPmd(mm.root, vpn);
      yield* pmdLock(k, pmdKey, "change_huge_pmd: __pmd_trans_huge_lock");
      const leaf = k.pt.pmdLeaf(pmdKey);
      const changed = leaf === 0 ? 0 : protectedPresentEntry(leaf, writable, noAccess);
      if (changed !== leaf) {
        k.pt.setPmdLeaf(pmdKey, changed);
        changedPresent = true;
      }
      k.pmdLock.unlock(pmdKey);
    }
    if (table >= 0) {
      if (k.sched.contended || !k.ptl.tryLock(table))
        yield* k.ptl.lock(table, "change_pte_range: pte_offset_map_lock");
      for (let v = vpn; v < tableEnd; v++) {
        const slot = PageTables.slot(table, v);
        const pte = k.pt.entries[slot]!;
        if (pte === 0) continue;
        if (ptePresent(pte)) {
          const changed = protectedPresentEntry(pte, writable, noAccess);
          if (changed !== pte) changedPresent = true;
          k.pt.entries[slot] = changed;
        } else if (isWritableDevicePrivateEntry(pte)) {
          // change_pte_range downgrades writable swap-type entries whatever the new protection: a
          // protection check is hard there, so it stays safe and lets the next write fault decide.
          k.pt.entries[slot] = makeDevicePrivateEntry(pteFrame(pte), false);
        } else if (isWritableMigrationEntry(pte)) {
          // An anonymous page keeps its exclusivity in a readable-exclusive entry; young and dirty stay.
          k.pt.entries[slot] = migrationEntryReadOnly(pte, k.pages.isAnon(pteFrame(pte)));
        }
      }
      k.ptl.unlock(table);
    }
    vpn = tableEnd;
  }
  // change_protection, then flush_tlb_range when pages changed (tlb_finish_mmu today): until then a CPU
  // may still write through an entry made before mprotect, which has not returned yet.
  if (changedPresent) k.tlb.flushRange(mm.id, vma.start, vma.end);
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
}
