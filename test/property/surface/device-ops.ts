/**
 * The dmirror device files against the reference (lib/test_hmm.c and src/device.ts, linux-mm tree):
 * - open (dmirror_fops_open) needs a live process (ESRCH otherwise) and a device that exists (ENODEV
 *   for any other minor; a minor is a path in C, so hostile values have no errno of their own there);
 * - a command, or a close, on a descriptor already closed (by close() or by its process's exit) is
 *   EBADF (fdget, close_fd) before anything else; the last descriptor's close releases the file
 *   (dmirror_fops_release: under modern every page of the device is evicted to RAM; no bytes change);
 * - dmirror_fops_unlocked_ioctl checks the u64s addr and npages (kernel-checks.ts ioctlCheck: EINVAL);
 *   READ and WRITE then vmalloc a bounce buffer of npages pages, which fails (ENOMEM) for more pages
 *   than RAM holds (__vmalloc_node_range); WRITE copies the caller's buffer in first (copy_from_user:
 *   EFAULT for one that is missing, not a Uint8Array or too short); READ, MIGRATE_TO_DEV and SNAPSHOT
 *   copy their result to the caller's buffer (cmd->ptr) only on success, and hmmsim checks that buffer
 *   up front (EFAULT) unless the mm has gone; byte buffers in the tokens store are EOPNOTSUPP;
 * - on a file whose mm has gone (a descriptor inherited by a child that outlived the opener):
 *   MIGRATE_TO_DEV, MIGRATE_TO_SYS and SNAPSHOT are EINVAL (mmget_not_zero); READ and WRITE never
 *   return in test_hmm.c (dmirror_fault returns 0 without an mm, and dmirror_read/dmirror_write retry
 *   for ever), which hmmsim reports as DmirrorLivelockError, or EINVAL with
 *   dmirror.faultFailsWithoutMm; FLAGS and RELEASE do not need the mm;
 * - READ and WRITE fault the range in through hmm_range_fault (mm/hmm.c): a page with no VMA or in a
 *   VMA without VM_READ is EFAULT (hmm_vma_walk_hole, hmm_vma_walk_test), a write to a VMA without
 *   VM_WRITE is EPERM (hmm_do_fault), in address order. READ returns the process's bytes. WRITE
 *   changes them, and when it fails it may already have written the pages its mirror held writable
 *   (dmirror_write: dmirror_do_write copies up to the first page not mirrored before faulting the
 *   rest), so a failed WRITE leaves some leading pages written and the others as they were;
 * - MIGRATE_TO_DEV and MIGRATE_TO_SYS walk the range VMA by VMA (vma_lookup, VM_READ) and stop with
 *   EINVAL at the first page outside one; they move pages but never change bytes. MIGRATE_TO_DEV
 *   reads the range back through the mirror (ENOENT for a page that did not move: shared, file and
 *   COW-shared pages stay, as do pinned ones) and copies it to cmd->ptr; MIGRATE_TO_SYS returns ENOMEM
 *   when an allocation fails (only after HMM_DMIRROR_FLAGS armed FAIL_ALLOC here);
 * - SNAPSHOT reports, without faulting, HMM_DMIRROR_PROT_ERROR for a page with no VMA or no VM_READ
 *   and one of the other codes (dmirror_mkentry) otherwise, never a writable one in a read-only VMA;
 *   without a caller buffer, more codes than RAM holds bytes are EFAULT (hmmsim cannot write them);
 * - HMM_DMIRROR_EXCLUSIVE (dmirror_exclusive, mm/rmap.c make_device_exclusive; modern only, EINVAL
 *   under 4.14, which had no such command; EINVAL once the mm has gone) takes each page in turn with
 *   GUP for write (FOLL_WRITE: EFAULT for a page with no VMA or no VM_WRITE, check_vma_flags; a private
 *   file or COW-shared page is copied first, as a write fault would) and refuses one that is not
 *   anonymous (EOPNOTSUPP: shared anonymous and file pages are shmem's); the first error ends it, the
 *   pages before it staying exclusive. On success it reads the range back as READ does (into cmd->ptr).
 *   It changes no byte. CHECK_EXCLUSIVE (dmirror_check_atomic; modern only) is EPERM while any page of
 *   the range is still mapped for atomic access (world.ts says when the reference knows), 0 otherwise;
 *   it needs no mm;
 * - the device-coherent device (minor 2, modern only) migrates as the private ones do; its pages stay
 *   mapped by present PTEs, which SNAPSHOT reports as HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL or _REMOTE
 *   (dmirror_mkentry: is_device_coherent_page);
 * - HMM_DMIRROR_FLAGS stores npages as the flags; HMM_DMIRROR_RELEASE (modern only, EINVAL under 4.14,
 *   whose test_hmm.c had no such command) evicts every chunk of the device and gives its memory back.
 */
