/**
 * mremap(2) (mm/mremap.c), after today's structure: check_mremap_params, check_prep_vma, mremap_at
 * (resize in place, or move), mremap_to (MREMAP_FIXED or MREMAP_DONTUNMAP), remap_move (a pure
 * MREMAP_FIXED move of every VMA in the range, 6.17) and move_vma.
 *
 * MREMAP_DONTUNMAP (5.7, e346b3813067; widened in 5.13 by a4609387859f "mm: extend MREMAP_DONTUNMAP to
 * non-anonymous mappings"): a move that leaves the old VMA in place, emptied of its page tables, which
 * now belong to the new VMA. It needs MREMAP_MAYMOVE and old_len == new_len. In 5.7 only private
 * anonymous mappings could use it (anything else: EINVAL); since 5.13 any mapping may, except
 * VM_DONTEXPAND and VM_PFNMAP ones. hmmsim follows today's rule. What the old range reads afterwards
 * follows from its VMA: private anonymous memory faults in fresh zero pages; a file or shared mapping
 * sees the file's pages again. When the whole VMA moved, the old VMA loses its anon_vma links
 * (dontunmap_complete) and takes a fresh anon_vma on its next anonymous fault; VM_LOCKED is cleared on
 * it in every case.
 *
 * A move that changes nothing or fails its checks changes nothing. As in the kernel, a shrink unmaps
 * the tail first, MREMAP_FIXED unmaps the target first, and a multi-VMA move that fails on a later VMA
 * leaves the VMAs before it moved.
 *
 * Deliberate differences: VMAs never merge (so a range split by mprotect stays split for mremap's
 * one-VMA checks); no accounting, mlock or map-count limit; a move notifies MMU_NOTIFY_UNMAP once over
 * the old range, where the kernel notifies it once in move_page_tables and again when it unmaps the
 * emptied source (the second invalidation covers no PTEs).
 */
import { minU64, ulongArg } from "../base/abi.js";
import { EFAULT, EINVAL, ENOMEM, EPERM } from "../base/errno.js";
import { PAGE_SIZE, type Vpn } from "../base/units.js";
import type { Kfn } from "../sched/thread.js";
import { pmdLock, splitHugePmd, splitHugePmdsAround } from "./huge_memory.js";
import type { Kernel } from "./kernel.js";
import {
  type MmStruct,
  VM_DONTEXPAND,
  VM_HUGETLB,
  VM_LOCKED,
  VM_MAYSHARE,
  VM_PFNMAP,
  VM_SHARED,
  Vma,
} from "./mm_types.js";
import { MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE } from "./mman.js";
import {
  doVmiMunmap,
  freePgtables,
  getUnmappedArea,
  isolateRange,
  MMAP_MIN_ADDR,
  PAGE_BYTES,
  pageAlignUlong,
  TASK_BYTES,
  thpGetUnmappedArea,
} from "./mmap.js";
import {
  hasNotifiers,
  MMU_NOTIFY_UNMAP,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  notifierRange,
} from "./mmu_notifier.js";
import { HPAGE_PMD_NR } from "./page.js";
import { PageTables, ptePresent } from "./pgtable.js";
import { anonVmaClone, unlinkAnonVmas } from "./rmap.js";

const U64_LIMIT = 1n << 64n;
const KNOWN_FLAGS = BigInt(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP);

/** struct vma_remap_struct: one remap, its lengths page-aligned, as it threads through mremap. */
interface Remap {
  addr: bigint;
  oldLen: bigint;
  newLen: bigint;
  readonly fixed: boolean;
  readonly mayMove: boolean;
  readonly dontUnmap: boolean;
  newAddr: bigint;
  vma: Vma | null;
}

/**
 * mremap(2): returns the new address or -errno. Argument checks (check_mremap_params), each EINVAL:
 * unknown flags, an unaligned address, a new length of 0 or above TASK_SIZE; with MREMAP_FIXED or
 * MREMAP_DONTUNMAP also a new address that is unaligned or leaves no room for new_len below
 * TASK_SIZE, no MREMAP_MAYMOVE, a DONTUNMAP resize, or a new range overlapping the old one.
 */
