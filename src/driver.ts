/**
 * `hmmsim/driver`: the kernel-level API a device driver of your own is written against, in one import,
 * the way nouveau, amdgpu's SVM or lib/test_hmm.c are written against Linux's. Load the driver into a
 * System with `system.attachDriver(name, (ctx) => new MyDriver(ctx))` (see DriverContext); examples/
 * my-driver is a short complete one, examples/gpu-driver a larger one the explorer checks.
 *
 * What is here:
 *
 * - the machine: System, Process, DriverContext and DriverLoader (System.attachDriver),
 *   InvariantChecker (a driver's own checker), Kernel, Pagemaps;
 * - device memory (mm/memremap): DevPagemap, DevPagemapOps (page_free, migrate_to_ram), VmFault,
 *   MEMORY_DEVICE_PRIVATE and _COHERENT, memremapPages, memunmapPages, zoneDevicePageInit,
 *   isDevicePrivatePage, isDeviceCoherentPage;
 * - pages: allocLockedPage (alloc_page + lock_page, what migrate_to_ram and eviction copy into),
 *   trylockPage, lockPage, unlockPage; the page store is `ctx.kernel.store` (copy, zero, fill, word);
 * - migration (mm/migrate_device): MigrateVmaArgs, migrateVmaSetup / Pages / Finalize,
 *   migrateDeviceRange / Pages / Finalize (eviction without a VMA), migrateDeviceCoherentFolio,
 *   MigrateContext (`ctx.migrate`);
 * - migrate PFN words (mm/migrate_pfn): the running protocol's MIGRATE_PFN_* values are
 *   `ctx.layout` (VALID, MIGRATE, WRITE, ...: they moved between kernel versions, so never hard-code
 *   them; a flag an era lacks is 0), the layouts of each era, MIGRATE_VMA_SELECT_*, migratePfn,
 *   migratePfnToPfn, hasFlag, setFlag, clearFlag;
 * - mirroring (mm/hmm): HmmRange, hmmRangeFault, HMM_PFN_* (VALID, WRITE, ERROR, REQ_FAULT,
 *   REQ_WRITE), hmmPfnToPfn, hmmPfnFlags, hmmPfnToMapOrder (9 where a huge PMD maps the page);
 * - MMU interval notifiers (mm/mmu_notifier): mmuIntervalNotifierInsert / Remove, ReadBegin,
 *   ReadRetry, SetSeq, MmuIntervalNotifierOps, MmuNotifierRange, the MMU_NOTIFY_* events;
 * - the fault path: VM_FAULT_* (what migrate_to_ram returns), FAULT_FLAG_*;
 * - CPU page-table entries, for a checker: ptePresent, pteFrame, pteWrite, isDevicePrivateEntry, ...;
 * - the scheduler: Kfn (every function that may sleep is a generator: call it with `yield*`, run it
 *   from plain code with `ctx.sched.call(name, body)`), Lock (a mutex or spinlock), RwSem (mmap_lock
 *   is `mm.mmapLock`), WaitQueue, PREEMPT and BLOCKED, OBJ_NAMED and pageObject (shared objects for
 *   the explorer's partial-order reduction: `sched.touch(object)`);
 * - errno values and KernelError; PAGE_SIZE, TASK_SIZE, Vpn and Pfn, and the conversions below.
 *
 * THE RANGE CONVENTION. A virtual range is half-open, [start, end). Where hmmsim's API and the
 * kernel's both take byte addresses, they are bytes; everywhere else in the kernel-level API a
 * virtual location is a page number (a Vpn: the byte address / PAGE_SIZE), and the field says so by
 * its type or its name. Exactly:
 *
 * - bytes, as in the kernel: `MigrateVmaArgs.start` and `.end` (struct migrate_vma's unsigned long
 *   addresses, masked to pages); every System/Process call (`proc.mmap` returns a byte address);
 * - page numbers where the kernel has bytes (a deliberate difference, stated in each module):
 *   `HmmRange.start` / `.end` (hmm_range's are addresses; hmmPfns[i] is page start + i),
 *   `mmuIntervalNotifierInsert(mm, start, end, ops)` (the kernel takes start and a byte length),
 *   `MmuNotifierRange.start` / `.end`, `Vma.start` / `.end` (vm_start / vm_end), `VmFault.vpn`
 *   (vmf->address), and `mm.findVma(vpn)`;
 * - physical memory is always in page frames (pfns), as the kernel's page_to_pfn.
 *
 * Convert with vpnOf(address) (the page holding a byte address) and addrOf(vpn) (its first byte);
 * both answer a value that is not an address or page number of the user address space with EINVAL.
 */
