/**
 * The argument checks of the system calls and ioctls hmmsim models, written from the kernel source
 * with the C types of the arguments, in 64-bit unsigned arithmetic (BigInt). Each function returns the
 * errno name the kernel returns, or the checked values when the call proceeds.
 *
 * How a JavaScript value becomes an argument is hmmsim's one rule (src/base/abi.ts, README "The
 * library"), restated here so that the reference does not share the code it checks:
 * - a number holding an integer n with -2^63 <= n < 2^64 is the register value n mod 2^64 (so -4096
 *   is an address above user space, as a C program passing -4096 gets); an `int` (madvise's advice) is
 *   the low 32 bits of it; a `loff_t` (pread/pwrite offsets, the file size) reads the 64 bits signed;
 * - anything else (NaN, infinities, fractions, BigInts, strings, null, undefined, objects, integers
 *   outside that range) is EINVAL before anything else is looked at; a buffer that is not a Uint8Array
 *   is EFAULT;
 * - the dmirror ioctl's addr and npages are the u64 fields of struct hmm_dmirror_cmd: a number holding
 *   an integer in [0, 2^64), else EINVAL (src/device.ts, dmirror_uapi.ts commandRange).
 *
 * Kernel source read (linux-mm tree): mm/vma.c do_vmi_munmap; mm/mprotect.c do_mprotect_pkey;
 * mm/madvise.c madvise_behavior_valid, is_valid_madvise, do_madvise, madvise_inject_error;
 * mm/mmap.c do_mmap and __get_unmapped_area, mm/util.c vm_mmap_pgoff, mm/mmap.c ksys_mmap_pgoff,
 * arch/x86/kernel/sys_x86_64.c sys_mmap, security/commoncap.c cap_mmap_addr; mm/mremap.c
 * check_mremap_params, vrm_move_only, check_prep_vma; lib/test_hmm.c dmirror_fops_unlocked_ioctl and
 * dmirror_bounce_init (with __vmalloc_node_range's "exceeds total pages"); fs/read_write.c
 * ksys_pread64, ksys_pwrite64, vfs_read, vfs_write, rw_verify_area, generic_write_check_limits.
 */

export const U64 = 2n ** 64n;
const PAGE = 4096n;
/** TASK_SIZE on x86-64 with 4-level paging ((1 << 47) - PAGE_SIZE). */
export const TASK_SIZE = 2n ** 47n - PAGE;
/** mmap_min_addr: CONFIG_DEFAULT_MMAP_MIN_ADDR on x86 is 65536. */
export const MMAP_MIN_ADDR = 65536n;
/** MAX_LFS_FILESIZE on 64-bit (LLONG_MAX), the bound of file_mmap_ok and of loff_t arithmetic. */
const MAX_LFS_FILESIZE = 2n ** 63n - 1n;
/** hmmsim's tmpfs s_maxbytes (src/mm/filemap.ts TMPFS_MAX_BYTES, a documented difference). */
export const TMPFS_MAX_BYTES = 2n ** 53n;
/** MAX_RW_COUNT (INT_MAX & PAGE_MASK): the most one read(2) or write(2) moves. */
export const MAX_RW_COUNT = 0x7ffff000n;

/** The register value (an `unsigned long`) a JS value passes, or null: EINVAL. */
export function register(value: unknown): bigint | null {
  if (typeof value !== "number" || !Number.isInteger(value)) return null;
  if (value < -(2 ** 63) || value >= 2 ** 64) return null;
  return BigInt.asUintN(64, BigInt(value));
}

/** The `loff_t` a JS value passes, or null: EINVAL. */
export function loff(value: unknown): bigint | null {
  const reg = register(value);
  return reg === null ? null : BigInt.asIntN(64, reg);
}

/** The `int` a JS value passes (the register's low 32 bits, signed), or null: EINVAL. */
export function cInt(value: unknown): number | null {
  const reg = register(value);
  return reg === null ? null : Number(BigInt.asIntN(32, reg));
}

/** A u64 field of struct hmm_dmirror_cmd, or null: EINVAL. */
export function u64Field(value: unknown): bigint | null {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value >= 2 ** 64) return null;
  return BigInt(value);
}