import { EBADF, KernelError } from "../../../src/base/errno.js";
import type { DeviceFile, MigrateResult, ReadResult } from "../../../src/device.js";
import {
  HMM_DMIRROR_FLAG_FAIL_ALLOC,
  HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL,
  HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE,
  HMM_DMIRROR_PROT_ERROR,
  HMM_DMIRROR_PROT_NONE,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_ZERO,
} from "../../../src/drivers/dmirror.js";
import {
  isDeviceExclusiveEntry,
  isDevicePrivateEntry,
  isWritableDevicePrivateEntry,
  pteFrame,
} from "../../../src/mm/pgtable.js";
import type { Kfn } from "../../../src/sched/thread.js";
import { ioctlCheck, u64Field } from "./kernel-checks.js";
import { badLabel, withBad } from "./mm-ops.js";
import { frameAt, frameHolds } from "./observe.js";
import type { DeviceCommand, Op } from "./ops.js";
import { contents, firstWord, isPrivate, PAGE, pastEnd, pattern, type RefPage, writable } from "./pages.js";
import {
  addrOf,
  type Ctx,
  errorName,
  expectFailure,
  explainedByAllocation,
  fail,
  fitRange,
  hostileValue,
  LIVELOCK,
  OK,
  type Outcome,
  type Prepared,
  resolve,
  type ThreadForm,
  unlessSuccess,
  type Verdict,
} from "./semantics.js";
import type { RefFd, RefOpenFile, RefProcess, World } from "./world.js";

/** Open device files at most (HMMSIM_FUZZ_FDS, default 6): an open beyond it is skipped. */
export const FDS_MAX = Number(process.env.HMMSIM_FUZZ_FDS ?? 6);
/** The byte a caller's buffer is filled with before a command, to see whether the command wrote it. */
const SENTINEL = 0xa5;
/** The caller buffers this file made (prefilled with SENTINEL), as opposed to hostile ones. */
const sentinelBuffers = new WeakSet<Uint8Array>();

export function prepareOpen(ctx: Ctx, world: World, op: Extract<Op, { op: "open" }>): Prepared | null {
  const candidates = op.exited ? world.exited() : world.alive();
  if (candidates.length === 0 || world.openFiles().length >= FDS_MAX) return null;
  const rp = candidates[op.p % candidates.length]!;
  // Every device of this system (2 under 4.14, 3 under modern): other minors come as hostile values.
  const devices = ctx.system.devices.length;
  const device = op.device % devices;
  const args = withBad({ device: device as unknown }, op.bad);
  if (args === null) return null;
  const process = rp.process;
  const system = ctx.system;
  return {
    label: `pid ${process.pid}${op.exited ? " (exited)" : ""} open(/dev/hmm_dmirror${String(args.device)})${badLabel(op)}`,
    call: () => system.device(args.device as number).open(process),
    judge: (w, outcome) => {
      if (
        typeof args.device !== "number" ||
        !Number.isInteger(args.device) ||
        args.device < 0 ||
        args.device >= devices
      )
        return expectFailure(outcome, "ENODEV");
      if (op.exited) return expectFailure(outcome, "ESRCH");
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const fd = outcome.ok ? (outcome.value as DeviceFile) : null;
      const holder = w.byPid(process.pid);
      if (fd === null || !process.files.includes(fd))
        return fail("the new descriptor is not in the process's files");
      w.fds.push({
        fd,
        holder,
        file: {
          device,
          mirror: holder,
          released: false,
          failAllocArmed: false,
          handle: fd.file,
          atomic: new Set(),
          maybeAtomic: new Set(),
        },
        closed: false,
      });
      return OK;
    },
  };
}

export function prepareClose(_ctx: Ctx, world: World, op: Extract<Op, { op: "close" }>): Prepared | null {
  if (world.fds.length === 0) return null;
  const index = op.fd % world.fds.length;
  const fd = world.fds[index]!.fd;
  const label = `close(fd ${index}: dmirror ${fd.mirror.device.minor} fd ${fd.fd} of pid ${fd.process.pid})`;
  return {
    label,
    mm: fd.mirror.mm,
    evicts: true,
    call: () => fd.close(),
    thread: () => ({
      name: label,
      cpu: fd.process.cpu,
      body: (function* (): Kfn<number> {
        if (fd.closed) return -EBADF;
        yield* fd.closeFd();
        return 0;
      })(),
      decode: (result) =>
        result === 0 ? { ok: true, value: undefined } : { ok: false, error: new KernelError(EBADF, label) },
    }),
    judge: (w, outcome) => {
      const target = w.fdOf(fd);
      if (target.closed) return expectFailure(outcome, "EBADF");
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      w.closeFd(target);
      return OK;
    },
  };
}

/**
 * The pages of [vpn, vpn + count) (as indexes) that the mm maps to a read-only device-private entry
 * of this file's own device. hmm_range_fault reports such a page without faulting it, even for a write
 * (hmm_vma_handle_pte: "Don't fault in device private pages owned by the caller"), and dmirror_do_fault
 * then fails the WRITE with EFAULT (its WARN_ON(range->default_flags & HMM_PFN_WRITE)). Where the pages
 * are is not in the reference, so this looks at hmmsim's page table.
 */
