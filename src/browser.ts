/**
 * The library surface, for a browser: what `npm run build:browser` bundles into dist/browser/hmmsim.js.
 * It re-exports the friendly surface (System, Process, the device handles), the errors it throws and
 * the uapi constants its calls take. Everything it reaches must run without Node
 * (test/browser/core-imports.test.ts checks the import graph; scripts/build-browser.ts refuses a
 * Node builtin).
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
export { formatBytes, PAGE_SIZE, parseBytes, SizeError } from "./base/units.js";
export { Device, DeviceFile, type MigrateResult, type ReadResult } from "./device.js";
export {
  DmirrorLivelockError,
  type DmirrorResult,
  type DmirrorSwitches,
  HMM_DMIRROR_FLAG_FAIL_ALLOC,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE,
  HMM_DMIRROR_PROT_ERROR,
  HMM_DMIRROR_PROT_NONE,
  HMM_DMIRROR_PROT_PMD,
  HMM_DMIRROR_PROT_PUD,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_ZERO,
  TEST_HMM_SWITCHES,
} from "./drivers/dmirror.js";
export { PROTOCOL_VERSIONS, type ProtocolVersion } from "./mm/kernel.js";
export * from "./mm/mman.js";
export { NoBytesError, type StoreKind } from "./mm/page_store.js";
export { type MmapOptions, Process, pageValue, SignalError } from "./process.js";
export {
  type Chooser,
  DeadlockError,
  firstRunnable,
  LivelockError,
  replayChooser,
  ThreadFailure,
} from "./sched/scheduler.js";
export { type InvariantChecker, System, type SystemOptions, TmpFile } from "./system.js";
