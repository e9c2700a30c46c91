/**
 * The argument checks of the system calls and ioctls hmmsim models, written from the kernel source
 * with the C types of the arguments: a JS number becomes the `unsigned long` a C caller would pass
 * (a negative value wraps to 2^64 - |value|, as it does when a program passes -1), and every check
 * runs in 64-bit unsigned arithmetic (BigInt). Each function returns the errno name the kernel
 * returns, or the checked values when the call proceeds. Values with no C counterpart (NaN, fractions,
 * infinities, strings, null, BigInts, objects) are `null` from asUlong: the tests expect "a KernelError
 * and nothing changed" for those instead of a particular errno.
 *
 * Kernel source read (linux-mm tree): mm/vma.c do_vmi_munmap; mm/mprotect.c do_mprotect_pkey;
 * mm/madvise.c is_valid_madvise / do_madvise; mm/mmap.c do_mmap and __get_unmapped_area,
 * arch/x86/kernel/sys_x86_64.c sys_mmap, security/commoncap.c cap_mmap_addr; mm/mremap.c
 * check_mremap_params, check_prep_vma, do_mremap; lib/test_hmm.c dmirror_fops_unlocked_ioctl and
 * dmirror_bounce_init; fs/read_write.c ksys_pread64, vfs_read, vfs_write.
 */

export const U64 = 2n ** 64n;
const PAGE = 4096n;
/** TASK_SIZE on x86-64 with 4-level paging ((1 << 47) - PAGE_SIZE), as hmmsim's src/base/units.ts. */
export const TASK_SIZE = 2n ** 47n - PAGE;
/** mmap_min_addr: CONFIG_DEFAULT_MMAP_MIN_ADDR on x86 is 65536. */
export const MMAP_MIN_ADDR = 65536n;
/** MAX_LFS_FILESIZE on 64-bit (LLONG_MAX), the bound of file_mmap_ok and s_maxbytes of tmpfs. */
const MAX_LFS_FILESIZE = 2n ** 63n - 1n;

/** The unsigned long a C caller would pass, or null when no C value corresponds. */
export function asUlong(value: unknown): bigint | null {
  if (typeof value !== "number" || !Number.isInteger(value)) return null;
  const big = BigInt(value);
  if (big <= -U64 || big >= U64) return null;
  return big < 0n ? big + U64 : big;
}

/** The (signed) long or loff_t a C caller would pass, or null. */
export function asLong(value: unknown): bigint | null {
  if (typeof value !== "number" || !Number.isInteger(value)) return null;
  const big = BigInt(value);
  if (big < -(2n ** 63n) || big >= 2n ** 63n) return null;
  return big;
}

/** PAGE_ALIGN in 64-bit arithmetic: wraps to 0 for the last 4095 values. */
export function pageAlign(len: bigint): bigint {
  return ((len + PAGE - 1n) & ~(PAGE - 1n)) % U64;
}

function offsetInPage(addr: bigint): boolean {
  return (addr & (PAGE - 1n)) !== 0n;
}

/** A range a call goes on to act on, in pages (start inclusive, end exclusive, both below 2^47). */
export interface PageRange {
  start: number;
  end: number;
}

function pagesOf(start: bigint, end: bigint): PageRange {
  const clamp = (x: bigint) => Number((x > TASK_SIZE + PAGE ? TASK_SIZE + PAGE : x) / PAGE);
  return { start: clamp(start), end: clamp(end) };
}

export type Checked<T> = { errno: string } | ({ errno: null } & T);

/** do_vmi_munmap: unaligned, past TASK_SIZE or empty is EINVAL. */
export function munmapCheck(addr: bigint, len: bigint): Checked<PageRange> {
  if (offsetInPage(addr) || addr > TASK_SIZE || len > TASK_SIZE - addr) return { errno: "EINVAL" };
  const end = (addr + pageAlign(len)) % U64;
  if (end === addr) return { errno: "EINVAL" };
  return { errno: null, ...pagesOf(addr, end) };
}

const PROT_SEM = 0x8n;
const PROT_GROWSDOWN = 0x01000000n;
const PROT_GROWSUP = 0x02000000n;