function readOnlyOnDevice(ctx: Ctx, fd: DeviceFile, vpn: number, count: number): number[] {
  const k = ctx.system.kernel;
  const mm = fd.mirror.mm;
  if (mm.exited) return [];
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const pte = k.pt.read(mm.root, vpn + i);
    if (
      isDevicePrivateEntry(pte) &&
      !isWritableDevicePrivateEntry(pte) &&
      ctx.system.pagemaps.of(pteFrame(pte)).owner === fd.mirror.device
    )
      out.push(i);
  }
  return out;
}

/**
 * The first page of [vpn, vpn + npages) that hmm_range_fault cannot make valid for the access, with
 * its errno; pages in `onDevice` (readOnlyOnDevice) are reported without a fault, so never fail here.
 */
function firstFault(
  rp: RefProcess,
  vpn: number,
  npages: number,
  write: boolean,
  onDevice: readonly number[] = [],
): { index: number; errno: string } | null {
  for (let i = 0; i < npages; i++) {
    const page = rp.pages.get(vpn + i);
    if (page === undefined || (page.prot & 1) === 0) return { index: i, errno: "EFAULT" };
    if (write && (page.prot & 2) === 0 && !onDevice.includes(i)) return { index: i, errno: "EPERM" };
    // A zapped page of a device-file mapping: the fault is VM_FAULT_SIGBUS, EFAULT (hmm_vma_fault).
    // (Only a concurrent group gets here: sequential commands skip such pages.)
    if (page.gone) return { index: i, errno: "EFAULT" };
  }
  return null;
}

/**
 * The first page of the range outside a VMA with VM_READ, or in a device-file mapping, whose
 * VM_MIXEDMAP (VM_SPECIAL) migrate_vma_setup refuses (the migrations' EINVAL), or -1.
 */
function firstUnreadable(rp: RefProcess, vpn: number, npages: number): number {
  for (let i = 0; i < npages; i++) {
    const page = rp.pages.get(vpn + i);
    if (page === undefined || (page.prot & 1) === 0 || page.driver) return i;
  }
  return -1;
}

function pagesOf(rp: RefProcess, vpn: number, count: number): RefPage[] {
  return Array.from({ length: count }, (_, i) => rp.pages.get(vpn + i)!);
}

const CODES_READABLE = new Set([
  HMM_DMIRROR_PROT_NONE,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_ZERO | HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE | HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE | HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE | HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE | HMM_DMIRROR_PROT_WRITE,
]);

const DEVICE_CODES = new Set([
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE,
  HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL,
  HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE,
]);

/** Why a SNAPSHOT code cannot describe the page, or null. */
function badCode(page: RefPage | undefined, code: number): string | null {
  if (page === undefined || (page.prot & 1) === 0)
    return code === HMM_DMIRROR_PROT_ERROR
      ? null
      : `code 0x${code.toString(16)} for a page without VM_READ (HMM_DMIRROR_PROT_ERROR expected)`;
  if (!CODES_READABLE.has(code)) return `code 0x${code.toString(16)} is not one dmirror_mkentry gives here`;
  if ((code & HMM_DMIRROR_PROT_WRITE) !== 0 && (page.prot & 2) === 0)
    return `writable code 0x${code.toString(16)} in a read-only VMA`;
  const base = code & 0xf0;
  if (base === HMM_DMIRROR_PROT_ZERO && page.kind !== "anonPrivate")
    return `the zero page in a ${page.kind} mapping`;
  if (DEVICE_CODES.has(base) && !isPrivate(page.kind)) return `a device page in a ${page.kind} mapping`;
  return null;
}

/** What a command's buffer argument is: the data (WRITE) or the caller's result buffer (cmd->ptr). */
function bufferArg(op: Extract<Op, { op: "dev" }>, count: number): unknown {
  if (op.bad?.arg === "data") return hostileValue(op.bad.value, op.cmd === "snapshot" ? count : count * PAGE);
  if (op.cmd === "write") return pattern(op.seed, count * PAGE);
  if (!op.into) return undefined;
  const buffer = new Uint8Array(op.cmd === "snapshot" ? count : count * PAGE).fill(SENTINEL);
  sentinelBuffers.add(buffer);
  return buffer;
}

/** Whether an outstanding pin holds a page of device memory (a device-coherent page). */
function pinsDeviceMemory(ctx: Ctx, world: World): boolean {
  const pages = ctx.system.kernel.pages;
  return world.pins.some((pin) => !pin.unpinned && pin.pfns.some((pfn) => pages.isZoneDevice(pfn)));
}

/** Commands that take a caller buffer for their result. */
function takesInto(cmd: DeviceCommand): boolean {
  return cmd === "read" || cmd === "toDevice" || cmd === "snapshot" || cmd === "exclusive";
}

