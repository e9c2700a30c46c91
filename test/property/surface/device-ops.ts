/**
 * The dmirror device files against the reference (lib/test_hmm.c, linux-mm tree):
 * - a command on a closed file, or on a file whose process exited (exit_files closed it), is EBADF
 *   (fs/ioctl.c: no such fd), before its arguments are looked at; a second close is EBADF
 *   (close_fd);
 * - dmirror_fops_unlocked_ioctl checks the address and size (kernel-checks.ts ioctlCheck); READ and
 *   WRITE then vmalloc a bounce buffer of the whole size (ENOMEM for sizes no machine has) and WRITE
 *   copies the caller's buffer into it (copy_from_user: EFAULT for a missing or short buffer);
 * - READ and WRITE fault the range in through hmm_range_fault (mm/hmm.c): a page with no VMA or in a
 *   VMA without VM_READ is EFAULT (hmm_vma_walk_hole, hmm_vma_walk_test), a write to a VMA without
 *   VM_WRITE is EPERM (hmm_do_fault), in address order. READ returns the process's bytes. WRITE
 *   changes them, and when it fails it may already have written the pages its mirror held writable
 *   (dmirror_write: dmirror_do_write copies up to the first page not mirrored before faulting the
 *   rest), so a failed WRITE leaves some leading pages written and the others as they were;
 * - MIGRATE_TO_DEV and MIGRATE_TO_SYS walk the range VMA by VMA (vma_lookup, VM_READ) and stop with
 *   EINVAL at the first page outside one; they move pages but never change bytes. MIGRATE_TO_DEV
 *   reads the range back through the mirror (ENOENT for a page that did not move: shared, file and
 *   COW-shared pages stay, as do pinned ones); MIGRATE_TO_SYS returns ENOMEM when an allocation fails
 *   (only after HMM_DMIRROR_FLAGS armed FAIL_ALLOC here);
 * - SNAPSHOT reports, without faulting, HMM_DMIRROR_PROT_ERROR for a page with no VMA or no VM_READ
 *   and one of the other codes (dmirror_mkentry) otherwise, never a writable one in a read-only VMA;
 * - HMM_DMIRROR_FLAGS stores npages as the flags.
 */
import { EBADF, KernelError } from "../../../src/base/errno.js";
import type { DeviceFile, ReadResult } from "../../../src/device.js";
import {
  HMM_DMIRROR_FLAG_FAIL_ALLOC,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE,
  HMM_DMIRROR_PROT_ERROR,
  HMM_DMIRROR_PROT_NONE,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_ZERO,
} from "../../../src/drivers/dmirror.js";
import { isDevicePrivateEntry, isWritableDevicePrivateEntry, pteFrame } from "../../../src/mm/pgtable.js";
import type { Kfn } from "../../../src/sched/thread.js";
import { asUlong, bounceFails, ioctlCheck } from "./kernel-checks.js";
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
  OK,
  type Outcome,
  type Prepared,
  resolve,
  type ThreadForm,
  unlessSuccess,
  type Verdict,
} from "./semantics.js";
import type { RefFd, RefProcess, World } from "./world.js";

/** Open device files at most (HMMSIM_FUZZ_FDS, default 6): an open beyond it is skipped. */
export const FDS_MAX = Number(process.env.HMMSIM_FUZZ_FDS ?? 6);

export function prepareOpen(ctx: Ctx, world: World, op: Extract<Op, { op: "open" }>): Prepared | null {
  const candidates = op.exited ? world.exited() : world.alive();
  if (candidates.length === 0 || world.fds.length >= FDS_MAX) return null;
  const rp = candidates[op.p % candidates.length]!;
  const args = withBad({ device: op.device as unknown }, op.bad, ["device"]);
  if (args === null) return null;
  const process = rp.process;
  const system = ctx.system;
  return {
    label: `pid ${process.pid}${op.exited ? " (exited)" : ""} open(/dev/hmm_dmirror${String(args.device)})${badLabel(op)}`,
    call: () => system.device(args.device as number).open(process),
    judge: (w, outcome) => {
      // No C counterpart: an exited process opens nothing, and a device minor is a path, not a number.
      if (op.exited || op.bad !== null) return expectFailure(outcome, "any");
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const fd = outcome.ok ? (outcome.value as DeviceFile) : null;
      w.fds.push({
        fd: fd!,
        device: op.device,
        owner: w.byPid(process.pid),
        closed: false,
        failAllocArmed: false,
      });
      return OK;
    },
  };
}