/**
 * do_mprotect_pkey up to taking mmap_lock: both grows bits EINVAL, unaligned EINVAL, a zero length
 * succeeds doing nothing ("noop"), a wrapping range ENOMEM, then arch_validate_prot (x86 uses the
 * generic one: only READ, WRITE, EXEC and SEM) EINVAL.
 */
export function mprotectCheck(
  addr: bigint,
  len: bigint,
  prot: bigint,
): Checked<PageRange & { noop: boolean; prot: number }> {
  const grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
  if (grows === (PROT_GROWSDOWN | PROT_GROWSUP)) return { errno: "EINVAL" };
  const bare = prot & ~(PROT_GROWSDOWN | PROT_GROWSUP);
  if (offsetInPage(addr)) return { errno: "EINVAL" };
  if (len === 0n) return { errno: null, noop: true, start: 0, end: 0, prot: 0 };
  const end = (addr + pageAlign(len)) % U64;
  if (end <= addr) return { errno: "ENOMEM" };
  if ((bare & ~(1n | 2n | 4n | PROT_SEM)) !== 0n) return { errno: "EINVAL" };
  // A grows bit alone needs a VM_GROWSDOWN/UP VMA, which hmmsim never has: EINVAL once the VMA is
  // found (ENOMEM when none is). The generators never pass one alone.
  if (grows !== 0n) return { errno: "EINVAL" };
  return { errno: null, noop: false, ...pagesOf(addr, end), prot: Number(bare & 7n) };
}

export const MADV_DONTNEED = 4n;

/**
 * is_valid_madvise: unknown advice, unaligned start, a small negative length or a wrapping range
 * EINVAL. The only advice the tests pass is MADV_DONTNEED or values madvise_behavior_valid knows
 * nothing of.
 */
export function madviseCheck(
  addr: bigint,
  len: bigint,
  advice: bigint,
): Checked<PageRange & { noop: boolean; hole: boolean }> {
  if (advice !== MADV_DONTNEED) return { errno: "EINVAL" };
  if (offsetInPage(addr)) return { errno: "EINVAL" };
  const aligned = pageAlign(len);
  if (len !== 0n && aligned === 0n) return { errno: "EINVAL" };
  const end = addr + aligned;
  if (end >= U64) return { errno: "EINVAL" };
  if (end === addr) return { errno: null, noop: true, start: 0, end: 0, hole: false };
  // No VMA lies past TASK_SIZE: that part of the range is a hole (madvise does not check TASK_SIZE).
  return { errno: null, noop: false, ...pagesOf(addr, end), hole: end > TASK_SIZE };
}

/** The MAP_TYPE bits and the flags do_mmap looks at. */
export const MAP_SHARED = 0x01n;
export const MAP_PRIVATE = 0x02n;
export const MAP_SHARED_VALIDATE = 0x03n;
export const MAP_TYPE = 0x0fn;
export const MAP_FIXED = 0x10n;
export const MAP_ANONYMOUS = 0x20n;
export const MAP_FIXED_NOREPLACE = 0x100000n;
const MAP_DROPPABLE = 0x08n;
const MAP_LOCKED = 0x2000n;
const MAP_HUGETLB = 0x40000n;
/** LEGACY_MAP_MASK (include/linux/mman.h): the flags MAP_SHARED silently keeps. */
const LEGACY_MAP_MASK =
  0x01n |
  0x02n |
  0x10n |
  0x20n |
  0x100n |
  0x800n |
  0x1000n |
  0x2000n |
  0x4000n |
  0x8000n |
  0x10000n |
  0x20000n |
  0x40000n |
  0x100000n;

export interface MmapChecked {
  /** The page-aligned length in pages. */
  pages: number;
  /** MAP_FIXED or MAP_FIXED_NOREPLACE: the address, in pages. */
  fixedVpn: number | null;
  noreplace: boolean;
  shared: boolean;
  /** The access bits do_mmap keeps (calc_vm_prot_bits ignores every other bit). */
  prot: number;
  pgoff: number;
  /** Set for calls the reference does not model (huge pages, MAP_DROPPABLE, MAP_LOCKED). */
  unmodelled: boolean;
  /**
   * The errno of the checks do_mmap makes after placing the mapping (the file and MAP_TYPE checks),
   * which come after MAP_FIXED_NOREPLACE's EEXIST; null when they pass.
   */
  late: string | null;
}