export function prepareDev(ctx: Ctx, world: World, op: Extract<Op, { op: "dev" }>): Prepared | null {
  if (world.fds.length === 0) return null;
  const index = op.fd % world.fds.length;
  const rf = world.fds[index]!;
  const owner = rf.file.mirror;
  const start = resolve(owner.pages, op.at);
  const count =
    op.cmd === "flags" ? HMM_DMIRROR_FLAG_FAIL_ALLOC : fitRange(owner.pages, op.at, start, op.pages);
  // A hostile buffer goes where the command has one; other commands take none.
  if (op.bad?.arg === "data" && op.cmd !== "write" && !takesInto(op.cmd)) return null;
  // HMM_DMIRROR_RELEASE waits in memunmap_pages (dmirror_device_remove_chunks) for every page of the
  // device, and a pinned device-coherent page fails the eviction's migration (its extra reference),
  // so it waits for the unpin, for ever here: test_hmm.c hangs the same way; not generated.
  if (op.cmd === "release" && pinsDeviceMemory(ctx, world)) return null;
  // setFlags(addr, flags = FAIL_ALLOC) and release(addr = 0, npages = 1): undefined is the default.
  if (
    op.bad?.value.kind === "undefined" &&
    ((op.bad.arg === "npages" && op.cmd === "flags") || op.cmd === "release")
  )
    return null;
  const args = withBad(
    { addr: start * PAGE, npages: count as unknown },
    op.bad?.arg === "data" ? null : op.bad,
  );
  if (args === null) return null;
  const buffer = bufferArg(op, count);
  if ((op.cmd === "read" || op.cmd === "write" || op.cmd === "exclusive") && !rf.closed && op.bad === null) {
    for (let i = 0; i < count; i++) {
      const page = owner.pages.get(start + i);
      if (page === undefined) break;
      if (pastEnd(page)) return null;
    }
  }
  const fd = rf.fd;
  const label = `fd ${index} (dmirror ${rf.file.device} fd ${fd.fd} of pid ${fd.process.pid}, mirroring pid ${owner.process.pid}${owner.alive ? "" : " (exited)"}${rf.closed ? ", closed" : ""}) ${commandName(op.cmd)}(${addrOf(start)}, ${String(args.npages)}${op.cmd === "flags" ? "" : " pages"}${buffer instanceof Uint8Array && op.cmd !== "write" ? ", into a buffer" : ""})${badLabel(op)}`;
  const call = (): unknown => {
    const addr = args.addr as number;
    const npages = args.npages as number;
    const into = buffer as Uint8Array | undefined;
    switch (op.cmd) {
      case "read":
        return into === undefined ? fd.read(addr, npages) : fd.read(addr, npages, into);
      case "write":
        return fd.write(addr, npages, buffer as Uint8Array);
      case "toDevice":
        return into === undefined ? fd.migrateToDevice(addr, npages) : fd.migrateToDevice(addr, npages, into);
      case "toSystem":
        return fd.migrateToSystem(addr, npages);
      case "snapshot":
        return into === undefined ? fd.snapshot(addr, npages) : fd.snapshot(addr, npages, into);
      case "flags":
        return fd.setFlags(addr, npages);
      case "release":
        return fd.release(addr, npages);
      case "exclusive":
        return into === undefined ? fd.exclusive(addr, npages) : fd.exclusive(addr, npages, into);
      case "checkExclusive":
        return fd.checkExclusive(addr, npages);
    }
  };
  const readOnlyBefore = op.cmd === "write" ? readOnlyOnDevice(ctx, fd, start, count) : [];
  // The descriptor as the command's fdget finds it: in a group, at the thread's start.
  const openAtStart = !rf.closed;
  const inherited = rf.holder !== owner;
  const prepared: Prepared = {
    label,
    mm: fd.mirror.mm,
    ...(inherited ? { tag: owner.alive ? "(inherited fd)" : "(inherited fd, mm gone)" } : {}),
    ...(op.cmd === "release" ? { evicts: true } : {}),
    call,
    judge: (w, outcome) => {
      // In a group where another member acts on this mm (a MIGRATE_TO_DEV of COW-shared pages, then a
      // CPU fault bringing them back), a page may have been a read-only entry of this device only
      // while the WRITE's hmm_range_fault looked: neither before nor after shows it, so any private
      // page may be one.
      const racedOnDevice =
        op.cmd === "write" && ctx.inGroup() && ctx.racing(fd.mirror.mm)
          ? Array.from({ length: count }, (_, i) => i).filter((i) => {
              const page = w.fdOf(fd).file.mirror.pages.get(start + i);
              return page !== undefined && isPrivate(page.kind);
            })
          : [];
      const readOnly =
        op.cmd === "write"
          ? [...readOnlyBefore, ...readOnlyOnDevice(ctx, fd, start, count), ...racedOnDevice]
          : [];
      return judgeDev(ctx, w, w.fdOf(fd), op.cmd, args, buffer, outcome, readOnly, openAtStart);
    },
  };
  // The thread form skips the ioctl's argument checks: only well-formed commands get one, and READ
  // and WRITE only on a live mm (the livelock is the sequential mode's to check).
  const livelocks = (op.cmd === "read" || op.cmd === "write") && !owner.alive;
  // A caller buffer in the tokens store is refused up front (EOPNOTSUPP), which the thread skips.
  const bufferChecked = ctx.store === "bytes" || buffer === undefined || op.cmd === "snapshot";
  // The device-exclusive commands are judged in sequence only (their atomic state is followed there).
  const sequentialOnly = op.cmd === "flags" || op.cmd === "exclusive" || op.cmd === "checkExclusive";
  if (op.bad === null && !sequentialOnly && count > 0 && !livelocks && bufferChecked)
    prepared.thread = () => threadForm(ctx, fd, op.cmd, start, count, buffer, label);
  return prepared;
}