/** The register values of the named arguments, or null when one has none (EINVAL). */
export function registers(args: Record<string, unknown>, names: readonly string[]): bigint[] | null {
  const values: bigint[] = [];
  for (const name of names) {
    const value = register(args[name]);
    if (value === null) return null;
    values.push(value);
  }
  return values;
}

/** PAGE_ALIGN in 64-bit arithmetic: wraps to 0 for the last 4095 values. */
export function pageAlign(len: bigint): bigint {
  return ((len + PAGE - 1n) & ~(PAGE - 1n)) % U64;
}

function offsetInPage(addr: bigint): boolean {
  return (addr & (PAGE - 1n)) !== 0n;
}

/** A range in pages (start inclusive, end exclusive), clamped to one page past TASK_SIZE. */
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
export const PROT_GROWSDOWN = 0x01000000n;
export const PROT_GROWSUP = 0x02000000n;

/**
 * do_mprotect_pkey up to taking mmap_lock: both grows bits EINVAL, unaligned EINVAL, a zero length
 * succeeds doing nothing ("noop"), a wrapping range ENOMEM, then arch_validate_prot (x86 uses the
 * generic one: only READ, WRITE, EXEC and SEM) EINVAL. `grows` is the one grows bit left, which the
 * walk answers (hmmsim has no VMA that grows).
 */
export function mprotectCheck(
  addr: bigint,
  len: bigint,
  prot: bigint,
): Checked<PageRange & { noop: boolean; prot: number; grows: bigint }> {
  const grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
  if (grows === (PROT_GROWSDOWN | PROT_GROWSUP)) return { errno: "EINVAL" };
  const bare = prot & ~(PROT_GROWSDOWN | PROT_GROWSUP);
  if (offsetInPage(addr)) return { errno: "EINVAL" };
  if (len === 0n) return { errno: null, noop: true, start: 0, end: 0, prot: 0, grows };
  const end = (addr + pageAlign(len)) % U64;
  if (end <= addr) return { errno: "ENOMEM" };
  if ((bare & ~(1n | 2n | 4n | PROT_SEM)) !== 0n) return { errno: "EINVAL" };
  return { errno: null, noop: false, ...pagesOf(addr, end), prot: Number(bare & 7n), grows };
}

export const MADV_DONTNEED = 4;
export const MADV_FREE = 8;
export const MADV_HUGEPAGE = 14;
export const MADV_NOHUGEPAGE = 15;
export const MADV_DONTNEED_LOCKED = 24;
export const MADV_HWPOISON = 100;
export const MADV_SOFT_OFFLINE = 101;
/**
 * The advice hmmsim models. Other advice valid in Linux gives EINVAL in hmmsim, a documented difference
 * (src/mm/madvise.ts: "other advice, valid in Linux, gives EINVAL (not modelled)"); the reference
 * encodes it.
 */
const MADVICE_MODELLED = new Set([
  MADV_DONTNEED,
  MADV_FREE,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MADV_DONTNEED_LOCKED,
  MADV_HWPOISON,
  MADV_SOFT_OFFLINE,
]);

/**
 * do_madvise and is_valid_madvise: unknown advice, an unaligned start, a length that rounds up to 0
 * from just below 2^64 or a wrapping range EINVAL; a length of 0 succeeds doing nothing; then
 * MADV_HWPOISON and MADV_SOFT_OFFLINE need CAP_SYS_ADMIN (madvise_inject_error: EPERM).
 */
export function madviseCheck(
  addr: bigint,
  len: bigint,
  advice: number,
): Checked<PageRange & { noop: boolean; hole: boolean }> {
  if (!MADVICE_MODELLED.has(advice)) return { errno: "EINVAL" };
  if (offsetInPage(addr)) return { errno: "EINVAL" };
  const aligned = pageAlign(len);
  if (len !== 0n && aligned === 0n) return { errno: "EINVAL" };
  const end = addr + aligned;
  if (end >= U64) return { errno: "EINVAL" };
  if (end === addr) return { errno: null, noop: true, start: 0, end: 0, hole: false };
  if (advice === MADV_HWPOISON || advice === MADV_SOFT_OFFLINE) return { errno: "EPERM" };
  // No VMA lies past TASK_SIZE: that part of the range is a hole (madvise does not check TASK_SIZE).
  return { errno: null, noop: false, ...pagesOf(addr, end), hole: end > TASK_SIZE };
}