/**
 * sys_mmap (x86-64), ksys_mmap_pgoff, do_mmap and __get_unmapped_area, in the order they run: an
 * unaligned offset EINVAL; no file without MAP_ANONYMOUS EBADF; len 0 EINVAL; a length that page
 * alignment wraps ENOMEM; pgoff + pages overflowing EOVERFLOW; len > TASK_SIZE ENOMEM; MAP_FIXED past
 * TASK_SIZE ENOMEM, unaligned EINVAL, below mmap_min_addr EPERM; then the file checks (file_mmap_ok
 * EOVERFLOW, a MAP_TYPE other than SHARED, SHARED_VALIDATE or PRIVATE EINVAL, SHARED_VALIDATE with
 * unknown flags EOPNOTSUPP) or the anonymous ones (SHARED or PRIVATE, else EINVAL). MAP_HUGETLB is
 * checked first, in ksys_mmap_pgoff. MAP_SHARED and
 * MAP_PRIVATE ignore flags they do not know; prot bits other than READ, WRITE and EXEC are ignored.
 * MAP_FIXED_NOREPLACE over a mapping (EEXIST) is for the caller, who knows what is mapped.
 */
export function mmapCheck(
  addr: bigint,
  len: bigint,
  prot: bigint,
  flags: bigint,
  offset: bigint,
  hasFile: boolean,
): Checked<MmapChecked> {
  if (offsetInPage(offset)) return { errno: "EINVAL" };
  const anonymous = (flags & MAP_ANONYMOUS) !== 0n;
  if (!anonymous && !hasFile) return { errno: "EBADF" };
  // ksys_mmap_pgoff: MAP_HUGETLB on a file that is not hugetlbfs is EINVAL; on anonymous memory it
  // needs an hstate for the size in the flags (hstate_sizelog), EINVAL for sizes x86 does not have.
  if ((flags & MAP_HUGETLB) !== 0n) {
    const log = (flags >> 26n) & 0x3fn;
    if (!anonymous || (log !== 0n && log !== 21n && log !== 30n)) return { errno: "EINVAL" };
  }
  if (len === 0n) return { errno: "EINVAL" };
  const aligned = pageAlign(len);
  if (aligned === 0n) return { errno: "ENOMEM" };
  const pgoff = offset / PAGE;
  if (pgoff + aligned / PAGE >= U64) return { errno: "EOVERFLOW" };
  if (aligned > TASK_SIZE) return { errno: "ENOMEM" };
  const fixed = (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) !== 0n;
  if (fixed) {
    if (addr > TASK_SIZE - aligned) return { errno: "ENOMEM" };
    if (offsetInPage(addr)) return { errno: "EINVAL" };
    if (addr < MMAP_MIN_ADDR) return { errno: "EPERM" };
  }
  const type = flags & MAP_TYPE;
  let late: string | null = null;
  if (!anonymous) {
    const maxsize = MAX_LFS_FILESIZE - aligned;
    if (pgoff > maxsize / PAGE) late = "EOVERFLOW";
    else if (type === MAP_SHARED_VALIDATE && (flags & ~LEGACY_MAP_MASK) !== 0n) late = "EOPNOTSUPP";
    else if (type !== MAP_SHARED && type !== MAP_SHARED_VALIDATE && type !== MAP_PRIVATE) late = "EINVAL";
  } else if (type !== MAP_SHARED && type !== MAP_PRIVATE && type !== MAP_DROPPABLE) {
    late = "EINVAL";
  }
  // Huge pages, MAP_DROPPABLE and MAP_LOCKED (populated and mlocked) are not in hmmsim.
  const unmodelled = (flags & (MAP_HUGETLB | MAP_LOCKED)) !== 0n || (anonymous && type === MAP_DROPPABLE);
  return {
    unmodelled,
    errno: null,
    late,
    pages: Number(aligned / PAGE),
    fixedVpn: fixed ? Number(addr / PAGE) : null,
    noreplace: (flags & MAP_FIXED_NOREPLACE) !== 0n,
    shared: type !== MAP_PRIVATE,
    prot: Number(prot & 7n),
    pgoff: Number(pgoff),
  };
}