function commandName(cmd: DeviceCommand): string {
  return {
    read: "HMM_DMIRROR_READ",
    write: "HMM_DMIRROR_WRITE",
    toDevice: "HMM_DMIRROR_MIGRATE_TO_DEV",
    toSystem: "HMM_DMIRROR_MIGRATE_TO_SYS",
    snapshot: "HMM_DMIRROR_SNAPSHOT",
    flags: "HMM_DMIRROR_FLAGS",
    release: "HMM_DMIRROR_RELEASE",
    exclusive: "HMM_DMIRROR_EXCLUSIVE",
    checkExclusive: "HMM_DMIRROR_CHECK_EXCLUSIVE",
  }[cmd];
}

/** The command as a kernel thread (the dmirror generators), its result read as DeviceFile reports it. */
function threadForm(
  ctx: Ctx,
  fd: DeviceFile,
  cmd: DeviceCommand,
  vpn: number,
  npages: number,
  buffer: unknown,
  label: string,
): ThreadForm {
  const mirror = fd.mirror;
  const bytes = ctx.store === "bytes" ? new Uint8Array(npages * PAGE) : null;
  const words = new Uint32Array(npages);
  // The caller's buffer (cmd->ptr): MIGRATE_TO_DEV and SNAPSHOT write it as the command ends, READ's
  // result is copied to it afterwards, on success only, as DeviceFile.read does.
  const into = buffer instanceof Uint8Array ? buffer : null;
  const codes = cmd === "snapshot" && into !== null ? into : new Uint8Array(npages);
  const command = (): Kfn<unknown> => {
    switch (cmd) {
      case "read":
        return mirror.cmdRead(vpn, npages, bytes, words);
      case "write":
        return mirror.cmdWrite(vpn, npages, buffer as Uint8Array);
      case "toDevice":
        return mirror.cmdMigrateToDevice(vpn, npages, into);
      case "toSystem":
        return mirror.cmdMigrateToSystem(vpn, npages);
      case "release":
        return mirror.cmdRelease();
      default:
        return mirror.cmdSnapshot(vpn, npages, codes);
    }
  };
  return {
    name: label,
    cpu: fd.process.cpu,
    body: (function* (): Kfn<unknown> {
      // The ioctl's fdget takes a reference on the file (a close meanwhile only drops the descriptor),
      // and its fdput drops it, releasing the file if that close was the last.
      if (fd.closed) return -EBADF;
      fd.file.get();
      const ret = yield* command();
      yield* fd.file.put();
      return ret;
    })(),
    decode: (result) => {
      if (typeof result === "number") return { ok: false, error: new KernelError(-result, label) };
      if (cmd === "read") {
        if (into !== null && bytes !== null) into.set(bytes);
        return { ok: true, value: { ...(result as object), data: into ?? bytes, words } };
      }
      if (cmd === "toDevice") return { ok: true, value: { ...(result as object), data: into } };
      if (cmd === "snapshot") return { ok: true, value: codes };
      if (cmd === "release") return { ok: true, value: undefined };
      return { ok: true, value: result };
    },
  };
}

/** The caller's buffer must still hold the sentinel (a failed command writes no result). */
function untouched(buffer: unknown): Verdict | null {
  if (!(buffer instanceof Uint8Array) || !sentinelBuffers.has(buffer)) return null;
  for (let i = 0; i < buffer.length; i++)
    if (buffer[i] !== SENTINEL) return fail(`the command failed but wrote byte ${i} of the caller's buffer`);
  return null;
}

/** A failure with `errno` that left the caller's buffer as it was. */
function failsWith(outcome: Outcome, errno: string, buffer: unknown, unchanged = true): Verdict {
  const verdict = expectFailure(outcome, errno, unchanged);
  return verdict.ok ? (untouched(buffer) ?? verdict) : verdict;
}

