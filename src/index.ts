/**
 * hmmsim as a library: `import { System } from "hmmsim"`. This is what the README's library section
 * uses: the simulated machine (System) and its processes, devices and tmpfs files, the errors every
 * failure is reported with, the errno numbers, and the uapi constants (mmap/mprotect/madvise/mremap
 * flags, the dmirror snapshot and flag values).
 *
 * The kernel-level API for driver prototyping is in subpaths, one per source file as the README names
 * them: `hmmsim/mm/migrate_device`, `hmmsim/mm/hmm`, `hmmsim/mm/mmu_notifier`, `hmmsim/mm/memremap`,
 * `hmmsim/drivers/*`, `hmmsim/sched/*`, `hmmsim/base/*`; the concurrency explorer is `hmmsim/explore`.
 */
export {
  EACCES,
  EAGAIN,
  EBADF,
  EBUSY,
  EEXIST,
  EFAULT,
  EFBIG,
  EINTR,
  EINVAL,
  EIO,
  ENODEV,
  ENOENT,
  ENOMEM,
  ENOSPC,
  ENOTTY,
  EOPNOTSUPP,
  EOVERFLOW,
  EPERM,
  ESRCH,
  errnoName,
  KernelError,
} from "./base/errno.js";
export { formatBytes, PAGE_SIZE, parseBytes, SizeError, TASK_SIZE } from "./base/units.js";
export { Device, DeviceFile, type MigrateResult, type ReadResult } from "./device.js";
export {
  DmirrorLivelockError,
  type DmirrorResult,
  type DmirrorSwitches,
  HMM_DMIRROR_FLAG_FAIL_ALLOC,
  HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL,
  HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE,
  HMM_DMIRROR_PROT_ERROR,
  HMM_DMIRROR_PROT_NONE,
  HMM_DMIRROR_PROT_PMD,
  HMM_DMIRROR_PROT_PUD,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_ZERO,
} from "./drivers/dmirror.js";
export {
  FOLL_LONGTERM,
  FOLL_WRITE,
  GUP_BASIC_TEST,
  GUP_FAST_BENCHMARK,
  type GupTestArgs,
  GupTestFile,
  PIN_BASIC_TEST,
  PIN_FAST_BENCHMARK,
  PIN_LONGTERM_BENCHMARK,
} from "./gup_test.js";
export { PROTOCOL_VERSIONS, type ProtocolVersion } from "./mm/kernel.js";
export type { FaultPathSwitches } from "./mm/memory.js";
export type { MigrateSwitches } from "./mm/migrate_pfn.js";
export * from "./mm/mman.js";
export { NoBytesError, type StoreKind } from "./mm/page_store.js";
export { type MmapOptions, Process, pageValue, SignalError } from "./process.js";
export { type Chooser, DeadlockError, LivelockError, ThreadFailure } from "./sched/scheduler.js";
export {
  type DeviceSpec,
  type DriverContext,
  type DriverLoader,
  type InvariantChecker,
  System,
  type SystemOptions,
  TmpFile,
  testHmmDevices,
} from "./system.js";