export const MREMAP_MAYMOVE = 1n;
export const MREMAP_FIXED = 2n;
export const MREMAP_DONTUNMAP = 4n;

export interface MremapChecked {
  oldVpn: number;
  oldPages: number;
  newPages: number;
  fixed: boolean;
  mayMove: boolean;
  newVpn: number;
  /** Set for calls the reference does not model (MREMAP_DONTUNMAP, an old length past TASK_SIZE). */
  unmodelled: string | null;
}

/**
 * do_mremap's PAGE_ALIGN of both lengths and check_mremap_params: unknown flags, an unaligned old
 * address, a new length of 0 or past TASK_SIZE EINVAL; with MREMAP_FIXED a new address past
 * TASK_SIZE - new_len, unaligned, without MAYMOVE, or overlapping the old range EINVAL.
 */
export function mremapCheck(
  oldAddr: bigint,
  oldLen: bigint,
  newLen: bigint,
  flags: bigint,
  newAddr: bigint,
): Checked<MremapChecked> {
  const oldAligned = pageAlign(oldLen);
  const newAligned = pageAlign(newLen);
  if ((flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP)) !== 0n) return { errno: "EINVAL" };
  if (offsetInPage(oldAddr)) return { errno: "EINVAL" };
  if (newAligned === 0n) return { errno: "EINVAL" };
  if (newAligned > TASK_SIZE) return { errno: "EINVAL" };
  const fixed = (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) !== 0n;
  if (fixed) {
    if (newAddr > TASK_SIZE - newAligned) return { errno: "EINVAL" };
    if (offsetInPage(newAddr)) return { errno: "EINVAL" };
    if ((flags & MREMAP_MAYMOVE) === 0n) return { errno: "EINVAL" };
    if ((flags & MREMAP_DONTUNMAP) !== 0n && oldAligned !== newAligned) return { errno: "EINVAL" };
    // vrm_overlaps
    if (oldAddr < newAddr + newAligned && newAddr < oldAddr + oldAligned) return { errno: "EINVAL" };
  }
  const unmodelled =
    (flags & MREMAP_DONTUNMAP) !== 0n
      ? "MREMAP_DONTUNMAP"
      : oldAligned > TASK_SIZE || oldAddr > TASK_SIZE
        ? "an old range past TASK_SIZE"
        : null;
  return {
    unmodelled,
    errno: null,
    oldVpn: Number(oldAddr / PAGE),
    oldPages: Number(oldAligned / PAGE),
    newPages: Number(newAligned / PAGE),
    fixed,
    mayMove: (flags & MREMAP_MAYMOVE) !== 0n,
    newVpn: fixed ? Number(newAddr / PAGE) : 0,
  };
}

/**
 * dmirror_fops_unlocked_ioctl: an unaligned address, or addr >= addr + (npages << PAGE_SHIFT) in
 * 64-bit arithmetic (npages 0, or a size that wraps), EINVAL. The commands then check end < start
 * again (never true here) and READ and WRITE vmalloc a bounce buffer of the whole size
 * (dmirror_bounce_init), which fails with ENOMEM for a size no machine has.
 */
export function ioctlCheck(
  addr: bigint,
  npages: bigint,
): Checked<{ vpn: number; npages: bigint; size: bigint }> {
  if (offsetInPage(addr)) return { errno: "EINVAL" };
  const size = (npages << 12n) % U64;
  if (addr >= (addr + size) % U64) return { errno: "EINVAL" };
  return { errno: null, vpn: Number(addr / PAGE), npages, size };
}

/** Bytes vmalloc can never provide in these tests (the system's RAM is a few MiB): ENOMEM. */
export function bounceFails(size: bigint): boolean {
  return size > 2n ** 36n;
}

/** ksys_pread64 / ksys_pwrite64 (pos < 0 EINVAL) then vfs_read / vfs_write (!access_ok EFAULT). */
export function rwCheck(offset: bigint, count: bigint): string | null {
  if (offset < 0n) return "EINVAL";
  // access_ok: the user buffer [buf, buf + count) must lie below TASK_SIZE; a count this large cannot.
  if (count > TASK_SIZE) return "EFAULT";
  return null;
}