function judgeDev(
  ctx: Ctx,
  world: World,
  rf: RefFd,
  cmd: DeviceCommand,
  args: Record<string, unknown>,
  buffer: unknown,
  outcome: Outcome,
  readOnly: readonly number[],
  openAtStart: boolean,
): Verdict {
  // fdget takes the file at the command's start and holds it to the end, so in a group a command
  // whose descriptor was open when the group began may have got it before a racing close (and then
  // acts, its effects coming after the close in any serial order), or after it (EBADF).
  const ebadf = !outcome.ok && errorName(outcome.error) === "EBADF";
  const gotItFirst = ctx.inGroup() && openAtStart && !ebadf;
  if (rf.closed && !gotItFirst) return failsWith(outcome, "EBADF", buffer);
  const addr = u64Field(args.addr);
  const npagesIn = u64Field(args.npages);
  if (addr === null || npagesIn === null) return failsWith(outcome, "EINVAL", buffer);
  const checked = ioctlCheck(addr, npagesIn);
  if (checked.errno !== null) return failsWith(outcome, checked.errno, buffer);
  const file = rf.file;
  const owner = file.mirror;
  const alive = owner.alive;
  const { vpn, npages } = checked;
  const bytes = ctx.store === "bytes";
  const bounceFits = npages <= ctx.ramPages;
  const hasInto = buffer !== undefined && takesInto(cmd);
  const intoFits = (size: number) => buffer instanceof Uint8Array && buffer.length >= size;
  switch (cmd) {
    case "flags": {
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      file.failAllocArmed = npagesIn % 2n === 1n;
      return OK;
    }
    case "release":
      if (ctx.protocol !== "modern") return expectFailure(outcome, "EINVAL");
      return unlessSuccess(outcome) ?? OK;
    case "exclusive": {
      if (hasInto && !bytes) return failsWith(outcome, "EOPNOTSUPP", buffer);
      if (hasInto && alive && !intoFits(npages * PAGE)) return failsWith(outcome, "EFAULT", buffer);
      if (ctx.protocol !== "modern" || !alive) return failsWith(outcome, "EINVAL", buffer);
      return judgeExclusive(ctx, world, file, vpn, npages, hasInto ? buffer : undefined, outcome);
    }
    case "checkExclusive": {
      if (ctx.protocol !== "modern") return expectFailure(outcome, "EINVAL");
      // The sets hold a few pages; a hostile npages may span most of user space.
      const inRange = (page: number) => page >= vpn && page < vpn + npages;
      const sure = [...file.atomic].some(inRange);
      const maybe = [...file.maybeAtomic].some(inRange);
      if (sure) return expectFailure(outcome, "EPERM");
      if (maybe && !outcome.ok) return expectFailure(outcome, "EPERM");
      return unlessSuccess(outcome) ?? OK;
    }
    case "read":
      if (!bounceFits) return failsWith(outcome, "ENOMEM", buffer);
      if (hasInto && !bytes) return failsWith(outcome, "EOPNOTSUPP", buffer);
      if (hasInto && alive && !intoFits(npages * PAGE)) return failsWith(outcome, "EFAULT", buffer);
      if (!alive) return failsWith(outcome, ctx.faultFailsWithoutMm ? "EINVAL" : LIVELOCK, buffer);
      return judgeRead(ctx, world, owner, vpn, npages, buffer, outcome);
    case "write":
      if (!bounceFits) return expectFailure(outcome, "ENOMEM");
      if (!bytes) return expectFailure(outcome, "EOPNOTSUPP");
      if (!intoFits(npages * PAGE)) return expectFailure(outcome, "EFAULT");
      if (!alive) return expectFailure(outcome, ctx.faultFailsWithoutMm ? "EINVAL" : LIVELOCK);
      return judgeWrite(ctx, world, owner, vpn, npages, buffer as Uint8Array, outcome, readOnly);
    case "toDevice": {
      if (hasInto && !bytes) return failsWith(outcome, "EOPNOTSUPP", buffer);
      if (hasInto && alive && !intoFits(npages * PAGE)) return failsWith(outcome, "EFAULT", buffer);
      if (!alive) return failsWith(outcome, "EINVAL", buffer);
      const mustMove = !owner.migrationMayFail && !file.failAllocArmed && !ctx.racing(owner.process.mm);
      owner.migrationMayFail = true;
      if (firstUnreadable(owner, vpn, npages) >= 0) return failsWith(outcome, "EINVAL", buffer, false);
      if (!bounceFits) return failsWith(outcome, "ENOMEM", buffer, false);
      if (!outcome.ok) {
        // A first migration of private anonymous pages of a process that never forked, pinned or
        // migrated has nothing that can keep a page behind.
        if (mustMove && pagesOf(owner, vpn, npages).every((page) => page.kind === "anonPrivate"))
          return fail(
            `every page must move (private anonymous, never forked, pinned or migrated), got ${errorName(outcome.error)}`,
          );
        return failsWith(outcome, "ENOENT", buffer, false);
      }
      const cpages = judgeCpages(outcome, npages, "exactly");
      if (!cpages.ok) return cpages;
      const result = outcome.value as MigrateResult;
      if (hasInto) {
        if (result.data !== buffer) return fail("MIGRATE_TO_DEV returned another buffer than the caller's");
        const wrong = pagesDiffer(result.data as Uint8Array, owner, vpn, npages);
        if (wrong !== null) return fail(`the read-back: ${wrong}`);
      } else if (result.data !== null && !(ctx.store === "bytes" && result.data instanceof Uint8Array)) {
        return fail(`MIGRATE_TO_DEV without a buffer returned data ${String(result.data)}`);
      }
      return OK;
    }
    case "toSystem": {
      if (!alive) return expectFailure(outcome, "EINVAL");
      // dmirror_migrate_to_system goes chunk by chunk (a VMA's part, 512 pages at most): a failed
      // allocation ends it with ENOMEM in the chunk it hit, before a hole further on is reached.
      if (!outcome.ok && file.failAllocArmed && errorName(outcome.error) === "ENOMEM")
        return expectFailure(outcome, "ENOMEM", false);
      if (firstUnreadable(owner, vpn, npages) >= 0) return expectFailure(outcome, "EINVAL", false);
      return judgeCpages(outcome, npages, "at most");
    }
    case "snapshot": {
      if (hasInto) {
        if (alive && !intoFits(npages)) return failsWith(outcome, "EFAULT", buffer);
      } else if (npages > ctx.ramPages * PAGE) {
        return expectFailure(outcome, "EFAULT");
      }
      if (!alive) return failsWith(outcome, "EINVAL", buffer);
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const codes = outcome.ok ? outcome.value : null;
      if (hasInto && codes !== buffer) return fail("SNAPSHOT returned another buffer than the caller's");
      // Its own buffer holds exactly the codes; a caller's may be longer, past the codes untouched.
      if (!(codes instanceof Uint8Array) || codes.length < npages || (!hasInto && codes.length !== npages))
        return fail(
          `SNAPSHOT returned ${codes instanceof Uint8Array ? `${codes.length} codes` : String(codes)}`,
        );
      if (sentinelBuffers.has(codes) && codes.subarray(npages).some((byte) => byte !== SENTINEL))
        return fail("SNAPSHOT wrote past its codes in the caller's buffer");
      for (let i = 0; i < npages; i++) {
        const why = badCode(owner.pages.get(vpn + i), codes[i]!);
        if (why !== null) return fail(`page ${i}: ${why}`);
      }
      return OK;
    }
  }
}