import { EINVAL, KernelError } from "./base/errno.js";
import { PAGE_SIZE, TASK_SIZE, type Vpn } from "./base/units.js";
import { trylockPage } from "./mm/filemap.js";
import type { Kernel } from "./mm/kernel.js";

export {
  EACCES,
  EAGAIN,
  EBUSY,
  EEXIST,
  EFAULT,
  EINTR,
  EINVAL,
  EIO,
  ENODEV,
  ENOENT,
  ENOMEM,
  ENOSPC,
  EOPNOTSUPP,
  EPERM,
  ESRCH,
  errnoName,
  KernelError,
} from "./base/errno.js";
export {
  addrToVpn,
  asPfn,
  asVpn,
  isPageAligned,
  PAGE_SHIFT,
  PAGE_SIZE,
  PAGES_PER_PMD,
  type Pfn,
  TASK_SIZE,
  type Vpn,
  vpnToAddr,
} from "./base/units.js";
export { lockPage, trylockPage, unlockPage } from "./mm/filemap.js";
export {
  HMM_PFN_ERROR,
  HMM_PFN_REQ_FAULT,
  HMM_PFN_REQ_WRITE,
  HMM_PFN_VALID,
  HMM_PFN_WRITE,
  type HmmRange,
  hmmPfnFlags,
  hmmPfnToMapOrder,
  hmmPfnToPfn,
  hmmRangeFault,
} from "./mm/hmm.js";
export type { Kernel, ProtocolVersion } from "./mm/kernel.js";
export {
  FAULT_FLAG_REMOTE,
  FAULT_FLAG_UNSHARE,
  FAULT_FLAG_WRITE,
  type FaultContext,
  VM_FAULT_ERROR,
  VM_FAULT_MAJOR,
  VM_FAULT_NOPAGE,
  VM_FAULT_OOM,
  VM_FAULT_RETRY,
  VM_FAULT_SIGBUS,
  VM_FAULT_SIGSEGV,
} from "./mm/memory.js";
export {
  DevPagemap,
  type DevPagemapOps,
  isDeviceCoherentPage,
  isDevicePrivatePage,
  MEMORY_DEVICE_COHERENT,
  MEMORY_DEVICE_PRIVATE,
  type MemoryType,
  memremapPages,
  memunmapPages,
  type Pagemaps,
  type VmFault,
  zoneDevicePageInit,
} from "./mm/memremap.js";
export {
  type MigrateContext,
  type MigrateVmaArgs,
  migrateDeviceCoherentFolio,
  migrateDeviceFinalize,
  migrateDevicePages,
  migrateDeviceRange,
  migrateVmaFinalize,
  migrateVmaPages,
  migrateVmaSetup,
} from "./mm/migrate_device.js";
export {
  clearFlag,
  hasFlag,
  layoutFor,
  MIGRATE_VMA_SELECT_DEVICE_COHERENT,
  MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
  MIGRATE_VMA_SELECT_SYSTEM,
  type MigratePfnLayout,
  MODERN_LAYOUT,
  migratePfn,
  migratePfnToPfn,
  SEED_LAYOUT,
  setFlag,
  V414_LAYOUT,
} from "./mm/migrate_pfn.js";
export type { MmStruct, Vma } from "./mm/mm_types.js";
export * from "./mm/mman.js";
export {
  EVENT_NAMES,
  MMU_NOTIFY_CLEAR,
  MMU_NOTIFY_EXCLUSIVE,
  MMU_NOTIFY_MIGRATE,
  MMU_NOTIFY_PROTECTION_PAGE,
  MMU_NOTIFY_PROTECTION_VMA,
  MMU_NOTIFY_RELEASE,
  MMU_NOTIFY_SOFT_DIRTY,
  MMU_NOTIFY_UNMAP,
  MmuIntervalNotifier,
  type MmuIntervalNotifierOps,
  type MmuNotifierEvent,
  type MmuNotifierRange,
  mmuIntervalNotifierInsert,
  mmuIntervalNotifierRemove,
  mmuIntervalReadBegin,
  mmuIntervalReadRetry,
  mmuIntervalSetSeq,
} from "./mm/mmu_notifier.js";
export {
  describePte,
  isDeviceExclusiveEntry,
  isDevicePrivateEntry,
  isMigrationEntry,
  isWritableDevicePrivateEntry,
  pteFrame,
  pteNone,
  ptePresent,
  pteWrite,
} from "./mm/pgtable.js";
export { type MmapOptions, Process, pageValue, SignalError } from "./process.js";
export { Lock, RwSem, WaitQueue } from "./sched/locks.js";
export { OBJ_NAMED, pageObject } from "./sched/objects.js";
export { DeadlockError, LivelockError, type Scheduler, ThreadFailure } from "./sched/scheduler.js";
export { BLOCKED, type Kfn, PREEMPT, type Thread } from "./sched/thread.js";
export {
  type DriverContext,
  type DriverLoader,
  type InvariantChecker,
  System,
  type SystemOptions,
} from "./system.js";

