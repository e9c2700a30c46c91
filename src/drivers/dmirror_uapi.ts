/**
 * The dmirror uapi (lib/test_hmm_uapi.h): snapshot codes, flags, and the checks
 * dmirror_fops_unlocked_ioctl makes on every command's struct hmm_dmirror_cmd before dispatching it.
 */
import { PAGE_SIZE } from "../base/units.js";

/** HMM_DMIRROR_PROT_* snapshot codes (test_hmm_uapi.h). */
export const HMM_DMIRROR_PROT_ERROR = 0xff;
/** HMM_DMIRROR_PROT_NONE: snapshot code of a page the device cannot access. */
export const HMM_DMIRROR_PROT_NONE = 0x00;
/** HMM_DMIRROR_PROT_READ: snapshot bit, the page is readable. */
export const HMM_DMIRROR_PROT_READ = 0x01;
/** HMM_DMIRROR_PROT_WRITE: snapshot bit, the page is writable. */
export const HMM_DMIRROR_PROT_WRITE = 0x02;
/** HMM_DMIRROR_PROT_PMD: snapshot bit, the page is mapped by a PMD-sized entry. */
export const HMM_DMIRROR_PROT_PMD = 0x04;
/** HMM_DMIRROR_PROT_PUD: snapshot bit, the page is mapped by a PUD-sized entry. */
export const HMM_DMIRROR_PROT_PUD = 0x08;
/** HMM_DMIRROR_PROT_ZERO: snapshot bit, the page is the shared zero page. */
export const HMM_DMIRROR_PROT_ZERO = 0x10;
/** HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL: snapshot code, device-private memory of this device. */
export const HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL = 0x20;
/** HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE: snapshot code, device-private memory of another device. */
export const HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE = 0x30;
/** HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL: snapshot code, device-coherent memory of this device. */
export const HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL = 0x40;
/** HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE: snapshot code, device-coherent memory of another device. */
export const HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE = 0x50;
/** HMM_DMIRROR_FLAG_FAIL_ALLOC: the next device or system page allocation of a migration fails, once. */
export const HMM_DMIRROR_FLAG_FAIL_ALLOC = 1;

/** A command's range after the ioctl's checks: the first page and the page count the command uses. */
export interface CommandRange {
  readonly vpn: number;
  readonly npages: number;
}

/** 2^52: a u64 byte address or size holds 2^52 pages. */
const U64_PAGES = 2 ** 52;

/**
 * The checks dmirror_fops_unlocked_ioctl makes on every command, on the u64s cmd.addr and cmd.npages:
 * `cmd.addr & ~PAGE_MASK` and `cmd.addr >= cmd.addr + (cmd.npages << PAGE_SHIFT)`, in u64 arithmetic,
 * so that npages << 12 wraps modulo 2^64 and the command works on npages mod 2^52 pages. Returns that
 * range, or null (-EINVAL). A value that is not a number holding an integer in [0, 2^64) is no u64:
 * hmmsim answers it with -EINVAL too (a C caller cannot pass one; a JavaScript caller can).
 */
export function commandRange(addr: unknown, npages: unknown): CommandRange | null {
  if (!isU64(addr) || !isU64(npages) || addr % PAGE_SIZE !== 0) return null;
  const vpn = addr / PAGE_SIZE;
  const wrapped = npages % U64_PAGES;
  // end = addr + size wraps below addr exactly when the page count passes 2^52.
  if (wrapped === 0 || vpn + wrapped >= U64_PAGES) return null;
  return { vpn, npages: wrapped };
}

/** A JavaScript value that an ioctl's u64 field can hold exactly. */
export function isU64(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value < 2 ** 64;
}