/**
 * dmirror_exclusive over [vpn, vpn + npages) of the file's mm: see the header. Pages it made exclusive
 * (all on success, those before the failing one otherwise) have their own copy now (GUP's write fault)
 * and are mapped by this file's device for atomic access.
 */
function judgeExclusive(
  ctx: Ctx,
  world: World,
  file: RefOpenFile,
  vpn: number,
  npages: number,
  buffer: unknown,
  outcome: Outcome,
): Verdict {
  const owner = file.mirror;
  owner.migrationMayFail = true;
  world.blurAtomic();
  let failing: { index: number; errno: string } | null = null;
  for (let i = 0; i < npages && failing === null; i++) {
    const page = owner.pages.get(vpn + i);
    if (page === undefined || (page.prot & 2) === 0) failing = { index: i, errno: "EFAULT" };
    else if (!isPrivate(page.kind)) failing = { index: i, errno: "EOPNOTSUPP" };
  }
  const made = (count: number) => {
    for (let i = 0; i < count; i++) {
      writable(owner.pages.get(vpn + i)!);
      file.atomic.add(vpn + i);
      file.maybeAtomic.add(vpn + i);
    }
  };
  if (
    failing?.errno !== errorName(outcome.ok ? null : outcome.error) &&
    explainedByAllocation(ctx, world, "gup", outcome)
  ) {
    // A page brought back from a device failed its allocation (before any page that fails GUP's
    // checks): the pages before it are exclusive and have their own copy, which the reference learns
    // from hmmsim's page table.
    const k = ctx.system.kernel;
    for (let i = 0; i < (failing?.index ?? npages); i++) {
      if (!isDeviceExclusiveEntry(k.pt.read(owner.process.mm.root, vpn + i))) break;
      file.maybeAtomic.add(vpn + i);
      writable(owner.pages.get(vpn + i)!);
    }
    return untouched(buffer) ?? OK;
  }
  if (failing !== null) {
    const verdict = failsWith(outcome, failing.errno, buffer, false);
    if (verdict.ok) made(failing.index);
    return verdict;
  }
  const cpages = judgeCpages(outcome, npages, "exactly");
  if (!cpages.ok) return cpages;
  made(npages);
  if (buffer !== undefined) {
    const result = outcome.ok ? (outcome.value as MigrateResult) : null;
    if (result?.data !== buffer)
      return fail("HMM_DMIRROR_EXCLUSIVE returned another buffer than the caller's");
    const wrong = pagesDiffer(buffer as Uint8Array, owner, vpn, npages);
    if (wrong !== null) return fail(`the read-back: ${wrong}`);
  }
  return OK;
}