export function* sysMremap(
  k: Kernel,
  mm: MmStruct,
  oldAddr: number,
  oldLength: number,
  newLength: number,
  flags: number,
  newAddr: number,
): Kfn<number> {
  const addr = ulongArg(oldAddr);
  const oldLen = ulongArg(oldLength);
  const newLen = ulongArg(newLength);
  const flagBits = ulongArg(flags);
  const target = ulongArg(newAddr);
  if (addr === null || oldLen === null || newLen === null || flagBits === null || target === null)
    return -EINVAL;
  const remap: Remap = {
    addr,
    oldLen: pageAlignUlong(oldLen),
    newLen: pageAlignUlong(newLen),
    fixed: (flagBits & BigInt(MREMAP_FIXED)) !== 0n,
    mayMove: (flagBits & BigInt(MREMAP_MAYMOVE)) !== 0n,
    dontUnmap: (flagBits & BigInt(MREMAP_DONTUNMAP)) !== 0n,
    newAddr: target,
    vma: null,
  };
  const bad = checkMremapParams(remap, flagBits);
  if (bad < 0) return bad;
  yield* mm.mmapLock.downWrite();
  try {
    // A pure MREMAP_FIXED move may span several VMAs (remap_move); anything else is one VMA's business.
    if (remap.fixed && remap.oldLen === remap.newLen) return yield* remapMove(k, mm, remap);
    remap.vma = vmaLookup(mm, remap.addr);
    const prep = checkPrepVma(remap);
    if (prep < 0) return prep;
    return remap.fixed || remap.dontUnmap ? yield* mremapTo(k, mm, remap) : yield* mremapAt(k, mm, remap);
  } finally {
    mm.mmapLock.upWrite();
  }
}

function impliesNewAddr(remap: Remap): boolean {
  return remap.fixed || remap.dontUnmap;
}

/** check_mremap_params. */
function checkMremapParams(remap: Remap, flagBits: bigint): number {
  if ((flagBits & ~KNOWN_FLAGS) !== 0n) return -EINVAL;
  if (remap.addr % PAGE_BYTES !== 0n) return -EINVAL;
  // A zero old_len is allowed (duplicating a shared mapping); a zero new_len is not.
  if (remap.newLen === 0n || remap.newLen > TASK_BYTES) return -EINVAL;
  if (!impliesNewAddr(remap)) return 0;
  if (remap.newAddr > TASK_BYTES - remap.newLen) return -EINVAL;
  if (remap.newAddr % PAGE_BYTES !== 0n) return -EINVAL;
  if (!remap.mayMove) return -EINVAL;
  if (remap.dontUnmap && remap.oldLen !== remap.newLen) return -EINVAL;
  // vrm_overlaps, with the kernel's unsigned arithmetic: the old range's end may wrap.
  const endOld = (remap.addr + remap.oldLen) % U64_LIMIT;
  const endNew = remap.newAddr + remap.newLen;
  if (endOld > remap.newAddr && endNew > remap.addr) return -EINVAL;
  return 0;
}

/** vma_lookup: the VMA containing the address, or null. */
function vmaLookup(mm: MmStruct, addr: bigint): Vma | null {
  return addr < TASK_BYTES ? mm.findVma(Number(addr / PAGE_BYTES)) : null;
}

/** The VMA's end as a byte address. */
function vmaEndBytes(vma: Vma): bigint {
  return BigInt(vma.end) * PAGE_BYTES;
}

/**
 * check_prep_vma: EFAULT without a VMA at the address; for a remap that maps new space (it grows or
 * moves), EINVAL to duplicate a private mapping (old_len 0) or to DONTUNMAP a VM_DONTEXPAND/VM_PFNMAP
 * VMA, EFAULT when the old range (new range, for a shrink) runs past the VMA's end, and EFAULT to grow
 * a VM_DONTEXPAND/VM_PFNMAP VMA.
 */