export function prepareClose(_ctx: Ctx, world: World, op: Extract<Op, { op: "close" }>): Prepared | null {
  if (world.fds.length === 0) return null;
  const index = op.fd % world.fds.length;
  const fd = world.fds[index]!.fd;
  const label = `close(fd ${index}: dmirror ${fd.mirror.device.minor} of pid ${fd.process.pid})`;
  return {
    label,
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
      target.closed = true;
      return OK;
    },
  };
}

/**
 * The pages of [vpn, vpn + count) (as indexes) that the process maps to a read-only device-private
 * entry of this file's own device. hmm_range_fault reports such a page without faulting it, even for
 * a write (hmm_vma_handle_pte: "Don't fault in device private pages owned by the caller"), and
 * dmirror_do_fault then fails the WRITE with EFAULT (its WARN_ON(range->default_flags &
 * HMM_PFN_WRITE)). Where the pages are is not in the reference, so this looks at hmmsim's page table.
 */
function readOnlyOnDevice(ctx: Ctx, fd: DeviceFile, vpn: number, count: number): number[] {
  const k = ctx.system.kernel;
  const mm = fd.process.mm;
  if (fd.process.exited) return [];
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
  npages: bigint,
  write: boolean,
  onDevice: readonly number[] = [],
): { index: number; errno: string } | null {
  for (let i = 0; BigInt(i) < npages; i++) {
    const page = rp.pages.get(vpn + i);
    if (page === undefined || (page.prot & 1) === 0) return { index: i, errno: "EFAULT" };
    if (write && (page.prot & 2) === 0 && !onDevice.includes(i)) return { index: i, errno: "EPERM" };
  }
  return null;
}

/** The first page of the range outside a VMA with VM_READ (the migrations' EINVAL), or -1. */
function firstUnreadable(rp: RefProcess, vpn: number, npages: bigint): number {
  for (let i = 0; BigInt(i) < npages; i++) {
    const page = rp.pages.get(vpn + i);
    if (page === undefined || (page.prot & 1) === 0) return i;
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
  if (
    (base === HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL || base === HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE) &&
    !isPrivate(page.kind)
  )
    return `a device page in a ${page.kind} mapping`;
  return null;
}

/** SNAPSHOT sizes beyond this have no C counterpart worth the name (a user buffer of that many bytes). */
const SNAPSHOT_PAGES_MAX = 2n ** 20n;

export function prepareDev(ctx: Ctx, world: World, op: Extract<Op, { op: "dev" }>): Prepared | null {
  if (world.fds.length === 0) return null;
  const index = op.fd % world.fds.length;
  const rf = world.fds[index]!;
  const owner = rf.owner;
  const start = resolve(owner.pages, op.at);
  const count =
    op.cmd === "flags" ? HMM_DMIRROR_FLAG_FAIL_ALLOC : fitRange(owner.pages, op.at, start, op.pages);
  const data = pattern(op.seed, count * PAGE);
  const args0 = { addr: start * PAGE, npages: count as unknown, data: data as unknown };
  const args =
    op.bad?.arg === "data"
      ? { ...args0, data: hostileValue(op.bad.value, count * PAGE) }
      : withBad(args0, op.bad);
  if (args === null) return null;
  // setFlags(addr, flags = HMM_DMIRROR_FLAG_FAIL_ALLOC): undefined is the default, not a hostile value.
  if (op.cmd === "flags" && op.bad?.arg === "npages" && op.bad.value.kind === "undefined") return null;
  if ((op.cmd === "read" || op.cmd === "write") && !rf.closed && op.bad === null) {
    for (let i = 0; i < count; i++) {
      const page = owner.pages.get(start + i);
      if (page === undefined) break;
      if (pastEnd(page)) return null;
    }
  }
  const fd = rf.fd;
  const label = `fd ${index} (dmirror ${rf.device} of pid ${owner.process.pid}${rf.closed ? ", closed" : ""}) ${commandName(op.cmd)}(${addrOf(start)}, ${String(args.npages)}${op.cmd === "flags" ? "" : " pages"})${badLabel(op)}`;
  const call = (): unknown => {
    const addr = args.addr as number;
    const npages = args.npages as number;
    switch (op.cmd) {
      case "read":
        return fd.read(addr, npages);
      case "write":
        return fd.write(addr, npages, args.data as Uint8Array);
      case "toDevice":
        return fd.migrateToDevice(addr, npages);
      case "toSystem":
        return fd.migrateToSystem(addr, npages);
      case "snapshot":
        return fd.snapshot(addr, npages);
      case "flags":
        return fd.setFlags(addr, npages);
    }
  };
  const readOnlyBefore = op.cmd === "write" ? readOnlyOnDevice(ctx, fd, start, count) : [];
  const prepared: Prepared = {
    label,
    call,
    judge: (w, outcome) => {
      const readOnly =
        op.cmd === "write" ? [...readOnlyBefore, ...readOnlyOnDevice(ctx, fd, start, count)] : [];
      return judgeDev(ctx, w, w.fdOf(fd), op.cmd, args, outcome, readOnly);
    },
  };
  // The thread form skips the ioctl's argument checks: only well-formed commands get one.
  if (op.bad === null && op.cmd !== "flags" && count > 0)
    prepared.thread = () => threadForm(ctx, fd, op.cmd, start, count, data, label);
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
  }[cmd];
}

