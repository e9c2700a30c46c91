/**
 * VMAs, mmap and munmap (mm/mmap.c, mm/vma.c, mm/util.c, arch/x86/kernel/sys_x86_64.c). mprotect,
 * mremap and madvise live in mprotect.ts, mremap.ts and madvise.ts, as in the kernel. Each system call
 * returns what the kernel's returns: an address or 0 on success, -errno on failure. Arguments reach it
 * through the C ABI of src/base/abi.ts (a value no register can hold is EINVAL); a call that fails an
 * argument check changes nothing.
 *
 * Deliberate differences: adjacent VMAs are never merged; no rlimits, map-count limit, overcommit
 * accounting (MAP_NORESERVE is accepted and changes nothing) or mlock (a process has RLIMIT_MEMLOCK 0
 * and no CAP_IPC_LOCK, so MAP_LOCKED gives EPERM); MAP_HUGETLB only for private anonymous memory of
 * the 2 MiB hstate (hugetlb.ts says what else it leaves out); no stacks that grow (MAP_GROWSDOWN on private anonymous
 * memory gives EINVAL); no droppable memory (MAP_DROPPABLE gives EOPNOTSUPP, as a kernel without
 * VM_DROPPABLE answers); MAP_POPULATE does not prefault (pages fault in on first touch). mmap places
 * mappings at 4 GiB or above unless asked otherwise (MAP_FIXED, MAP_32BIT).
 */
import { ulongArg } from "../base/abi.js";
import { assert } from "../base/assert.js";
import { EBADF, EEXIST, EINVAL, ENODEV, ENOMEM, EOPNOTSUPP, EOVERFLOW, EPERM } from "../base/errno.js";
import { PAGE_SIZE, PTRS_PER_TABLE, TASK_SIZE, type Vpn } from "../base/units.js";
import type { Kfn } from "../sched/thread.js";
import { splitHugePmdsAround } from "./huge_memory.js";
import { hugetlbMaySplit, hugetlbMmapCheck } from "./hugetlb.js";
import type { Kernel } from "./kernel.js";
import { zapPageRange } from "./memory.js";
import {
  AddressSpace,
  type MmStruct,
  VM_DONTEXPAND,
  VM_EXEC,
  VM_GROWSDOWN,
  VM_HUGETLB,
  VM_MAYEXEC,
  VM_MAYREAD,
  VM_MAYSHARE,
  VM_MAYWRITE,
  VM_NOHUGEPAGE,
  VM_READ,
  VM_SHARED,
  VM_WRITE,
  Vma,
} from "./mm_types.js";
import {
  LEGACY_MAP_MASK,
  MAP_32BIT,
  MAP_ANONYMOUS,
  MAP_DROPPABLE,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_GROWSDOWN,
  MAP_HUGE_SHIFT,
  MAP_HUGETLB,
  MAP_LOCKED,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_SHARED_VALIDATE,
  MAP_STACK,
  MAP_TYPE,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
} from "./mman.js";
import { MMU_NOTIFY_UNMAP } from "./mmu_notifier.js";
import { HPAGE_PMD_NR } from "./page.js";
import { anonVmaClone, unlinkAnonVmas } from "./rmap.js";

export * from "./mman.js";

/** mmap_min_addr: no user mapping below it (the common distribution setting, 64 KiB). */
export const MMAP_MIN_ADDR = 65536;
/** Where top-down allocation starts (mmap_base): below a stack gap at the top of the address space. */
const MMAP_BASE_VPN = Math.floor((TASK_SIZE - 2 ** 30) / PAGE_SIZE);
/** The lowest vpn mmap hands out without MAP_FIXED or MAP_32BIT: hmmsim keeps the first 4 GiB clear. */
const MMAP_FLOOR_VPN = 2 ** 20;
/** MAP_32BIT's window on x86-64 (find_start_end): [1 GiB, 2 GiB). */
const MAP_32BIT_START_VPN = 2 ** 30 / PAGE_SIZE;
const MAP_32BIT_END_VPN = 2 ** 31 / PAGE_SIZE;
/** Virtual pages below TASK_SIZE: the user address space in pages. */
export const TASK_VPNS = TASK_SIZE / PAGE_SIZE;