function checkPrepVma(remap: Remap): number {
  const vma = remap.vma;
  if (vma === null) return -EFAULT;
  // Deliberate difference (hugetlb.ts): a hugetlb VMA is never remapped; the kernel moves or shrinks
  // one whose addresses and lengths are 2 MiB-aligned.
  if ((vma.flags & VM_HUGETLB) !== 0) return -EINVAL;
  if (!impliesNewAddr(remap)) remap.newAddr = remap.addr;
  const expand = remap.newLen > remap.oldLen;
  if (!expand && !impliesNewAddr(remap)) return 0;
  if (remap.oldLen === 0n && (vma.flags & (VM_SHARED | VM_MAYSHARE)) === 0) return -EINVAL;
  if (remap.dontUnmap && (vma.flags & (VM_DONTEXPAND | VM_PFNMAP)) !== 0) return -EINVAL;
  // A shrink may cross VMA boundaries in the part it unmaps.
  const oldLen = minU64(remap.oldLen, remap.newLen);
  if (oldLen > vmaEndBytes(vma) - remap.addr) return -EFAULT;
  if (remap.newLen === oldLen) return 0;
  if ((vma.flags & (VM_DONTEXPAND | VM_PFNMAP)) !== 0) return -EFAULT;
  return 0;
}

/** mremap_at: resize in place, or move when growing in place is impossible (MREMAP_MAYMOVE). */
function* mremapAt(k: Kernel, mm: MmStruct, remap: Remap): Kfn<number> {
  const vma = remap.vma!;
  if (remap.newLen === remap.oldLen) return Number(remap.addr);
  if (remap.newLen < remap.oldLen) {
    const unmapped = yield* doVmiMunmap(k, mm, remap.addr + remap.newLen, remap.oldLen - remap.newLen);
    return unmapped < 0 ? unmapped : Number(remap.addr);
  }
  // expand_vma: in place when [addr, addr + old_len) ends the VMA and the space after it is free.
  const delta = remap.newLen - remap.oldLen;
  const vmaEnd = vmaEndBytes(vma);
  if (vmaEnd - remap.addr === remap.oldLen && vmaEnd + delta <= TASK_BYTES) {
    const newEnd = Number((vmaEnd + delta) / PAGE_BYTES);
    if (mm.vmasIn(vma.end, newEnd).length === 0) {
      vma.end = newEnd as Vpn;
      return Number(remap.addr);
    }
  }
  if (!remap.mayMove) return -ENOMEM;
  const placed = setNewAddr(mm, remap);
  if (placed < 0) return placed;
  return yield* moveVma(k, mm, remap);
}

/** mremap_to: MREMAP_FIXED (unmapping the target first) or MREMAP_DONTUNMAP. */
function* mremapTo(k: Kernel, mm: MmStruct, remap: Remap): Kfn<number> {
  if (remap.fixed) {
    const unmapped = yield* doVmiMunmap(k, mm, remap.newAddr, remap.newLen);
    if (unmapped < 0) return unmapped;
    remap.vma = vmaLookup(mm, remap.addr);
    if (remap.vma === null) return -EFAULT;
  }
  if (remap.newLen < remap.oldLen) {
    const unmapped = yield* doVmiMunmap(k, mm, remap.addr + remap.newLen, remap.oldLen - remap.newLen);
    if (unmapped < 0) return unmapped;
    remap.vma = vmaLookup(mm, remap.addr);
    if (remap.vma === null) return -EFAULT;
    remap.oldLen = remap.newLen;
  }
  const placed = setNewAddr(mm, remap);
  if (placed < 0) return placed;
  return yield* moveVma(k, mm, remap);
}

/**
 * vrm_set_new_addr: get_unmapped_area for the new range. MREMAP_FIXED takes the address given (as
 * MAP_FIXED, so mmap_min_addr applies: EPERM below it); MREMAP_DONTUNMAP alone takes it as a hint;
 * otherwise any free area, 2 MiB-aligned for private anonymous memory moved whole in 2 MiB multiples
 * (__get_unmapped_area's THP alignment: no file, no hint). ENOMEM when there is none.
 */