/** The highest page number of the user address space, plus one (an exclusive end). */
const VPN_LIMIT = TASK_SIZE / PAGE_SIZE;

/**
 * The page that holds a byte address (addr >> PAGE_SHIFT): the Vpn for HmmRange, a notifier or
 * mm.findVma, from an address a process uses. EINVAL for anything but an integer in [0, TASK_SIZE].
 */
export function vpnOf(address: number): Vpn {
  if (typeof address !== "number" || !Number.isSafeInteger(address) || address < 0 || address > TASK_SIZE)
    throw new KernelError(EINVAL, `vpnOf: ${String(address)} is not a user address`);
  return Math.floor(address / PAGE_SIZE) as Vpn;
}

/**
 * The first byte of a page (vpn << PAGE_SHIFT): the address for MigrateVmaArgs or a Process call,
 * from a Vpn. EINVAL for anything but an integer in [0, TASK_SIZE / PAGE_SIZE].
 */
export function addrOf(vpn: number): number {
  if (typeof vpn !== "number" || !Number.isSafeInteger(vpn) || vpn < 0 || vpn > VPN_LIMIT)
    throw new KernelError(EINVAL, `addrOf: ${String(vpn)} is not a user page number`);
  return vpn * PAGE_SIZE;
}

/**
 * alloc_page(GFP_HIGHUSER_MOVABLE) then lock_page, as a migrate_to_ram or an eviction does for each
 * destination page: a RAM page with one reference, locked by the calling thread (the page
 * migrate_vma_pages wants in dst), or -1 when RAM is exhausted (return VM_FAULT_OOM, or leave dst
 * empty and the page stays on the device). Contents are not cleared: copy into it. Call it from a
 * thread (inside a Kfn); EINVAL for a kernel that is not one, or outside a thread.
 */
export function allocLockedPage(kernel: Kernel): number {
  if (typeof kernel !== "object" || kernel === null || typeof kernel.ram?.allocPage !== "function")
    throw new KernelError(EINVAL, "allocLockedPage: not a kernel (pass ctx.kernel)");
  if (kernel.sched.currentOrNull() === null)
    throw new KernelError(EINVAL, "allocLockedPage: called outside a thread (run it inside a Kfn)");
  const pfn = kernel.ram.allocPage();
  // A page just allocated has no other holder, so the trylock cannot fail.
  if (pfn >= 0) trylockPage(kernel, pfn);
  return pfn;
}