/** Page-size and address-space constants as BigInts, for the argument checks of the system calls. */
export const PAGE_BYTES = BigInt(PAGE_SIZE);
/** TASK_SIZE as a BigInt. */
export const TASK_BYTES = BigInt(TASK_SIZE);
const U64_LIMIT = 1n << 64n;
/** MAX_LFS_FILESIZE on 64-bit: the largest file a mapping may reach into (file_mmap_size_max). */
const MAX_LFS_FILESIZE = (1n << 63n) - 1n;

/** PAGE_ALIGN of an unsigned long: rounds up to a page, wrapping to 0 past 2^64 as C does. */
export function pageAlignUlong(bytes: bigint): bigint {
  return ((bytes + PAGE_BYTES - 1n) % U64_LIMIT) & ~(PAGE_BYTES - 1n);
}

/** calc_vm_prot_bits: the VM_ access flags of a protection (only READ, WRITE and EXEC count). */
export function protToVmFlags(prot: number): number {
  return (
    (prot & PROT_READ ? VM_READ : 0) | (prot & PROT_WRITE ? VM_WRITE : 0) | (prot & PROT_EXEC ? VM_EXEC : 0)
  );
}

/**
 * get_unmapped_area, top-down (generic_get_unmapped_area_topdown): the hint when it is free, else the
 * highest free gap of `pages` below mmap_base, or -1.
 */
export function getUnmappedArea(mm: MmStruct, pages: number, hintVpn: number): number {
  if (
    hintVpn >= MMAP_FLOOR_VPN &&
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
    const floor = vma === undefined ? MMAP_FLOOR_VPN : Math.max(vma.end, MMAP_FLOOR_VPN);
    if (top - floor >= pages) return top - pages;
    if (vma !== undefined) top = Math.min(top, vma.start);
    if (top <= MMAP_FLOOR_VPN) break;
  }
  return -1;
}

/**
 * __get_unmapped_area's THP alignment of a private anonymous mapping with no hint whose length is a
 * multiple of 2 MiB (thp_get_unmapped_area_vmflags, __thp_get_unmapped_area with offset 0): a gap 2 MiB
 * longer is found and the mapping placed at its 2 MiB-aligned address (at its top when the gap itself
 * starts aligned, as the top-down search wants), so the mapping can take THPs; without room for the
 * padding, the plain search.
 */
export function thpGetUnmappedArea(mm: MmStruct, pages: number): number {
  const padded = getUnmappedArea(mm, pages + HPAGE_PMD_NR, 0);
  if (padded < 0) return getUnmappedArea(mm, pages, 0);
  const offSub = (HPAGE_PMD_NR - (padded % HPAGE_PMD_NR)) % HPAGE_PMD_NR;
  return offSub === 0 ? padded + HPAGE_PMD_NR : padded + offSub;
}

/**
 * hugetlb_get_unmapped_area for the 2 MiB hstate: the hint rounded up to 2 MiB when that is free, else
 * the highest 2 MiB-aligned place in the top-down search's gap (align_mask); -1 when none.
 */
function hugetlbGetUnmappedArea(mm: MmStruct, pages: number, hintVpn: number): number {
  if (hintVpn !== 0) {
    const aligned = Math.ceil(hintVpn / HPAGE_PMD_NR) * HPAGE_PMD_NR;
    if (aligned + pages <= TASK_VPNS && mm.vmasIn(aligned, aligned + pages).length === 0) return aligned;
  }
  const padded = getUnmappedArea(mm, pages + HPAGE_PMD_NR - 1, 0);
  if (padded < 0) return -1;
  const gapEnd = padded + pages + HPAGE_PMD_NR - 1;
  return Math.floor((gapEnd - pages) / HPAGE_PMD_NR) * HPAGE_PMD_NR;
}

/**
 * arch_get_unmapped_area with MAP_32BIT (arch/x86/kernel/sys_x86_64.c): the hint when it is free and
 * ends below 2 GiB, else the lowest free gap in [1 GiB, 2 GiB), bottom-up; -1 when none.
 */
function getUnmappedArea32(mm: MmStruct, pages: number, hintVpn: number): number {
  if (hintVpn > 0 && hintVpn + pages <= MAP_32BIT_END_VPN && mm.vmasIn(hintVpn, hintVpn + pages).length === 0)
    return hintVpn;
  let at = MAP_32BIT_START_VPN;
  for (const vma of mm.vmasIn(MAP_32BIT_START_VPN, MAP_32BIT_END_VPN)) {
    if (vma.start - at >= pages) break;
    at = Math.max(at, vma.end);
  }
  return at + pages <= MAP_32BIT_END_VPN ? at : -1;
}