function setNewAddr(mm: MmStruct, remap: Remap): number {
  const pages = Number(remap.newLen / PAGE_BYTES);
  if (remap.fixed) {
    if (remap.newAddr < BigInt(MMAP_MIN_ADDR)) return -EPERM;
    return 0;
  }
  const hint = remap.dontUnmap ? Number(remap.newAddr / PAGE_BYTES) : 0;
  const vma = remap.vma;
  const thpAligned =
    vma !== null && vma.isAnonymous && (vma.flags & VM_MAYSHARE) === 0 && hint === 0 && pages % 512 === 0;
  const vpn = thpAligned ? thpGetUnmappedArea(mm, pages) : getUnmappedArea(mm, pages, hint);
  if (vpn < 0) return -ENOMEM;
  remap.newAddr = BigInt(vpn) * PAGE_BYTES;
  return 0;
}

/**
 * move_vma: copy_vma makes the new VMA, move_page_tables moves [addr, addr + old_len) into it, and the
 * old range is unmapped, or with MREMAP_DONTUNMAP left in place, empty (dontunmap_complete). With
 * old_len 0 (a shared mapping duplicated) nothing moves and nothing is unmapped.
 */
function* moveVma(k: Kernel, mm: MmStruct, remap: Remap): Kfn<number> {
  const vma = remap.vma!;
  const oldStart = Number(remap.addr / PAGE_BYTES);
  const oldPages = Number(remap.oldLen / PAGE_BYTES);
  const newStart = Number(remap.newAddr / PAGE_BYTES);
  const newPages = Number(remap.newLen / PAGE_BYTES);
  const moved = new Vma(
    mm,
    newStart as Vpn,
    (newStart + newPages) as Vpn,
    vma.flags,
    vma.linearIndex(oldStart),
    vma.file,
    null,
    vma.driverFile,
  );
  anonVmaClone(moved, vma);
  if (moved.file !== null) moved.file.mmaps.add(moved);
  mm.insertVma(moved);
  if (oldPages > 0) {
    // vma_adjust_trans_huge where the old range's ends cut a huge PMD.
    yield* splitHugePmdsAround(k, mm, oldStart, oldStart + oldPages);
    yield* movePageTables(k, vma, oldStart, newStart, oldPages);
  }
  if (remap.dontUnmap) {
    dontUnmapComplete(vma, oldStart, oldStart + oldPages);
  } else if (oldPages > 0) {
    // unmap_source_vma: the page tables have moved, so this only removes the emptied VMA range.
    for (const source of isolateRange(mm, oldStart, oldStart + oldPages)) {
      mm.removeVma(source);
      unlinkAnonVmas(source);
      freePgtables(k, mm, source.start, source.end);
    }
  }
  return newStart * PAGE_SIZE;
}

/**
 * dontunmap_complete: the old VMA stays, with VM_LOCKED cleared; when the whole VMA moved, its anon_vma
 * links go (its pages now live in the new VMA), so its next anonymous fault makes a fresh anon_vma.
 */
function dontUnmapComplete(vma: Vma, start: number, end: number): void {
  vma.flags &= ~VM_LOCKED;
  if (start !== vma.start || end !== vma.end) return;
  // unlink_anon_vmas only: the VMA stays in its file's i_mmap.
  for (const anonVma of vma.anonVmaChain) anonVma.unlink(vma);
  vma.anonVmaChain = [];
  vma.anonVma = null;
}

/**
 * remap_move: a MREMAP_FIXED move with old_len == new_len moves every VMA in [addr, addr + old_len),
 * keeping the gaps between them; EFAULT when the range starts in a gap or holds no VMA. Each VMA goes
 * through check_prep_vma and mremap_to in turn, so a failure leaves the VMAs before it moved.
 */