/** The command as a kernel thread (the dmirror generators), its result read as DeviceFile reports it. */
function threadForm(
  ctx: Ctx,
  fd: DeviceFile,
  cmd: DeviceCommand,
  vpn: number,
  npages: number,
  data: Uint8Array,
  label: string,
): ThreadForm {
  const mirror = fd.mirror;
  const bytes = ctx.store === "bytes" ? new Uint8Array(npages * PAGE) : null;
  const words = new Uint32Array(npages);
  const codes = new Uint8Array(npages);
  const command = (): Kfn<unknown> => {
    switch (cmd) {
      case "read":
        return mirror.cmdRead(vpn, npages, bytes, words);
      case "write":
        return mirror.cmdWrite(vpn, npages, data);
      case "toDevice":
        return mirror.cmdMigrateToDevice(vpn, npages);
      case "toSystem":
        return mirror.cmdMigrateToSystem(vpn, npages);
      default:
        return mirror.cmdSnapshot(vpn, npages, codes);
    }
  };
  return {
    name: label,
    cpu: fd.process.cpu,
    body: (function* (): Kfn<unknown> {
      if (mirror.closed) return -EBADF;
      return yield* command();
    })(),
    decode: (result) => {
      if (typeof result === "number") return { ok: false, error: new KernelError(-result, label) };
      if (cmd === "read") return { ok: true, value: { ...(result as object), data: bytes, words } };
      if (cmd === "snapshot") return { ok: true, value: codes };
      return { ok: true, value: result };
    },
  };
}

function judgeDev(
  ctx: Ctx,
  world: World,
  rf: RefFd,
  cmd: DeviceCommand,
  args: Record<string, unknown>,
  outcome: Outcome,
  readOnly: readonly number[],
): Verdict {
  if (rf.closed) return expectFailure(outcome, "EBADF");
  if (cmd === "write" && ctx.store !== "bytes") return expectFailure(outcome, "any");
  const addr = asUlong(args.addr);
  const npages = asUlong(args.npages);
  if (addr === null || npages === null) return expectFailure(outcome, "any");
  const checked = ioctlCheck(addr, npages);
  if (checked.errno !== null) return expectFailure(outcome, checked.errno);
  const owner = rf.owner;
  const vpn = checked.vpn;
  switch (cmd) {
    case "flags": {
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      if ((npages & 1n) !== 0n) rf.failAllocArmed = true;
      return OK;
    }
    case "read":
      return judgeRead(
        ctx,
        owner,
        vpn,
        checked.size,
        npages,
        outcome,
        explainedByAllocation(ctx, world, "kernel", outcome),
      );
    case "write":
      return judgeWrite(
        ctx,
        owner,
        vpn,
        checked.size,
        npages,
        args.data,
        outcome,
        readOnly,
        explainedByAllocation(ctx, world, "kernel", outcome),
      );
    case "toDevice": {
      const mustMove = !owner.migrationMayFail && !rf.failAllocArmed;
      owner.migrationMayFail = true;
      const stop = firstUnreadable(owner, vpn, npages);
      if (stop >= 0) return expectFailure(outcome, "EINVAL", false);
      if (!outcome.ok) {
        // A first migration of private anonymous pages of a process that never forked, pinned or
        // migrated has nothing that can keep a page behind.
        if (mustMove && pagesOf(owner, vpn, Number(npages)).every((page) => page.kind === "anonPrivate"))
          return fail(
            `every page must move (private anonymous, never forked, pinned or migrated), got ${errorName(outcome.error)}`,
          );
        return expectFailure(outcome, "ENOENT", false);
      }
      return judgeCpages(outcome, Number(npages), "exactly");
    }
    case "toSystem": {
      if (firstUnreadable(owner, vpn, npages) >= 0) return expectFailure(outcome, "EINVAL", false);
      if (!outcome.ok && rf.failAllocArmed) return expectFailure(outcome, "ENOMEM", false);
      return judgeCpages(outcome, Number(npages), "at most");
    }
    case "snapshot": {
      if (npages > SNAPSHOT_PAGES_MAX) return expectFailure(outcome, "any");
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const codes = outcome.ok ? outcome.value : null;
      if (!(codes instanceof Uint8Array) || BigInt(codes.length) !== npages)
        return fail(`SNAPSHOT returned ${String(codes)}`);
      for (let i = 0; i < codes.length; i++) {
        const why = badCode(owner.pages.get(vpn + i), codes[i]!);
        if (why !== null) return fail(`page ${i}: ${why}`);
      }
      return OK;
    }
  }
}