/** __split_vma: `vma` keeps [start, at); a new VMA takes [at, end) and is returned. */
export function splitVma(vma: Vma, at: number): Vma {
  assert(at > vma.start && at < vma.end, "split point inside the VMA", () => `${at} in ${vma}`);
  const tail = new Vma(
    vma.mm,
    at as Vpn,
    vma.end,
    vma.flags,
    vma.linearIndex(at),
    vma.file,
    null,
    vma.driverFile,
  );
  anonVmaClone(tail, vma);
  if (vma.file !== null) vma.file.mmaps.add(tail);
  vma.end = at as Vpn;
  vma.mm.insertVma(tail);
  return tail;
}

/** Splits `vma` so that a VMA covers exactly its part inside [start, end), and returns that VMA. */
export function isolateVma(vma: Vma, start: number, end: number): Vma {
  let inside = vma;
  if (inside.start < start) inside = splitVma(inside, start);
  if (inside.end > end) splitVma(inside, end);
  return inside;
}

/** Splits VMAs so that none straddles start or end; returns the VMAs now inside [start, end). */
export function isolateRange(mm: MmStruct, start: number, end: number): Vma[] {
  for (const vma of mm.vmasIn(start, end)) {
    if (vma.start < start) splitVma(vma, start);
  }
  for (const vma of mm.vmasIn(start, end)) {
    if (vma.end > end) splitVma(vma, end);
  }
  return mm.vmasIn(start, end);
}

/** do_vmi_munmap with mmap_lock held for write, on a range the caller has checked. */
export function* doMunmap(k: Kernel, mm: MmStruct, start: number, end: number): Kfn<void> {
  yield* splitHugePmdsAround(k, mm, start, end);
  for (const vma of isolateRange(mm, start, end)) {
    yield* zapPageRange(k, vma, vma.start, vma.end, MMU_NOTIFY_UNMAP);
    mm.removeVma(vma);
    unlinkAnonVmas(vma);
    freePgtables(k, mm, vma.start, vma.end);
  }
}

/**
 * free_pgtables at PTE-table granularity, for a VMA gone from the mm and unlinked from its anon_vmas
 * (so no rmap walk reaches it): frees the PTE table of each 2 MiB span of [start, end) that no other
 * VMA covers any part of (the kernel's floor and ceiling: a table shared with a neighbouring VMA stays).
 * A fault there then finds pmd_none, which a THP needs. Bounded by the VMA's size in 2 MiB spans.
 */
export function freePgtables(k: Kernel, mm: MmStruct, start: number, end: number): void {
  for (let span = start - (start % PTRS_PER_TABLE); span < end; span += PTRS_PER_TABLE) {
    if (mm.vmasIn(span, span + PTRS_PER_TABLE).length === 0) k.pt.freePteTableAt(mm.root, span);
  }
}

/** A driver's file that mmap(2) may map: a struct file whose f_op has ->mmap (see Vma.driverFile). */
export interface DriverFile {
  /** The file's name in reports, and the VMA's driverFile. */
  readonly name: string;
  /**
   * f_op->mmap, or null where the driver has none (mmap fails with ENODEV): called with mmap_lock
   * held for write once the VMA is in place; returns 0 or -errno, after which the range is unmapped
   * again, whatever the driver put in it.
   */
  readonly mmap: ((k: Kernel, vma: Vma) => Kfn<number>) | null;
}

/**
 * The arguments of mmap(2) after the C ABI: address, length, prot, flags, the file and the byte offset in it.
 */
export interface MmapRequest {
  addr: number;
  length: number;
  prot: number;
  flags: number;
  /** The file for a file mapping (ignored with MAP_ANONYMOUS): tmpfs's page cache or a driver's file. */
  file: AddressSpace | DriverFile | null;
  /** The byte offset in the file. */
  offset: number;
}

/** mmap's arguments once checked: register values, the flags split into their low 32 bits and the rest. */
interface MmapArgs {
  addr: bigint;
  len: bigint;
  prot: number;
  /** The low 32 bits of the flags, where every MAP_ flag lives. */
  flags: number;
  /** Whether any flag bit above 31 is set (unknown to every kernel). */
  highFlags: boolean;
  pgoff: bigint;
  fixed: boolean;
  /** MAP_HUGETLB: a private mapping of the 2 MiB hstate (len is already aligned to 2 MiB). */
  hugetlb: boolean;
}

