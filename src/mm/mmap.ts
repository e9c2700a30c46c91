/**
 * VMAs and the mapping system calls (mm/mmap.c, mm/mprotect.c, mm/mremap.c, mm/madvise.c for
 * MADV_DONTNEED): mmap, munmap, mprotect, mremap, madvise. Each returns what the system call returns:
 * an address or 0 on success, -errno on failure, and changes nothing when it fails its checks.
 *
 * Deliberate differences: adjacent VMAs are never merged; no rlimits, overcommit accounting or
 * mlock; mprotect never makes PTEs writable (the next write fault does).
 */
import { assert } from "../base/assert.js";
import { EACCES, EBADF, EEXIST, EFAULT, EINVAL, ENOMEM } from "../base/errno.js";
import { PAGE_SIZE, TASK_SIZE, type Vpn } from "../base/units.js";
import type { Kfn } from "../sched/thread.js";
import type { Kernel } from "./kernel.js";
import { zapPageRange } from "./memory.js";
import type { AddressSpace, MmStruct } from "./mm_types.js";
import {
  VM_ACCESS_FLAGS,
  VM_EXEC,
  VM_HUGETLB,
  VM_LOCKED,
  VM_MAYEXEC,
  VM_MAYREAD,
  VM_MAYSHARE,
  VM_MAYWRITE,
  VM_PFNMAP,
  VM_READ,
  VM_SHARED,
  VM_WRITE,
  Vma,
} from "./mm_types.js";
import {
  hasNotifiers,
  MMU_NOTIFY_CLEAR,
  MMU_NOTIFY_PROTECTION_VMA,
  MMU_NOTIFY_UNMAP,
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
import { anonVmaClone, unlinkAnonVmas } from "./rmap.js";

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_POPULATE = 0x8000;
export const MAP_FIXED_NOREPLACE = 0x100000;
export const MREMAP_MAYMOVE = 1;
export const MREMAP_FIXED = 2;
export const MADV_DONTNEED = 4;

const PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC;
const MAP_KNOWN = MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_POPULATE | MAP_FIXED_NOREPLACE;
/** Where top-down allocation starts (mmap_base): below a stack gap at the top of the address space. */
const MMAP_BASE_VPN = Math.floor((TASK_SIZE - 2 ** 30) / PAGE_SIZE);
/** The lowest address mmap hands out without MAP_FIXED (mmap_min_addr is 64 KiB; hmmsim keeps 4 GiB clear). */
const MMAP_MIN_VPN = 2 ** 20;
const TASK_VPNS = TASK_SIZE / PAGE_SIZE;

export function protToVmFlags(prot: number): number {
  return (
    (prot & PROT_READ ? VM_READ : 0) | (prot & PROT_WRITE ? VM_WRITE : 0) | (prot & PROT_EXEC ? VM_EXEC : 0)
  );
}

/** get_unmapped_area, top-down: the highest free gap of `pages` below mmap_base, or -1. */
function getUnmappedArea(mm: MmStruct, pages: number, hintVpn: number): number {
  if (
    hintVpn >= MMAP_MIN_VPN &&
    hintVpn + pages <= TASK_VPNS &&
    mm.vmasIn(hintVpn, hintVpn + pages).length === 0
  ) {
    return hintVpn;
  }
  let top = MMAP_BASE_VPN;
  // Bounded by the number of VMAs: each step moves below one of them.
  for (let i = mm.vmas.length - 1; i >= -1; i--) {
    const vma = mm.vmas[i];
    if (vma !== undefined && vma.start >= top) continue;
    const floor = vma === undefined ? MMAP_MIN_VPN : vma.end;
    if (top - floor >= pages) return top - pages;
    if (vma !== undefined) top = Math.min(top, vma.start);
  }
  return -1;
}

/** __split_vma: `vma` keeps [start, at); a new VMA takes [at, end) and is returned. */
export function splitVma(vma: Vma, at: number): Vma {
  assert(at > vma.start && at < vma.end, "split point inside the VMA", () => `${at} in ${vma}`);
  const tail = new Vma(vma.mm, at as Vpn, vma.end, vma.flags, vma.linearIndex(at), vma.file, null);
  anonVmaClone(tail, vma);
  if (vma.file !== null) vma.file.mmaps.add(tail);
  vma.end = at as Vpn;
  vma.mm.insertVma(tail);
  return tail;
}

/** Splits VMAs so that none straddles start or end; returns the VMAs now inside [start, end). */
function isolateRange(mm: MmStruct, start: number, end: number): Vma[] {
  for (const vma of mm.vmasIn(start, end)) {
    if (vma.start < start) splitVma(vma, start);
  }
  for (const vma of mm.vmasIn(start, end)) {
    if (vma.end > end) splitVma(vma, end);
  }
  return mm.vmasIn(start, end);
}

/** do_vmi_munmap with mmap_lock held for write. */
export function* doMunmap(k: Kernel, mm: MmStruct, start: number, end: number): Kfn<void> {
  for (const vma of isolateRange(mm, start, end)) {
    yield* zapPageRange(k, vma, vma.start, vma.end, MMU_NOTIFY_UNMAP);
    mm.removeVma(vma);
    unlinkAnonVmas(vma);
  }
}

function checkRange(addr: number, length: number): number {
  if (!Number.isSafeInteger(addr) || addr % PAGE_SIZE !== 0) return -EINVAL;
  if (!Number.isSafeInteger(length) || length <= 0) return -EINVAL;
  if (length > TASK_SIZE || addr > TASK_SIZE - length) return -EINVAL;
  return 0;
}

export interface MmapRequest {
  addr: number;
  length: number;
  prot: number;
  flags: number;
  /** The file for a file mapping; null with MAP_ANONYMOUS. */
  file: AddressSpace | null;
  offset: number;
}

/** do_mmap: returns the mapped address or -errno. */
export function* sysMmap(k: Kernel, mm: MmStruct, req: MmapRequest): Kfn<number> {
  const { addr, prot, flags, offset } = req;
  if (!Number.isSafeInteger(req.length) || req.length <= 0) return -EINVAL;
  const length = Math.ceil(req.length / PAGE_SIZE) * PAGE_SIZE;
  if (length > TASK_SIZE) return -ENOMEM;
  if ((flags & ~MAP_KNOWN) !== 0 || (prot & ~PROT_ALL) !== 0) return -EINVAL;
  const type = flags & (MAP_SHARED | MAP_PRIVATE);
  if (type !== MAP_SHARED && type !== MAP_PRIVATE) return -EINVAL;
  if (!Number.isSafeInteger(offset) || offset < 0 || offset % PAGE_SIZE !== 0) return -EINVAL;
  const anonymous = (flags & MAP_ANONYMOUS) !== 0;
  if (!anonymous && req.file === null) return -EBADF;
  const fixed = (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) !== 0;
  if (fixed && (!Number.isSafeInteger(addr) || addr % PAGE_SIZE !== 0)) return -EINVAL;
  if (fixed && (addr < 0 || addr > TASK_SIZE - length)) return -ENOMEM;
  const pages = length / PAGE_SIZE;
  yield* mm.mmapLock.downWrite();
  try {
    let vpn: number;
    if (fixed) {
      vpn = addr / PAGE_SIZE;
      if (mm.vmasIn(vpn, vpn + pages).length > 0) {
        if ((flags & MAP_FIXED_NOREPLACE) !== 0) return -EEXIST;
        yield* doMunmap(k, mm, vpn, vpn + pages);
      }
    } else {
      const hint = Number.isSafeInteger(addr) && addr > 0 ? Math.floor(addr / PAGE_SIZE) : 0;
      vpn = getUnmappedArea(mm, pages, hint);
      if (vpn < 0) return -ENOMEM;
    }
    let vmFlags = protToVmFlags(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
    let file = anonymous ? null : req.file;
    let pgoff = offset / PAGE_SIZE;
    if (type === MAP_SHARED) {
      vmFlags |= VM_SHARED | VM_MAYSHARE;
      if (anonymous) {
        // shmem_zero_setup: shared anonymous memory is an unnamed shmem file.
        file = k.newAddressSpace(`anon-shmem-${mm.id}-${vpn.toString(16)}`, length, true);
        pgoff = 0;
      }
    } else if (anonymous) {
      pgoff = vpn;
    }
    const vma = new Vma(mm, vpn as Vpn, (vpn + pages) as Vpn, vmFlags, pgoff, file, null);
    mm.insertVma(vma);
    if (file !== null) file.mmaps.add(vma);
    return vpn * PAGE_SIZE;
  } finally {
    mm.mmapLock.upWrite();
  }
}

/** munmap(2). */
export function* sysMunmap(k: Kernel, mm: MmStruct, addr: number, length: number): Kfn<number> {
  const bad = checkRange(addr, length);
  if (bad < 0) return bad;
  const start = addr / PAGE_SIZE;
  const end = start + Math.ceil(length / PAGE_SIZE);
  yield* mm.mmapLock.downWrite();
  try {
    yield* doMunmap(k, mm, start, end);
    return 0;
  } finally {
    mm.mmapLock.upWrite();
  }
}

/** True when [start, end) is covered by VMAs with no gap. */
function rangeFullyMapped(mm: MmStruct, start: number, end: number): boolean {
  let at = start;
  for (const vma of mm.vmasIn(start, end)) {
    if (vma.start > at) return false;
    at = vma.end;
  }
  return at >= end;
}

/** mprotect(2). */
export function* sysMprotect(
  k: Kernel,
  mm: MmStruct,
  addr: number,
  length: number,
  prot: number,
): Kfn<number> {
  if (!Number.isSafeInteger(addr) || addr % PAGE_SIZE !== 0) return -EINVAL;
  if ((prot & ~PROT_ALL) !== 0) return -EINVAL;
  if (!Number.isSafeInteger(length) || length < 0) return -EINVAL;
  if (length === 0) return 0;
  if (addr > TASK_SIZE - length) return -ENOMEM;
  const start = addr / PAGE_SIZE;
  const end = start + Math.ceil(length / PAGE_SIZE);
  const newFlags = protToVmFlags(prot);
  yield* mm.mmapLock.downWrite();
  try {
    if (!rangeFullyMapped(mm, start, end)) return -ENOMEM;
    for (const vma of mm.vmasIn(start, end)) {
      if ((newFlags & VM_WRITE) !== 0 && (vma.flags & VM_MAYWRITE) === 0) return -EACCES;
    }
    for (const vma of isolateRange(mm, start, end)) {
      const old = vma.flags;
      vma.flags = (old & ~VM_ACCESS_FLAGS) | newFlags;
      // mprotect_fixup runs change_protection whenever the flags change.
      const noAccess = (newFlags & (VM_READ | VM_WRITE | VM_EXEC)) === 0;
      if (vma.flags !== old) yield* changeProtection(k, vma, noAccess);
    }
    return 0;
  } finally {
    mm.mmapLock.upWrite();
  }
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
  while (vpn < vma.end) {
    const tableEnd = Math.min(vma.end, (Math.floor(vpn / 512) + 1) * 512);
    const table = k.pt.lookupTable(mm.root, vpn);
    if (table >= 0) {
      if (k.sched.contended || !k.ptl.tryLock(table)) yield* k.ptl.lock(table);
      for (let v = vpn; v < tableEnd; v++) {
        const slot = PageTables.slot(table, v);
        const pte = k.pt.entries[slot]!;
        if (pte === 0) continue;
        if (ptePresent(pte)) {
          const clear = (writable ? 0 : _PAGE_RW) | (noAccess ? 0 : _PAGE_PROTNONE);
          k.pt.entries[slot] = pteWithBits(
            pte,
            noAccess ? _PAGE_PROTNONE : 0,
            clear | (noAccess ? _PAGE_RW : 0),
          );
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
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
}

/**
 * move_page_tables: moves every PTE of [oldStart, oldStart + pages) to newStart. Pages keep their
 * rmap index, which the moved VMA's vm_pgoff still translates.
 */
function* movePageTables(k: Kernel, vma: Vma, oldStart: number, newStart: number, pages: number): Kfn<void> {
  const mm = vma.mm;
  const range = hasNotifiers(mm, oldStart, oldStart + pages)
    ? notifierRange(mm, vma, oldStart, oldStart + pages, MMU_NOTIFY_UNMAP)
    : null;
  if (range !== null) yield* mmuNotifierInvalidateRangeStart(k, range);
  for (let i = 0; i < pages; i++) {
    const from = k.pt.lookupTable(mm.root, oldStart + i);
    if (from < 0) continue;
    const fromSlot = PageTables.slot(from, oldStart + i);
    const pte = k.pt.entries[fromSlot]!;
    if (pte === 0) continue;
    const to = k.pt.ensureTable(mm.root, newStart + i);
    if (k.sched.contended || !k.ptl.tryLock(from)) yield* k.ptl.lock(from);
    if (to !== from && (k.sched.contended || !k.ptl.tryLock(to))) yield* k.ptl.lock(to);
    k.pt.entries[PageTables.slot(to, newStart + i)] = k.pt.entries[fromSlot]!;
    k.pt.entries[fromSlot] = 0;
    if (to !== from) k.ptl.unlock(to);
    k.ptl.unlock(from);
  }
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
}

/** mremap(2): returns the new address or -errno. */
export function* sysMremap(
  k: Kernel,
  mm: MmStruct,
  oldAddr: number,
  oldLength: number,
  newLength: number,
  flags: number,
  newAddr: number,
): Kfn<number> {
  if ((flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED)) !== 0) return -EINVAL;
  if ((flags & MREMAP_FIXED) !== 0 && (flags & MREMAP_MAYMOVE) === 0) return -EINVAL;
  if (!Number.isSafeInteger(oldAddr) || oldAddr % PAGE_SIZE !== 0) return -EINVAL;
  if (!Number.isSafeInteger(newLength) || newLength <= 0 || !Number.isSafeInteger(oldLength) || oldLength < 0)
    return -EINVAL;
  const oldPages = Math.ceil(oldLength / PAGE_SIZE);
  const newPages = Math.ceil(newLength / PAGE_SIZE);
  const oldStart = oldAddr / PAGE_SIZE;
  if (oldPages === 0) return -EINVAL; // duplicating a shared mapping with old_len 0 is not modelled
  const fixed = (flags & MREMAP_FIXED) !== 0;
  if (fixed) {
    if (!Number.isSafeInteger(newAddr) || newAddr % PAGE_SIZE !== 0) return -EINVAL;
    if (newAddr > TASK_SIZE - newPages * PAGE_SIZE) return -EINVAL;
    const newStart = newAddr / PAGE_SIZE;
    // The new range may not overlap the old one.
    if (newStart < oldStart + oldPages && oldStart < newStart + newPages) return -EINVAL;
  }
  yield* mm.mmapLock.downWrite();
  try {
    const vma = mm.findVma(oldStart);
    if (vma === null || vma.start > oldStart) return -EFAULT;
    if (oldStart + oldPages > vma.end) return -EFAULT;
    if (!fixed && newPages <= oldPages) {
      if (newPages < oldPages) yield* doMunmap(k, mm, oldStart + newPages, oldStart + oldPages);
      return oldAddr;
    }
    if (
      !fixed &&
      oldStart + oldPages === vma.end &&
      mm.vmasIn(vma.end, oldStart + newPages).length === 0 &&
      oldStart + newPages <= TASK_VPNS
    ) {
      vma.end = (oldStart + newPages) as Vpn;
      return oldAddr;
    }
    if ((flags & MREMAP_MAYMOVE) === 0) return -ENOMEM;
    let newStart: number;
    if (fixed) {
      newStart = newAddr / PAGE_SIZE;
      yield* doMunmap(k, mm, newStart, newStart + newPages);
    } else {
      newStart = getUnmappedArea(mm, newPages, 0);
      if (newStart < 0) return -ENOMEM;
    }
    // Shrinking first keeps the moved part to what survives.
    const movedPages = Math.min(oldPages, newPages);
    if (newPages < oldPages) yield* doMunmap(k, mm, oldStart + newPages, oldStart + oldPages);
    const [source] = isolateRange(mm, oldStart, oldStart + movedPages);
    assert(source !== undefined && source.start === oldStart, "mremap source VMA", () => String(source));
    const moved = new Vma(
      mm,
      newStart as Vpn,
      (newStart + newPages) as Vpn,
      source.flags,
      source.pgoff,
      source.file,
      null,
    );
    anonVmaClone(moved, source);
    if (moved.file !== null) moved.file.mmaps.add(moved);
    mm.insertVma(moved);
    yield* movePageTables(k, source, oldStart, newStart, movedPages);
    mm.removeVma(source);
    unlinkAnonVmas(source);
    return newStart * PAGE_SIZE;
  } finally {
    mm.mmapLock.upWrite();
  }
}

/** madvise(2), MADV_DONTNEED only. */
export function* sysMadvise(
  k: Kernel,
  mm: MmStruct,
  addr: number,
  length: number,
  advice: number,
): Kfn<number> {
  if (advice !== MADV_DONTNEED) return -EINVAL;
  if (!Number.isSafeInteger(addr) || addr % PAGE_SIZE !== 0) return -EINVAL;
  if (!Number.isSafeInteger(length) || length < 0) return -EINVAL;
  if (length === 0) return 0;
  if (addr > TASK_SIZE - length) return -EINVAL;
  const start = addr / PAGE_SIZE;
  const end = start + Math.ceil(length / PAGE_SIZE);
  yield* mm.mmapLock.downRead();
  try {
    const vmas = mm.vmasIn(start, end);
    for (const vma of vmas) if ((vma.flags & (VM_LOCKED | VM_HUGETLB | VM_PFNMAP)) !== 0) return -EINVAL;
    for (const vma of vmas) {
      yield* zapPageRange(k, vma, Math.max(start, vma.start), Math.min(end, vma.end), MMU_NOTIFY_CLEAR);
    }
    // The kernel zaps what is mapped and still reports the hole.
    return rangeFullyMapped(mm, start, end) ? 0 : -ENOMEM;
  } finally {
    mm.mmapLock.upRead();
  }
}