function judgeCpages(outcome: Outcome, npages: number, how: "exactly" | "at most"): Verdict {
  const failed = unlessSuccess(outcome);
  if (failed !== null) return failed;
  const cpages = outcome.ok ? (outcome.value as { cpages?: unknown }).cpages : undefined;
  const fits =
    typeof cpages === "number" && (how === "exactly" ? cpages === npages : cpages >= 0 && cpages <= npages);
  return fits ? OK : fail(`cpages ${String(cpages)}, expected ${how} ${npages}`);
}

/** dmirror_read: the process's bytes (bytes store) or each page's first word (tokens). */
function judgeRead(
  ctx: Ctx,
  owner: RefProcess,
  vpn: number,
  size: bigint,
  npages: bigint,
  outcome: Outcome,
  allocationFailed: boolean,
): Verdict {
  if (bounceFails(size)) return expectFailure(outcome, "ENOMEM");
  const fault = firstFault(owner, vpn, npages, false);
  if (fault !== null) return expectFailure(outcome, fault.errno, false);
  if (allocationFailed) return OK;
  const failed = unlessSuccess(outcome);
  if (failed !== null) return failed;
  const result = (outcome.ok ? outcome.value : null) as ReadResult | null;
  const count = Number(npages);
  if (result === null || result.cpages !== count)
    return fail(`cpages ${String(result?.cpages)}, expected ${count}`);
  for (let i = 0; i < count; i++) {
    const want = contents(owner.pages.get(vpn + i)!);
    if (result.words[i] !== firstWord(want))
      return fail(
        `page ${i} read 0x${result.words[i]!.toString(16)}, the reference says 0x${firstWord(want).toString(16)}`,
      );
    if (ctx.store === "bytes") {
      const got = result.data!.subarray(i * PAGE, (i + 1) * PAGE);
      if (
        !Buffer.from(got.buffer, got.byteOffset, PAGE).equals(Buffer.from(want.buffer, want.byteOffset, PAGE))
      )
        return fail(
          `page ${i}'s bytes differ from the reference's (first word 0x${firstWord(want).toString(16)})`,
        );
    }
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
  owner: RefProcess,
  vpn: number,
  size: bigint,
  npages: bigint,
  data: unknown,
  outcome: Outcome,
  readOnly: readonly number[],
  allocationFailed: boolean,
): Verdict {
  if (bounceFails(size)) return expectFailure(outcome, "ENOMEM");
  if (data === null || (data instanceof Uint8Array && BigInt(data.length) < size))
    return expectFailure(outcome, "EFAULT");
  if (!(data instanceof Uint8Array)) return expectFailure(outcome, "any");
  const count = Number(npages);
  const pageData = (i: number) => data.subarray(i * PAGE, (i + 1) * PAGE);
  // hmm_range_fault fails at a page it cannot fault; failing that, a read-only page on this device
  // fails dmirror_do_fault (readOnlyOnDevice). Either way the leading pages may have been written.
  // Where pages were is known only around the call (concurrent operations may move them), so a
  // failure may be explained with or without them.
  const readOnlyFirst = readOnly.length === 0 ? null : Math.min(...readOnly);
  const plain = firstFault(owner, vpn, npages, true);
  const withDevice =
    firstFault(owner, vpn, npages, true, readOnly) ??
    (readOnlyFirst === null ? null : { index: readOnlyFirst, errno: "EFAULT" });
  const got = outcome.ok ? null : errorName(outcome.error);
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