/** The MAP_TYPE bits and the flags do_mmap looks at (x86-64 values). */
export const MAP_SHARED = 0x01n;
export const MAP_PRIVATE = 0x02n;
export const MAP_SHARED_VALIDATE = 0x03n;
export const MAP_TYPE = 0x0fn;
export const MAP_FIXED = 0x10n;
export const MAP_ANONYMOUS = 0x20n;
export const MAP_FIXED_NOREPLACE = 0x100000n;
const MAP_DROPPABLE = 0x08n;
const MAP_32BIT = 0x40n;
const MAP_GROWSDOWN = 0x100n;
const MAP_LOCKED = 0x2000n;
const MAP_STACK = 0x20000n;
const MAP_HUGETLB = 0x40000n;
/** MAP_HUGE_SHIFT and MAP_HUGE_MASK: log2 of the huge page size MAP_HUGETLB asks for. */
const MAP_HUGE_SHIFT = 26n;
const MAP_HUGE_MASK = 0x3fn;
/** The one hstate hmmsim has: 2 MiB. */
const HUGE_SIZE = 2n * 1024n * 1024n;
/** LEGACY_MAP_MASK (include/linux/mman.h): the flags MAP_SHARED_VALIDATE accepts, with the huge sizes. */
const LEGACY_MAP_MASK =
  0x01n |
  0x02n |
  0x10n |
  0x20n |
  0x40n |
  0x100n |
  0x800n |
  0x1000n |
  0x2000n |
  0x4000n |
  0x8000n |
  0x10000n |
  0x20000n |
  0x40000n |
  0x4000000n |
  (21n << 26n) |
  (30n << 26n);

export interface MmapChecked {
  /** The page-aligned length in pages. */
  pages: number;
  /** MAP_FIXED or MAP_FIXED_NOREPLACE: the address, in pages. */
  fixedVpn: number | null;
  noreplace: boolean;
  shared: boolean;
  anonymous: boolean;
  /** The access bits do_mmap keeps (calc_vm_prot_bits ignores every other bit). */
  prot: number;
  pgoff: number;
  /** MAP_STACK: VM_NOHUGEPAGE (calc_vm_flag_bits, 6.7). */
  noHuge: boolean;
  /** MAP_32BIT: placed in the first 2 GiB. */
  below2G: boolean;
  /**
   * The errno of the checks do_mmap makes after placing the mapping (MAP_LOCKED, the file and
   * MAP_TYPE checks), which come after MAP_FIXED_NOREPLACE's EEXIST; null when they pass.
   */
  late: string | null;
}

/**
 * sys_mmap (x86-64), ksys_mmap_pgoff, do_mmap and __get_unmapped_area, in the order they run, with
 * the `flags` register's low 32 bits as the int do_mmap receives (a bit above them is unknown to
 * every kernel: only MAP_SHARED_VALIDATE refuses it).
 * - sys_mmap: an unaligned offset EINVAL; ksys_mmap_pgoff: no file without MAP_ANONYMOUS EBADF;
 *   MAP_HUGETLB of a file EINVAL (no hugetlbfs files), of a size other than the default or 2 MiB
 *   EINVAL (no such hstate), not MAP_PRIVATE EINVAL (src/mm/hugetlb.ts, documented), and its length
 *   rounded up to 2 MiB; a fixed one must be 2 MiB-aligned (EINVAL, before the other address checks:
 *   hugetlb_get_unmapped_area runs first), and it finds no free
 *   huge page (ENOMEM, after the `late` checks: the runner reserves none);
 * - do_mmap: len 0 EINVAL; a length page alignment wraps ENOMEM; pgoff + pages overflowing EOVERFLOW;
 *   __get_unmapped_area: a length no address space holds ENOMEM (hmmsim: more than TASK_SIZE -
 *   mmap_min_addr, the bound generic_get_unmapped_area applies; the kernel's MAP_FIXED path checks
 *   len > TASK_SIZE, and no generated length lies between the two); MAP_FIXED past TASK_SIZE ENOMEM,
 *   unaligned EINVAL, below mmap_min_addr EPERM (cap_mmap_addr);
 * - after placing it (`late`): MAP_FIXED_NOREPLACE over a mapping EEXIST (for the caller, who knows
 *   what is mapped), MAP_LOCKED EPERM (can_do_mlock: hmmsim's processes have RLIMIT_MEMLOCK 0 and no
 *   CAP_IPC_LOCK, documented), then the file checks (file_mmap_ok EOVERFLOW; a MAP_TYPE other than
 *   SHARED, SHARED_VALIDATE or PRIVATE EINVAL; SHARED_VALIDATE with unknown flags EOPNOTSUPP;
 *   MAP_GROWSDOWN EINVAL) or the anonymous ones (MAP_SHARED with MAP_GROWSDOWN EINVAL; MAP_DROPPABLE
 *   EOPNOTSUPP, as a kernel without VM_DROPPABLE answers since "mm: fix mmap errno value when
 *   MAP_DROPPABLE is not supported", hmmsim's documented choice; MAP_PRIVATE with MAP_GROWSDOWN EINVAL,
 *   hmmsim's documented difference: it has no stacks that grow; any other type EINVAL).
 */