function judgeCpages(outcome: Outcome, npages: number, how: "exactly" | "at most"): Verdict {
  const failed = unlessSuccess(outcome);
  if (failed !== null) return failed;
  const cpages = outcome.ok ? (outcome.value as { cpages?: unknown }).cpages : undefined;
  const fits =
    typeof cpages === "number" && (how === "exactly" ? cpages === npages : cpages >= 0 && cpages <= npages);
  return fits ? OK : fail(`cpages ${String(cpages)}, expected ${how} ${npages}`);
}

/** The first page of `data` (npages whole pages) that differs from the process's, or null. */
function pagesDiffer(data: Uint8Array, owner: RefProcess, vpn: number, npages: number): string | null {
  for (let i = 0; i < npages; i++) {
    const want = contents(owner.pages.get(vpn + i)!);
    const got = data.subarray(i * PAGE, (i + 1) * PAGE);
    if (
      !Buffer.from(got.buffer, got.byteOffset, PAGE).equals(Buffer.from(want.buffer, want.byteOffset, PAGE))
    )
      return `page ${i}'s bytes differ from the reference's (first word 0x${firstWord(want).toString(16)})`;
  }
  return null;
}

/** dmirror_read: the process's bytes (bytes store) or each page's first word (tokens). */
function judgeRead(
  ctx: Ctx,
  world: World,
  owner: RefProcess,
  vpn: number,
  npages: number,
  buffer: unknown,
  outcome: Outcome,
): Verdict {
  const fault = firstFault(owner, vpn, npages, false);
  if (fault !== null) return failsWith(outcome, fault.errno, buffer, false);
  if (explainedByAllocation(ctx, world, "hmm", outcome)) return untouched(buffer) ?? OK;
  const failed = unlessSuccess(outcome);
  if (failed !== null) return failed;
  const result = (outcome.ok ? outcome.value : null) as ReadResult | null;
  if (result === null || result.cpages !== npages)
    return fail(`cpages ${String(result?.cpages)}, expected ${npages}`);
  if (buffer !== undefined && result.data !== buffer)
    return fail("READ returned another buffer than the caller's");
  for (let i = 0; i < npages; i++) {
    const want = contents(owner.pages.get(vpn + i)!);
    if (result.words[i] !== firstWord(want))
      return fail(
        `page ${i} read 0x${result.words[i]!.toString(16)}, the reference says 0x${firstWord(want).toString(16)}`,
      );
  }
  if (ctx.store === "bytes") {
    const wrong = pagesDiffer(result.data!, owner, vpn, npages);
    if (wrong !== null) return fail(wrong);
  } else if (result.data !== null) {
    return fail("READ returned bytes in the tokens store");
  }
  return OK;
}

/**
 * dmirror_write: on success every page holds the data; on failure, some leading pages (those mirrored
 * writable before the command, never the page that failed or any after it) hold it and the rest are
 * as they were. Which pages were mirrored is not in the reference: it reads them back to learn.
 */
function judgeWrite(
  ctx: Ctx,
  world: World,
  owner: RefProcess,
  vpn: number,
  count: number,
  data: Uint8Array,
  outcome: Outcome,
  readOnly: readonly number[],
): Verdict {
  const pageData = (i: number) => data.subarray(i * PAGE, (i + 1) * PAGE);
  // hmm_range_fault fails at a page it cannot fault; failing that, a read-only page on this device
  // fails dmirror_do_fault (readOnlyOnDevice). Either way the leading pages may have been written.
  // Where pages were is known only around the call (concurrent operations may move them), so a
  // failure may be explained with or without them.
  const readOnlyFirst = readOnly.length === 0 ? null : Math.min(...readOnly);
  const plain = firstFault(owner, vpn, count, true);
  const withDevice =
    firstFault(owner, vpn, count, true, readOnly) ??
    (readOnlyFirst === null ? null : { index: readOnlyFirst, errno: "EFAULT" });
  const got = outcome.ok ? null : errorName(outcome.error);
  const allocationFailed = explainedByAllocation(ctx, world, "hmm", outcome);
  const fault = outcome.ok
    ? plain
    : withDevice !== null && withDevice.errno === got
      ? withDevice
      : (plain ?? withDevice ?? (allocationFailed ? { index: count, errno: got! } : null));
  if (fault !== null) {
    const verdict = expectFailure(outcome, fault.errno, false);
    if (!verdict.ok) return verdict;
    const system = ctx.system;
    for (let i = 0; i < fault.index; i++) {
      if (!frameHolds(system, frameAt(system, owner.process.mm, vpn + i), pageData(i))) break;
      writable(owner.pages.get(vpn + i)!).set(pageData(i));
    }
    return OK;
  }
  const failed = unlessSuccess(outcome);
  if (failed !== null) return failed;
  for (let i = 0; i < count; i++) writable(owner.pages.get(vpn + i)!).set(pageData(i));
  const cpages = outcome.ok ? (outcome.value as { cpages?: unknown }).cpages : undefined;
  return cpages === count ? OK : fail(`cpages ${String(cpages)}, expected ${count}`);
}