/** MAP_HUGE_MASK: the 6 bits above MAP_HUGE_SHIFT that hold log2 of the huge page size. */
const MAP_HUGE_MASK = 0x3f;
const HUGE_BYTES = BigInt(HPAGE_PMD_NR * PAGE_SIZE);

const MMAP_MIN_BYTES = BigInt(MMAP_MIN_ADDR);
const LOW_32 = 0xffff_ffffn;

/**
 * sys_mmap (x86-64), ksys_mmap_pgoff, vm_mmap_pgoff and the argument checks of do_mmap and
 * __get_unmapped_area that need no VMA, in the kernel's order. Returns the checked arguments or -errno.
 */
function mmapArgs(req: MmapRequest): MmapArgs | number {
  const addr = ulongArg(req.addr);
  const len = ulongArg(req.length);
  const prot = ulongArg(req.prot);
  const flagBits = ulongArg(req.flags);
  const offset = ulongArg(req.offset);
  if (addr === null || len === null || prot === null || flagBits === null || offset === null) return -EINVAL;
  // sys_mmap: the byte offset must be page aligned, whatever else is wrong.
  if (offset % PAGE_BYTES !== 0n) return -EINVAL;
  const pgoff = offset / PAGE_BYTES;
  let flags = Number(flagBits & LOW_32);
  // ksys_mmap_pgoff: a file mapping needs a file (fget); MAP_HUGETLB of a file needs a hugetlbfs one
  // (hmmsim has none); anonymous MAP_HUGETLB needs an hstate of the size asked for, and its length is
  // rounded up to that size (hugetlb_file_setup). See hugetlb.ts for what hmmsim leaves out.
  if ((flags & MAP_ANONYMOUS) === 0 && req.file === null) return -EBADF;
  const hugetlb = (flags & MAP_HUGETLB) !== 0;
  let length = len;
  if (hugetlb) {
    if ((flags & MAP_ANONYMOUS) === 0) return -EINVAL;
    const sizeLog = (flags >>> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
    if (sizeLog !== 0 && sizeLog !== 21) return -EINVAL;
    // Deliberate difference: shared hugetlb mappings are not modelled.
    if ((flags & MAP_TYPE) !== MAP_PRIVATE) return -EINVAL;
    length = ((len + HUGE_BYTES - 1n) % U64_LIMIT) & ~(HUGE_BYTES - 1n);
  }
  // do_mmap.
  if (length === 0n) return -EINVAL;
  if ((flags & MAP_FIXED_NOREPLACE) !== 0) flags |= MAP_FIXED;
  const fixed = (flags & MAP_FIXED) !== 0;
  const aligned = pageAlignUlong(length);
  if (aligned === 0n) return -ENOMEM;
  if (pgoff + aligned / PAGE_BYTES >= U64_LIMIT) return -EOVERFLOW;
  // __get_unmapped_area and generic_get_unmapped_area: lengths no address space can hold.
  if (aligned > TASK_BYTES - MMAP_MIN_BYTES) return -ENOMEM;
  if (fixed) {
    // hugetlb_get_unmapped_area, which __get_unmapped_area calls before its own checks: a fixed huge
    // mapping must be 2 MiB-aligned.
    if (hugetlb && addr % HUGE_BYTES !== 0n) return -EINVAL;
    if (addr > TASK_BYTES - aligned) return -ENOMEM;
    if (addr % PAGE_BYTES !== 0n) return -EINVAL;
    // security_mmap_addr (cap_mmap_addr): below mmap_min_addr needs CAP_SYS_RAWIO.
    if (addr < MMAP_MIN_BYTES) return -EPERM;
  }
  // Only PROT_READ, PROT_WRITE and PROT_EXEC mean anything to mmap (calc_vm_prot_bits); it checks no
  // other bit.
  return {
    addr,
    len: aligned,
    prot: Number(prot & 7n),
    flags,
    highFlags: flagBits > LOW_32,
    pgoff,
    fixed,
    hugetlb,
  };
}

/**
 * do_mmap's flag checks for the mapping's type (the switch on MAP_TYPE), made once the address is
 * known, as the kernel makes them: returns the VM_ flags and pgoff, or -errno.
 */
function mappingFlags(
  args: MmapArgs,
  anonymous: boolean,
  vpn: number,
): { vmFlags: number; pgoff: number } | number {
  const flags = args.flags;
  // can_do_mlock: hmmsim's processes have RLIMIT_MEMLOCK 0 and no CAP_IPC_LOCK.
  if ((flags & MAP_LOCKED) !== 0) return -EPERM;
  // calc_vm_flag_bits: MAP_GROWSDOWN is a stack, MAP_STACK asks for no huge pages (6.7).
  let vmFlags =
    protToVmFlags(args.prot) |
    VM_MAYREAD |
    VM_MAYWRITE |
    VM_MAYEXEC |
    ((flags & MAP_GROWSDOWN) !== 0 ? VM_GROWSDOWN : 0) |
    ((flags & MAP_STACK) !== 0 ? VM_NOHUGEPAGE : 0);
  const type = flags & MAP_TYPE;
  if (!anonymous) {
    // file_mmap_ok: the mapping must end within the largest file size.
    if (args.pgoff > (MAX_LFS_FILESIZE - args.len) / PAGE_BYTES) return -EOVERFLOW;
    if (type !== MAP_SHARED && type !== MAP_SHARED_VALIDATE && type !== MAP_PRIVATE) return -EINVAL;
    // MAP_SHARED ignores the flags it does not know; MAP_SHARED_VALIDATE refuses them.
    if (type === MAP_SHARED_VALIDATE && (args.highFlags || (flags & ~LEGACY_MAP_MASK) !== 0))
      return -EOPNOTSUPP;
    if (type !== MAP_PRIVATE) vmFlags |= VM_SHARED | VM_MAYSHARE;
    if ((vmFlags & VM_GROWSDOWN) !== 0) return -EINVAL;
    return { vmFlags, pgoff: Number(args.pgoff) };
  }
  if (type === MAP_SHARED) {
    if ((vmFlags & VM_GROWSDOWN) !== 0) return -EINVAL;
    return { vmFlags: vmFlags | VM_SHARED | VM_MAYSHARE, pgoff: 0 };
  }
  // VM_DROPPABLE is VM_NONE in this model: do_mmap's answer on a kernel without it.
  if (type === MAP_DROPPABLE) return -EOPNOTSUPP;
  if (type !== MAP_PRIVATE) return -EINVAL;
  // A stack VMA grows down on faults below it; hmmsim has no such VMAs (a deliberate difference).
  if ((vmFlags & VM_GROWSDOWN) !== 0) return -EINVAL;
  // pgoff of a private anonymous mapping is its address, for the anon_vma's linear index.
  return { vmFlags, pgoff: vpn };
}

/**
 * mmap(2): sys_mmap, ksys_mmap_pgoff, vm_mmap_pgoff, do_mmap, __get_unmapped_area and mmap_region.
 * Returns the mapped address or -errno. A MAP_FIXED mapping replaces what it overlaps, as mmap_region
 * does, only once every check has passed.
 */
export function* sysMmap(k: Kernel, mm: MmStruct, req: MmapRequest): Kfn<number> {
  const args = mmapArgs(req);
  if (typeof args === "number") return args;
  const anonymous = (args.flags & MAP_ANONYMOUS) !== 0;
  const pages = Number(args.len / PAGE_BYTES);
  yield* mm.mmapLock.downWrite();
  try {
    let vpn: number;
    if (args.fixed) {
      vpn = Number(args.addr / PAGE_BYTES);
    } else {
      // round_hint_to_min: the hint is rounded down to a page, and raised to mmap_min_addr.
      let hint = Number(args.addr < TASK_BYTES ? args.addr / PAGE_BYTES : 0n);
      if (hint !== 0 && hint * PAGE_SIZE < MMAP_MIN_ADDR) hint = MMAP_MIN_ADDR / PAGE_SIZE;
      vpn = args.hugetlb
        ? hugetlbGetUnmappedArea(mm, pages, hint)
        : (args.flags & MAP_32BIT) !== 0
          ? getUnmappedArea32(mm, pages, hint)
          : anonymous && (args.flags & MAP_TYPE) === MAP_PRIVATE && hint === 0 && pages % HPAGE_PMD_NR === 0
            ? thpGetUnmappedArea(mm, pages)
            : getUnmappedArea(mm, pages, hint);
      if (vpn < 0) return -ENOMEM;
    }
    if ((args.flags & MAP_FIXED_NOREPLACE) !== 0 && mm.vmasIn(vpn, vpn + pages).length > 0) return -EEXIST;
    const mapping = mappingFlags(args, anonymous, vpn);
    if (typeof mapping === "number") return mapping;
    const { vmFlags } = mapping;
    // A fixed mapping that would cut a huge page of a hugetlb VMA fails (hugetlb_vm_op_split).
    if (args.fixed) {
      const split = hugetlbMaySplit(mm, vpn, vpn + pages);
      if (split !== 0) return split;
    }
    if (!anonymous && req.file !== null && !(req.file instanceof AddressSpace))
      return yield* mmapDriverFile(k, mm, req.file, args, vpn, pages, vmFlags, mapping.pgoff);
    let file = anonymous ? null : (req.file as AddressSpace | null);
    // hugetlbfs_file_mmap: the pool must hold the mapping's pages (hugetlb_reserve_pages), checked before
    // the old mappings go, as __mmap_region restores them when ->mmap fails.
    if (args.hugetlb) {
      const ret = hugetlbMmapCheck(k, vpn, pages);
      if (ret !== 0) return ret;
    }

    // mmap_region: a fixed mapping replaces what it overlaps.
    if (args.fixed && mm.vmasIn(vpn, vpn + pages).length > 0) yield* doMunmap(k, mm, vpn, vpn + pages);
    if (anonymous && (vmFlags & VM_SHARED) !== 0) {
      // shmem_zero_setup: shared anonymous memory is an unnamed shmem file.
      file = k.newAddressSpace(`anon-shmem-${mm.id}-${vpn.toString(16)}`, pages * PAGE_SIZE, true);
    }
    const flagsOfVma = args.hugetlb ? vmFlags | VM_HUGETLB | VM_DONTEXPAND : vmFlags;
    const vma = new Vma(mm, vpn as Vpn, (vpn + pages) as Vpn, flagsOfVma, mapping.pgoff, file, null);
    mm.insertVma(vma);
    if (file !== null) file.mmaps.add(vma);
    return vpn * PAGE_SIZE;
  } finally {
    mm.mmapLock.upWrite();
  }
}

/**
 * mmap_region for a driver's file (call_mmap): ENODEV where the driver has no ->mmap (do_mmap's
 * check); otherwise a VMA with the driver's name and vma_init's dummy vm_ops, filled by ->mmap. When
 * ->mmap fails, the range is unmapped again (unmap_region) and its error returned.
 */
function* mmapDriverFile(
  k: Kernel,
  mm: MmStruct,
  file: DriverFile,
  args: MmapArgs,
  vpn: number,
  pages: number,
  vmFlags: number,
  pgoff: number,
): Kfn<number> {
  if (file.mmap === null) return -ENODEV;
  if (args.fixed && mm.vmasIn(vpn, vpn + pages).length > 0) yield* doMunmap(k, mm, vpn, vpn + pages);
  const vma = new Vma(mm, vpn as Vpn, (vpn + pages) as Vpn, vmFlags, pgoff, null, null, file.name);
  mm.insertVma(vma);
  const ret = yield* file.mmap(k, vma);
  assert(ret <= 0, "->mmap returns 0 or -errno", () => `${ret}`);
  if (ret < 0) {
    yield* doMunmap(k, mm, vpn, vpn + pages);
    return ret;
  }
  return vpn * PAGE_SIZE;
}

/**
 * do_vmi_munmap with mmap_lock held for write: EINVAL for an unaligned start, a start above
 * TASK_SIZE, a length that runs past it, or a length of 0; unmapping a hole succeeds.
 */
export function* doVmiMunmap(k: Kernel, mm: MmStruct, start: bigint, len: bigint): Kfn<number> {
  if (start % PAGE_BYTES !== 0n || start > TASK_BYTES || len > TASK_BYTES - start) return -EINVAL;
  const end = start + pageAlignUlong(len);
  if (end === start) return -EINVAL;
  // vms_gather_munmap_vmas: a split inside a huge page of a hugetlb VMA fails (hugetlb_vm_op_split).
  const split = hugetlbMaySplit(mm, Number(start / PAGE_BYTES), Number(end / PAGE_BYTES));
  if (split !== 0) return split;
  yield* doMunmap(k, mm, Number(start / PAGE_BYTES), Number(end / PAGE_BYTES));
  return 0;
}

/** munmap(2): __vm_munmap, then do_vmi_munmap's checks and unmapping. */
export function* sysMunmap(k: Kernel, mm: MmStruct, addr: number, length: number): Kfn<number> {
  const start = ulongArg(addr);
  const len = ulongArg(length);
  if (start === null || len === null) return -EINVAL;
  yield* mm.mmapLock.downWrite();
  try {
    return yield* doVmiMunmap(k, mm, start, len);
  } finally {
    mm.mmapLock.upWrite();
  }
}