export function mmapCheck(
  addr: bigint,
  len: bigint,
  prot: bigint,
  flagsReg: bigint,
  offset: bigint,
  hasFile: boolean,
): Checked<MmapChecked> {
  if (offsetInPage(offset)) return { errno: "EINVAL" };
  const flags = flagsReg & 0xffff_ffffn;
  const highFlags = flagsReg > 0xffff_ffffn;
  const anonymous = (flags & MAP_ANONYMOUS) !== 0n;
  if (!anonymous && !hasFile) return { errno: "EBADF" };
  const hugetlb = (flags & MAP_HUGETLB) !== 0n;
  let length = len;
  if (hugetlb) {
    if (!anonymous) return { errno: "EINVAL" };
    const sizeLog = (flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
    if (sizeLog !== 0n && sizeLog !== 21n) return { errno: "EINVAL" };
    if ((flags & MAP_TYPE) !== MAP_PRIVATE) return { errno: "EINVAL" };
    length = ((len + HUGE_SIZE - 1n) % U64) & ~(HUGE_SIZE - 1n);
  }
  if (length === 0n) return { errno: "EINVAL" };
  const aligned = pageAlign(length);
  if (aligned === 0n) return { errno: "ENOMEM" };
  const pgoff = offset / PAGE;
  if (pgoff + aligned / PAGE >= U64) return { errno: "EOVERFLOW" };
  if (aligned > TASK_SIZE - MMAP_MIN_ADDR) return { errno: "ENOMEM" };
  const fixed = (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) !== 0n;
  if (fixed) {
    if (hugetlb && addr % HUGE_SIZE !== 0n) return { errno: "EINVAL" };
    if (addr > TASK_SIZE - aligned) return { errno: "ENOMEM" };
    if (offsetInPage(addr)) return { errno: "EINVAL" };
    if (addr < MMAP_MIN_ADDR) return { errno: "EPERM" };
  }
  const type = flags & MAP_TYPE;
  const growsDown = (flags & MAP_GROWSDOWN) !== 0n;
  let late: string | null = null;
  if ((flags & MAP_LOCKED) !== 0n) late = "EPERM";
  else if (!anonymous) {
    const maxsize = MAX_LFS_FILESIZE - aligned;
    if (pgoff > maxsize / PAGE) late = "EOVERFLOW";
    else if (type !== MAP_SHARED && type !== MAP_SHARED_VALIDATE && type !== MAP_PRIVATE) late = "EINVAL";
    else if (type === MAP_SHARED_VALIDATE && (highFlags || (flags & ~LEGACY_MAP_MASK) !== 0n))
      late = "EOPNOTSUPP";
    else if (growsDown) late = "EINVAL";
  } else if (type === MAP_SHARED) {
    if (growsDown) late = "EINVAL";
  } else if (type === MAP_DROPPABLE) {
    late = "EOPNOTSUPP";
  } else if (type !== MAP_PRIVATE || growsDown) {
    late = "EINVAL";
  }
  // hugetlbfs_file_mmap: the runner reserves no huge pages, so a MAP_HUGETLB mapping finds none free.
  if (late === null && hugetlb) late = "ENOMEM";
  return {
    errno: null,
    late,
    pages: Number(aligned / PAGE),
    fixedVpn: fixed ? Number(addr / PAGE) : null,
    noreplace: (flags & MAP_FIXED_NOREPLACE) !== 0n,
    shared: type !== MAP_PRIVATE,
    anonymous,
    prot: Number(prot & 7n),
    pgoff: Number(pgoff),
    noHuge: (flags & MAP_STACK) !== 0n,
    below2G: (flags & MAP_32BIT) !== 0n,
  };
}

export const MREMAP_MAYMOVE = 1n;
export const MREMAP_FIXED = 2n;
export const MREMAP_DONTUNMAP = 4n;

export interface MremapChecked {
  oldAddr: bigint;
  oldLen: bigint;
  newLen: bigint;
  newAddr: bigint;
  fixed: boolean;
  mayMove: boolean;
  dontUnmap: boolean;
  /** vrm_move_only: MREMAP_FIXED with old_len == new_len, which remap_move does VMA by VMA. */
  moveOnly: boolean;
}

/**
 * do_mremap's PAGE_ALIGN of both lengths and check_mremap_params: unknown flags, an unaligned old
 * address, a new length of 0 or past TASK_SIZE EINVAL; with MREMAP_FIXED or MREMAP_DONTUNMAP
 * (vrm_implies_new_addr) a new address past TASK_SIZE - new_len, unaligned, without MAYMOVE, a
 * DONTUNMAP resize, or a new range overlapping the old one (vrm_overlaps, in unsigned arithmetic)
 * EINVAL.
 */
export function mremapCheck(
  oldAddr: bigint,
  oldLength: bigint,
  newLength: bigint,
  flags: bigint,
  newAddr: bigint,
): Checked<MremapChecked> {
  const oldLen = pageAlign(oldLength);
  const newLen = pageAlign(newLength);
  if ((flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP)) !== 0n) return { errno: "EINVAL" };
  if (offsetInPage(oldAddr)) return { errno: "EINVAL" };
  if (newLen === 0n) return { errno: "EINVAL" };
  if (newLen > TASK_SIZE) return { errno: "EINVAL" };
  const fixed = (flags & MREMAP_FIXED) !== 0n;
  const dontUnmap = (flags & MREMAP_DONTUNMAP) !== 0n;
  const mayMove = (flags & MREMAP_MAYMOVE) !== 0n;
  if (fixed || dontUnmap) {
    if (newAddr > TASK_SIZE - newLen) return { errno: "EINVAL" };
    if (offsetInPage(newAddr)) return { errno: "EINVAL" };
    if (!mayMove) return { errno: "EINVAL" };
    if (dontUnmap && oldLen !== newLen) return { errno: "EINVAL" };
    const endOld = (oldAddr + oldLen) % U64;
    if (endOld > newAddr && newAddr + newLen > oldAddr) return { errno: "EINVAL" };
  }
  return {
    errno: null,
    oldAddr,
    oldLen,
    newLen,
    newAddr,
    fixed,
    mayMove,
    dontUnmap,
    moveOnly: fixed && oldLen === newLen,
  };
}