function* remapMove(k: Kernel, mm: MmStruct, remap: Remap): Kfn<number> {
  const start = remap.addr;
  const end = start + remap.oldLen;
  // A range that wraps past 2^64 or starts above TASK_SIZE holds no VMA.
  if (end >= U64_LIMIT || start >= TASK_BYTES) return -EFAULT;
  const startVpn = Number(start / PAGE_BYTES);
  const endVpn = Number(minU64(end, TASK_BYTES) / PAGE_BYTES);
  // The VMAs to move, found before any moves: a move never lands in the old range (no overlap).
  const vmas = mm.vmasIn(startVpn, endVpn);
  let result = -EFAULT;
  let target = remap.newAddr;
  let lastEnd = 0;
  for (const [i, vma] of vmas.entries()) {
    if (i === 0 && startVpn < vma.start) return -EFAULT;
    const offset = i === 0 ? 0 : vma.start - lastEnd;
    lastEnd = vma.end;
    const pieceStart = Math.max(vma.start, startVpn);
    const piecePages = Math.min(endVpn, vma.end) - pieceStart;
    const piece: Remap = {
      ...remap,
      addr: BigInt(pieceStart) * PAGE_BYTES,
      oldLen: BigInt(piecePages) * PAGE_BYTES,
      newLen: BigInt(piecePages) * PAGE_BYTES,
      newAddr: target + BigInt(offset) * PAGE_BYTES,
      vma,
    };
    const prep = checkPrepVma(piece);
    if (prep < 0) return prep;
    const moved = yield* mremapTo(k, mm, piece);
    if (moved < 0) return moved;
    if (i === 0) result = moved;
    target = BigInt(moved) + piece.newLen;
  }
  return result;
}

/**
 * move_huge_pmd: a huge PMD at `from` (a PMD boundary) moves whole when `to` is one too, the whole 2 MiB
 * is in the move and nothing is mapped at `to` yet. False when it cannot (the caller splits it).
 */
function* moveHugePmd(k: Kernel, vma: Vma, from: number, to: number, pagesLeft: number): Kfn<boolean> {
  if (from % HPAGE_PMD_NR !== 0 || to % HPAGE_PMD_NR !== 0 || pagesLeft < HPAGE_PMD_NR) return false;
  const mm = vma.mm;
  const oldKey = k.pt.lookupPmd(mm.root, from);
  const newKey = k.pt.ensurePmd(mm.root, to);
  if (!k.pt.pmdNone(newKey)) return false;
  yield* pmdLock(k, oldKey, "move_huge_pmd: pmd_lock (old)");
  if (newKey !== oldKey) yield* pmdLock(k, newKey, "move_huge_pmd: pmd_lock (new)");
  const leaf = k.pt.pmdLeaf(oldKey);
  const moved = leaf !== 0 && k.pt.pmdNone(newKey);
  if (moved) {
    k.pt.setPmdLeaf(oldKey, 0);
    k.pt.setPmdLeaf(newKey, leaf);
    k.tlb.flushRange(mm.id, from, from + HPAGE_PMD_NR);
  }
  if (newKey !== oldKey) k.pmdLock.unlock(newKey);
  k.pmdLock.unlock(oldKey);
  return moved;
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
    let from = k.pt.lookupTable(mm.root, oldStart + i);
    if (from < 0 && k.pt.hugePmds > 0 && k.pt.readPmdLeaf(mm.root, oldStart + i) !== 0) {
      if (yield* moveHugePmd(k, vma, oldStart + i, newStart + i, pages - i)) {
        i += HPAGE_PMD_NR - 1;
        continue;
      }
      yield* splitHugePmd(k, vma, oldStart + i);
      from = k.pt.lookupTable(mm.root, oldStart + i);
    }
    if (from < 0) continue;
    const fromSlot = PageTables.slot(from, oldStart + i);
    const pte = k.pt.entries[fromSlot]!;
    if (pte === 0) continue;
    const to = k.pt.ensureTable(mm.root, newStart + i);
    if (k.sched.contended || !k.ptl.tryLock(from))
      yield* k.ptl.lock(from, "move_ptes: pte_offset_map_lock (old)");
    if (to !== from && (k.sched.contended || !k.ptl.tryLock(to)))
      yield* k.ptl.lock(to, "move_ptes: pte_offset_map_lock (new)");
    k.pt.entries[PageTables.slot(to, newStart + i)] = k.pt.entries[fromSlot]!;
    k.pt.entries[fromSlot] = 0;
    // move_ptes flushes the old range before dropping the locks (eb66ae030829, 4.19): no CPU may write
    // through the old address once the page is reachable at the new one.
    if (ptePresent(pte)) k.tlb.flushPage(mm.id, oldStart + i);
    if (to !== from) k.ptl.unlock(to);
    k.ptl.unlock(from);
  }
  if (range !== null) mmuNotifierInvalidateRangeEnd(k, range);
}