/**
 * dmirror_fops_unlocked_ioctl: an unaligned address, or addr >= addr + (npages << PAGE_SHIFT) in
 * 64-bit arithmetic (npages 0, or a range that wraps), EINVAL. The command then works on npages mod
 * 2^52 pages (the shift drops the high bits).
 */
export function ioctlCheck(addr: bigint, npages: bigint): Checked<{ vpn: number; npages: number }> {
  if (offsetInPage(addr)) return { errno: "EINVAL" };
  const size = (npages << 12n) % U64;
  if (addr >= (addr + size) % U64) return { errno: "EINVAL" };
  return { errno: null, vpn: Number(addr / PAGE), npages: Number(size / PAGE) };
}

/**
 * ksys_pread64 / ksys_pwrite64 (pos < 0 EINVAL), vfs_read / vfs_write (!access_ok EFAULT: hmmsim takes
 * the caller's buffer to lie between mmap_min_addr and TASK_SIZE, so a count above TASK_SIZE -
 * mmap_min_addr has none, src/mm/filemap.ts), rw_verify_area (pos + count past LLONG_MAX EINVAL).
 */
export function rwCheck(offset: bigint, count: bigint): string | null {
  if (offset < 0n) return "EINVAL";
  if (count > TASK_SIZE - MMAP_MIN_ADDR) return "EFAULT";
  if (offset + count > MAX_LFS_FILESIZE) return "EINVAL";
  return null;
}
