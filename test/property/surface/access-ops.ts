/**
 * CPU accesses, pins and tmpfs files against the reference (src/process.ts, src/system.ts and the
 * kernel paths they model).
 *
 * - A CPU access (read, write, readU32/U64, writeU32/U64, fillPages, checkPages, touch) is the
 *   process's own loads and stores, arguments by the ABI rule (kernel-checks.ts): values no register
 *   holds EINVAL, a write's data that is not a Uint8Array EFAULT, a `write` flag that is not a boolean
 *   EINVAL; writeU32 keeps the low 32 bits of any 64-bit integer, writeU64 takes a BigInt or a number
 *   in [-2^63, 2^64). An access of 0 bytes (or 0 pages) touches nothing and succeeds wherever it
 *   points. Otherwise one that starts at or above TASK_SIZE is SIGSEGV; byte accesses in the tokens
 *   store are EOPNOTSUPP (hmmsim's own answer: that store keeps no bytes); then every page it touches
 *   must be mapped with the access (x86 access_error: a write needs PROT_WRITE, a read any of
 *   PROT_READ, PROT_WRITE, PROT_EXEC), else SIGSEGV with nothing written; a read of
 *   more than MAX_RW_COUNT bytes is ENOMEM (hmmsim's cap on one result). Page accesses need an aligned
 *   address (EINVAL).
 * - pin_user_pages (mm/gup.c __get_user_pages, check_vma_flags) from the page holding the address: a
 *   page without a VMA or without the access (VM_WRITE for a write pin, VM_READ otherwise) ends the
 *   pin there, into the next VMA if it follows at once; the call returns the pfns it pinned (a short
 *   count past the mapped run), EFAULT when it pinned none; a count of 0 pins nothing and returns [].
 *   With FOLL_LONGTERM (__gup_longterm_locked, check_and_migrate_movable_pages) a device-coherent page
 *   is migrated to RAM first (migrate_device_coherent_folio), so no pfn of a long-term pin is one;
 *   EBUSY when such a page will not move, which the reference allows only where another pin holds a
 *   coherent page of the range (a pinned page fails migration's reference count check). A pin faults
 *   each page in, which revokes a device's atomic access to it (world.ts).
 * - unpin_user_pages needs no mm: it works after the process exited; an entry that is not a pinned
 *   pfn (counting repeats) is EINVAL and nothing is unpinned, a list that is not an array EFAULT.
 * - Calls on an exited process are ESRCH, before their arguments are looked at.
 * - pread and pwrite (fs/read_write.c ksys_pread64/ksys_pwrite64, vfs_read/vfs_write,
 *   rw_verify_area, mm/shmem.c, src/mm/filemap.ts): kernel-checks.ts rwCheck, then a read past the end
 *   returns what is there (0 bytes at or past it, in either store), a read of bytes in the tokens
 *   store is EOPNOTSUPP; a write of 0 bytes is 0 (either store), at or past hmmsim's largest file
 *   (2^53) EFBIG, in the tokens store EOPNOTSUPP, else it grows the file to offset + n.
 * - createFile: the size is ftruncate's loff_t (EINVAL for a value no register holds or a negative
 *   one, EFBIG above 2^53); an omitted size is 0; a name that is not a string EFAULT.
 */
import { type Process, pageValue, SignalError } from "../../../src/process.js";
import type { Kfn } from "../../../src/sched/thread.js";
import type { TmpFile } from "../../../src/system.js";
import { loff, MAX_RW_COUNT, register, rwCheck, TASK_SIZE, TMPFS_MAX_BYTES } from "./kernel-checks.js";
import { badLabel, withBad } from "./mm-ops.js";
import { frameAt, frameHolds } from "./observe.js";
import type { Op } from "./ops.js";
import { contents, filledPage, firstWord, PAGE, pastEnd, pattern, type RefPage, writable } from "./pages.js";
import {
  addrOf,
  allocationMayFail,
  type Ctx,
  expectFailure,
  explainedByAllocation,
  fail,
  fitRange,
  OK,
  type Outcome,
  type Prepared,
  pickAlive,
  resolve,
  type ThreadForm,
  unlessSuccess,
  type Verdict,
} from "./semantics.js";
import type { RefProcess, World } from "./world.js";

const TASK_END = TASK_SIZE + 1n;

/**
 * x86 access_error: a write needs VM_WRITE; a read any of VM_READ, VM_WRITE, VM_EXEC
 * (vma_is_accessible), so write-only and exec-only memory reads (hostile prots can map them).
 */
function cpuMay(prot: number, write: boolean): boolean {
  return write ? (prot & 2) !== 0 : (prot & 7) !== 0;
}

/** The pages [first, last] of an access, or why it faults or is skipped. */
function accessPages(
  rp: RefProcess,
  first: number,
  last: number,
  write: boolean,
): RefPage[] | "SIGSEGV" | "skip" {
  const pages: RefPage[] = [];
  for (let vpn = first; vpn <= last; vpn++) {
    const page = rp.pages.get(vpn);
    if (page === undefined || !cpuMay(page.prot, write)) return "SIGSEGV";
    pages.push(page);
  }
  return pages.some(pastEnd) ? "skip" : pages;
}

/**
 * What a byte access of `length` at `addr` does before it touches a page: an errno or signal, an empty
 * access, or its start, length and pages.
 */
type ByteAccess =
  | { fails: string }
  | { empty: true }
  | { start: number; length: number; pages: RefPage[] }
  | "skip";

function byteAccess(
  ctx: Ctx,
  rp: RefProcess,
  addrIn: unknown,
  lengthIn: unknown,
  write: boolean,
): ByteAccess {
  const addr = register(addrIn);
  const length = register(lengthIn);
  if (addr === null || length === null) return { fails: "EINVAL" };
  if (length === 0n) return { empty: true };
  if (addr >= TASK_SIZE) return { fails: "SIGSEGV" };
  if (ctx.store !== "bytes") return { fails: "EOPNOTSUPP" };
  const end = addr + length < TASK_END ? addr + length : TASK_END;
  const first = Number(addr / BigInt(PAGE));
  const last = Number((end - 1n) / BigInt(PAGE));
  // A range longer than any mapping reaches a page that is not mapped (bounded by the mapped pages).
  let vpn = first;
  while (vpn <= last && rp.pages.has(vpn)) vpn++;
  if (vpn <= last) return { fails: "SIGSEGV" };
  const pages = accessPages(rp, first, last, write);
  if (pages === "SIGSEGV") return { fails: "SIGSEGV" };
  if (pages === "skip") return "skip";
  if (!write && length > MAX_RW_COUNT) return { fails: "ENOMEM" };
  return { start: Number(addr), length: Number(length), pages };
}

function firstDifference(got: Uint8Array, want: (i: number) => number): string | null {
  for (let i = 0; i < got.length; i++)
    if (got[i] !== want(i)) return `byte ${i} is ${got[i]}, the reference says ${want(i)}`;
  return null;
}

/** The byte at `at` (an address) the reference holds, given the access's pages from `first`. */
function byteAt(pages: RefPage[], first: number, at: number): number {
  return contents(pages[Math.floor(at / PAGE) - first]!)[at % PAGE]!;
}

/** The failure an exited process gives every call (unpinPages excepted), or null. */
function exitedFailure(rp: RefProcess, outcome: Outcome): Verdict | null {
  return rp.alive ? null : expectFailure(outcome, "ESRCH");
}

/**
 * A byte store of `data` at `start` over `pages` (the reference's): on success every byte is in; a
 * failed allocation (explainedByAllocation) leaves the pages before the one that could not come back
 * written, which the reference learns from hmmsim.
 */
function judgeStore(
  ctx: Ctx,
  world: World,
  process: Process,
  outcome: Outcome,
  start: number,
  data: Uint8Array,
  pages: RefPage[],
): Verdict {
  const first = Math.floor(start / PAGE);
  /** The page's bytes once this store's part of it is in. */
  const written = (i: number) => {
    const bytes = contents(pages[i]!).slice();
    for (let j = 0; j < data.length; j++)
      if (Math.floor((start + j) / PAGE) - first === i) bytes[(start + j) % PAGE] = data[j]!;
    return bytes;
  };
  if (explainedByAllocation(ctx, world, "cpu", outcome)) {
    pages.forEach((page, i) => {
      const bytes = written(i);
      if (frameHolds(ctx.system, frameAt(ctx.system, process.mm, first + i), bytes))
        writable(page).set(bytes);
    });
    return OK;
  }
  const failed = unlessSuccess(outcome);
  if (failed !== null) return failed;
  pages.forEach((page, i) => {
    writable(page).set(written(i));
  });
  world.revokeAtomic(world.byPid(process.pid), first, pages.length);
  return OK;
}

// ---------------------------------------------------------------------------------------------------
// Byte accesses

export function prepareWrite(ctx: Ctx, world: World, op: Extract<Op, { op: "write" }>): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null) return null;
  const vpn = resolve(rp.pages, op.at);
  const args = withBad(
    { addr: vpn * PAGE + op.at.offset, data: pattern(op.seed, op.length) as unknown },
    op.bad,
  );
  if (args === null) return null;
  const pid = rp.process.pid;
  const process = rp.process;
  return {
    label: `pid ${pid} write(${addrOf(vpn)} + ${op.at.offset}, ${op.length} bytes)${badLabel(op)}`,
    call: () => process.write(args.addr as number, args.data as Uint8Array),
    judge: (w, outcome) => {
      if (register(args.addr) === null) return expectFailure(outcome, "EINVAL");
      if (!(args.data instanceof Uint8Array)) return expectFailure(outcome, "EFAULT");
      const access = byteAccess(ctx, w.byPid(pid), args.addr, args.data.length, true);
      if (access === "skip") return fail("unreachable: skipped access judged");
      if ("fails" in access) return expectFailure(outcome, access.fails);
      if ("empty" in access) return outcome.ok ? OK : fail(`an empty write must succeed, got ${outcome.ok}`);
      return judgeStore(ctx, w, process, outcome, access.start, args.data, access.pages);
    },
  };
}

export function prepareRead(ctx: Ctx, world: World, op: Extract<Op, { op: "read" }>): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null) return null;
  const vpn = resolve(rp.pages, op.at);
  const args = withBad({ addr: vpn * PAGE + op.at.offset, length: op.length as unknown }, op.bad);
  if (args === null) return null;
  const pid = rp.process.pid;
  const process = rp.process;
  return {
    label: `pid ${pid} read(${addrOf(vpn)} + ${op.at.offset}, ${String(args.length)} bytes)${badLabel(op)}`,
    call: () => process.read(args.addr as number, args.length as number),
    judge: (w, outcome) => judgeLoad(ctx, w, w.byPid(pid), args.addr, args.length, outcome, (got) => got),
  };
}

/** A byte load of `length` at `addr`, its result decoded to bytes by `bytesOf` (null: wrong type). */
function judgeLoad(
  ctx: Ctx,
  world: World,
  rp: RefProcess,
  addr: unknown,
  length: unknown,
  outcome: Outcome,
  bytesOf: (value: unknown) => unknown,
): Verdict {
  const access = byteAccess(ctx, rp, addr, length, false);
  if (access === "skip") return fail("unreachable: skipped access judged");
  if ("fails" in access) return expectFailure(outcome, access.fails);
  if ("empty" in access) {
    const got = outcome.ok ? bytesOf(outcome.value) : null;
    return got instanceof Uint8Array && got.length === 0 ? OK : fail("an empty read must return no bytes");
  }
  if (explainedByAllocation(ctx, world, "cpu", outcome)) return OK;
  const failed = unlessSuccess(outcome);
  if (failed !== null) return failed;
  const got = outcome.ok ? bytesOf(outcome.value) : null;
  if (!(got instanceof Uint8Array) || got.length !== access.length)
    return fail(`read returned ${String(got)}`);
  const first = Math.floor(access.start / PAGE);
  world.revokeAtomic(rp, first, access.pages.length);
  return firstDifference(got, (i) => byteAt(access.pages, first, access.start + i)) === null
    ? OK
    : fail(firstDifference(got, (i) => byteAt(access.pages, first, access.start + i))!);
}

/** Skips byte accesses the reference cannot judge (pages past the end of their object). */
export function skipsPastEnd(
  ctx: Ctx,
  world: World,
  op: Extract<Op, { op: "write" | "read" | "word" }>,
): boolean {
  const rp = pickAlive(world, op.p);
  if (rp === null) return true;
  const addr = resolve(rp.pages, op.at) * PAGE + op.at.offset;
  const length = op.op === "word" ? op.width / 8 : op.length;
  return byteAccess(ctx, rp, addr, length, op.op === "write" || (op.op === "word" && op.write)) === "skip";
}

export function prepareWord(ctx: Ctx, world: World, op: Extract<Op, { op: "word" }>): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null) return null;
  const vpn = resolve(rp.pages, op.at);
  const bytes = op.width / 8;
  const plain =
    op.width === 64 && !op.asNumber && Number.isSafeInteger(op.value) ? BigInt(op.value) : op.value;
  const args = withBad({ addr: vpn * PAGE + op.at.offset, value: plain as unknown }, op.bad);
  if (args === null) return null;
  const pid = rp.process.pid;
  const process = rp.process;
  const name = `${op.write ? "write" : "read"}U${op.width}`;
  return {
    label: `pid ${pid} ${name}(${addrOf(vpn)} + ${op.at.offset}${op.write ? `, ${typeof args.value === "bigint" ? `${args.value}n` : String(args.value)}` : ""})${badLabel(op)}`,
    call: () => {
      const addr = args.addr as number;
      if (op.width === 32)
        return op.write ? process.writeU32(addr, args.value as number) : process.readU32(addr);
      return op.write ? process.writeU64(addr, args.value as bigint) : process.readU64(addr);
    },
    judge: (w, outcome) => {
      const target = w.byPid(pid);
      if (!op.write)
        return judgeLoad(ctx, w, target, args.addr, bytes, outcome, (got) => {
          const raw = new Uint8Array(8);
          const view = new DataView(raw.buffer);
          if (op.width === 32 && typeof got === "number") view.setUint32(0, got, true);
          else if (op.width === 64 && typeof got === "bigint") view.setBigUint64(0, got, true);
          else return null;
          return raw.subarray(0, bytes);
        });
      // storedInteger: writeU32 a register value's low 32 bits; writeU64 a BigInt or a register value.
      const value = args.value;
      let stored: bigint | null = null;
      if (typeof value === "bigint") {
        if (op.width === 64 && value >= -(2n ** 63n) && value < 2n ** 64n) stored = BigInt.asUintN(64, value);
      } else {
        const reg = register(value);
        if (reg !== null) stored = BigInt.asUintN(op.width, reg);
      }
      if (stored === null) return expectFailure(outcome, "EINVAL");
      const encoded = new Uint8Array(8);
      new DataView(encoded.buffer).setBigUint64(0, stored, true);
      if (register(args.addr) === null) return expectFailure(outcome, "EINVAL");
      const access = byteAccess(ctx, target, args.addr, bytes, true);
      if (access === "skip") return fail("unreachable: skipped access judged");
      if ("fails" in access) return expectFailure(outcome, access.fails);
      if ("empty" in access) return fail("unreachable: an empty word");
      return judgeStore(ctx, w, process, outcome, access.start, encoded.subarray(0, bytes), access.pages);
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Page accesses: fillPages, checkPages, touch (both stores), and the concurrent mode's store and load

type PageOp = Extract<Op, { op: "fill" | "check" | "touch" }>;

export function preparePages(ctx: Ctx, world: World, op: PageOp): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null) return null;
  const start = resolve(rp.pages, op.at);
  const count = fitRange(rp.pages, op.at, start, op.pages);
  const args = withBad({ addr: start * PAGE, npages: count as unknown }, op.bad);
  if (args === null) return null;
  const write = op.op === "fill" || (op.op === "touch" && op.write);
  if (op.bad === null && count > 0 && accessPages(rp, start, start + count - 1, write) === "skip")
    return null;
  const pid = rp.process.pid;
  const process = rp.process;
  const seed = op.op === "touch" ? 0 : op.seed;
  const name =
    op.op === "fill"
      ? "fillPages"
      : op.op === "check"
        ? "checkPages"
        : `touch(${op.write ? "write" : "read"})`;
  return {
    label: `pid ${pid} ${name}(${addrOf(start)}, ${String(args.npages)} pages)${badLabel(op)}`,
    call: () => {
      const addr = args.addr as number;
      const npages = args.npages as number;
      if (op.op === "fill") return process.fillPages(addr, npages, seed);
      if (op.op === "check") return process.checkPages(addr, npages, seed);
      return process.touch(addr, npages, op.write);
    },
    judge: (w, outcome) => {
      const addr = register(args.addr);
      const npages = register(args.npages);
      if (addr === null || npages === null || addr % BigInt(PAGE) !== 0n)
        return expectFailure(outcome, "EINVAL");
      if (npages === 0n) {
        const got = outcome.ok ? outcome.value : null;
        if (!outcome.ok) return fail(`0 pages must succeed, got a failure`);
        return op.op === "check" && !(Array.isArray(got) && got.length === 0)
          ? fail(`checkPages of 0 pages returned ${String(got)}`)
          : OK;
      }
      if (addr >= TASK_SIZE) return expectFailure(outcome, "SIGSEGV");
      const first = Number(addr / BigInt(PAGE));
      const target = w.byPid(pid);
      // Bounded by the mapped pages: a count past them reaches an unmapped page.
      let reach = 0;
      while (BigInt(reach) < npages && target.pages.has(first + reach)) reach++;
      if (BigInt(reach) < npages) return expectFailure(outcome, "SIGSEGV");
      const pages = accessPages(target, first, first + reach - 1, write);
      if (pages === "skip") return fail("unreachable: skipped access judged");
      if (pages === "SIGSEGV") return expectFailure(outcome, "SIGSEGV");
      if (explainedByAllocation(ctx, w, "cpu", outcome)) {
        // fillPages stops at the page that could not come back: learn which it filled from hmmsim.
        if (op.op === "fill")
          pages.forEach((page, i) => {
            const want = filledPage(pageValue(seed, i));
            if (frameHolds(ctx.system, frameAt(ctx.system, process.mm, first + i), want))
              writable(page).set(want);
          });
        return OK;
      }
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      w.revokeAtomic(target, first, pages.length);
      if (op.op === "fill") {
        pages.forEach((page, i) => {
          writable(page).set(filledPage(pageValue(seed, i)));
        });
      }
      // A write fault gives a private page its own copy (do_cow_fault, do_wp_page), bytes unchanged.
      if (op.op === "touch" && op.write) for (const page of pages) writable(page);
      if (op.op === "check") {
        const want = pages.flatMap((page, i) =>
          firstWordsDiffer(ctx, contents(page), filledPage(pageValue(seed, i))) ? [i] : [],
        );
        const got = outcome.ok ? outcome.value : null;
        if (JSON.stringify(got) !== JSON.stringify(want))
          return fail(`checkPages found [${String(got)}] wrong, the reference [${want.join(", ")}]`);
      }
      return OK;
    },
  };
}

/** Whether checkPages would call the page wrong: every byte (bytes store) or the version (tokens). */
function firstWordsDiffer(ctx: Ctx, have: Uint8Array, want: Uint8Array): boolean {
  if (ctx.store === "tokens") return firstWord(have) !== firstWord(want);
  return !Buffer.from(have.buffer, have.byteOffset, PAGE).equals(
    Buffer.from(want.buffer, want.byteOffset, PAGE),
  );
}

function signalOf(result: number, vpn: number, what: string): SignalError {
  return new SignalError(result === -1 ? "SIGSEGV" : result === -2 ? "SIGBUS" : "SIGKILL", vpn * PAGE, what);
}

/**
 * One CPU store filling a whole page with `value` (cpuStore) or one load of its first word (cpuLoad):
 * the fault path (Process.accessPage) and then the store or load, with no scheduling point between.
 */
export function prepareCpu(
  ctx: Ctx,
  world: World,
  op: Extract<Op, { op: "cpuStore" | "cpuLoad" }>,
): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null) return null;
  const vpn = resolve(rp.pages, op.at);
  const write = op.op === "cpuStore";
  const page = rp.pages.get(vpn);
  if (page !== undefined && pastEnd(page)) return null;
  const pid = rp.process.pid;
  const process = rp.process;
  const store = ctx.system.kernel.store;
  const value = op.op === "cpuStore" ? op.value >>> 0 : 0;
  const label = write
    ? `pid ${pid} CPU store of 0x${value.toString(16)} to ${addrOf(vpn)}`
    : `pid ${pid} CPU load from ${addrOf(vpn)}`;
  const body = function* (): Kfn<number | { word: number }> {
    const pfn = yield* process.accessPage(vpn, write);
    if (pfn < 0) return pfn;
    if (write) {
      store.fill(pfn, value);
      return pfn;
    }
    return { word: store.word(pfn) };
  };
  const decode = (result: unknown): Outcome =>
    typeof result === "number" && result < 0
      ? { ok: false, error: signalOf(result, vpn, label) }
      : { ok: true, value: write ? undefined : (result as { word: number }).word };
  const thread = (): ThreadForm => ({ name: label, cpu: process.cpu, body: body(), decode });
  return {
    label,
    mm: process.mm,
    call: () => {
      const outcome = decode(ctx.system.kernel.sched.call(label, body(), process.cpu));
      if (!outcome.ok) throw outcome.error;
      return outcome.value;
    },
    thread,
    judge: (w, outcome) => {
      const target = w.byPid(pid).pages.get(vpn);
      if (target === undefined || !cpuMay(target.prot, write))
        return expectFailure(outcome, "SIGSEGV", false);
      // Zapped by a MADV_DONTNEED of the group: a device-file VMA has no fault handler (do_fault).
      if (target.gone) return expectFailure(outcome, "SIGBUS", false);
      if (explainedByAllocation(ctx, w, "cpu", outcome)) return OK;
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      w.revokeAtomic(w.byPid(pid), vpn, 1);
      if (write) {
        writable(target).set(filledPage(value));
        return OK;
      }
      const want = firstWord(contents(target));
      const got = outcome.ok ? outcome.value : null;
      return got === want
        ? OK
        : fail(`the load read 0x${Number(got).toString(16)}, the reference says 0x${want.toString(16)}`);
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Pins

export function preparePin(ctx: Ctx, world: World, op: Extract<Op, { op: "pin" }>): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null) return null;
  const start = resolve(rp.pages, op.at);
  const count = fitRange(rp.pages, op.at, start, op.pages);
  // An address inside the page pins the page holding it.
  const args = withBad({ addr: start * PAGE + op.at.offset, npages: count as unknown }, op.bad);
  if (args === null) return null;
  const addr = register(args.addr);
  const npages = register(args.npages);
  // The pin stops at the first page it cannot take; a page past its object's end is not judged.
  let pinnable = 0;
  if (addr !== null && npages !== null && addr < TASK_SIZE) {
    const first = Number(addr / BigInt(PAGE));
    while (BigInt(pinnable) < npages) {
      const page = rp.pages.get(first + pinnable);
      if (page === undefined || (page.prot & (op.write ? 2 : 1)) === 0) break;
      if (pastEnd(page)) return null;
      pinnable++;
    }
  }
  const pid = rp.process.pid;
  const process = rp.process;
  const pages = ctx.system.kernel.pages;
  const coherentPfns =
    addr === null
      ? []
      : Array.from({ length: pinnable }, (_, i) =>
          frameAt(ctx.system, process.mm, Number(addr / BigInt(PAGE)) + i),
        ).filter((pfn) => pfn >= 0 && pages.isDeviceCoherent(pfn));
  const coherentBefore = coherentPfns.length > 0;
  return {
    label: `pid ${pid} pinPages(${addrOf(start)} + ${op.at.offset}, ${String(args.npages)} pages, ${op.write ? "write" : "read"}${op.longterm ? ", longterm" : ""})${badLabel(op)}`,
    ...(op.longterm ? { tag: coherentBefore ? "(FOLL_LONGTERM, a coherent page)" : "(FOLL_LONGTERM)" } : {}),
    call: () => process.pinPages(args.addr as number, args.npages as number, op.write, op.longterm),
    judge: (w, outcome) => {
      if (addr === null || npages === null) return expectFailure(outcome, "EINVAL");
      if (npages === 0n) {
        const got = outcome.ok ? outcome.value : null;
        return Array.isArray(got) && got.length === 0 ? OK : fail(`a pin of 0 pages returned ${String(got)}`);
      }
      if (pinnable === 0) return expectFailure(outcome, "EFAULT");
      if (explainedByAllocation(ctx, w, "gup", outcome)) return OK;
      const coherentPinned = w.pins.some(
        (pin) => !pin.unpinned && pin.pfns.some((pfn) => coherentPfns.includes(pfn)),
      );
      if (op.longterm && coherentPinned && !outcome.ok) return expectFailure(outcome, "EBUSY", false);
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const pfns = outcome.ok ? outcome.value : null;
      if (op.longterm && Array.isArray(pfns) && pfns.some((pfn) => pages.isDeviceCoherent(pfn as number)))
        return fail(`a long-term pin holds a device-coherent page (pfns ${pfns.join(", ")})`);
      // A fault that fails its allocation ends the pin early (__get_user_pages returns what it got).
      const short = allocationMayFail(w) && Array.isArray(pfns) && pfns.length > 0 && pfns.length < pinnable;
      if (!Array.isArray(pfns) || (pfns.length !== pinnable && !short))
        return fail(`pinned ${String(pfns)}, the reference says ${pinnable} pages`);
      const pinned = pfns.length;
      const owner = w.byPid(pid);
      const first = Number(addr / BigInt(PAGE));
      // A write pin faults for write: a private page gets its own copy, as a store would give it.
      if (op.write) for (let i = 0; i < pinned; i++) writable(owner.pages.get(first + i)!);
      w.pins.push({ owner, pfns: pfns as number[], unpinned: false });
      w.revokeAtomic(owner, first, pinned);
      owner.migrationMayFail = true;
      return OK;
    },
  };
}

/** Whether the outstanding pins hold `pfns` (counting repeats), as the ledger checks. */
function pinsHold(world: World, pfns: readonly number[]): boolean {
  const held = new Map<number, number>();
  for (const pin of world.pins)
    if (!pin.unpinned) for (const pfn of pin.pfns) held.set(pfn, (held.get(pfn) ?? 0) + 1);
  for (const pfn of pfns) {
    const left = held.get(pfn) ?? 0;
    if (left === 0) return false;
    held.set(pfn, left - 1);
  }
  return true;
}

export function prepareUnpin(_ctx: Ctx, world: World, op: Extract<Op, { op: "unpin" }>): Prepared | null {
  if (world.pins.length === 0) return null;
  const index = op.pin % world.pins.length;
  const pin = world.pins[index]!;
  // A plain array as the hostile value: the pin's own pfns and one that is no pin at all.
  const hostileArray = op.bad?.value.kind === "array";
  const args = hostileArray
    ? { pfns: [...pin.pfns, -1] as unknown }
    : withBad({ pfns: pin.pfns as unknown }, op.bad);
  if (args === null) return null;
  // A second unpin is only misuse when no other pin holds those pages (the ledger counts per page).
  if (op.bad === null && pin.unpinned && pinsHold(world, pin.pfns)) return null;
  const process = pin.owner.process;
  return {
    label: `pid ${process.pid}${pin.owner.alive ? "" : " (exited)"} unpinPages(pin ${index}: [${pin.pfns.join(", ")}])${pin.unpinned ? " again" : ""}${badLabel(op)}`,
    call: () => process.unpinPages(args.pfns as number[]),
    judge: (w, outcome) => {
      const target = w.pins[index]!;
      if (!Array.isArray(args.pfns)) return expectFailure(outcome, "EFAULT");
      if (hostileArray || target.unpinned) return expectFailure(outcome, "EINVAL");
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      target.unpinned = true;
      return OK;
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// tmpfs files

export const FILES_MAX = 4;
/** A pread that would hand back more than this is not made (a result of up to 2 GiB). */
const PREAD_BYTES_MAX = 1 << 20;

export function prepareCreateFile(
  ctx: Ctx,
  world: World,
  op: Extract<Op, { op: "createFile" }>,
): Prepared | null {
  if (world.files.length >= FILES_MAX) return null;
  const given = withBad({ size: (op.pages * PAGE + op.extraBytes) as unknown }, op.bad);
  if (given === null) return null;
  const args = given;
  const name = `file-${world.files.length}`;
  const system = ctx.system;
  return {
    label: `createFile(${name}, ${String(args.size)} bytes)${badLabel(op)}`,
    call: () => system.createFile(name, args.size as number),
    judge: (w, outcome) => {
      // An omitted size is ftruncate's 0.
      const size = args.size === undefined ? 0n : loff(args.size);
      if (size === null || size < 0n) return expectFailure(outcome, "EINVAL");
      if (size > TMPFS_MAX_BYTES) return expectFailure(outcome, "EFBIG");
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const sizeBytes = Number(size);
      const file = outcome.ok ? (outcome.value as TmpFile) : null;
      if (file === null || file.size !== sizeBytes) return fail(`createFile returned ${String(file)}`);
      w.files.push({
        file,
        object: { name, pages: new Map(), sizePages: Math.ceil(sizeBytes / PAGE) },
        sizeBytes,
      });
      return OK;
    },
  };
}

/** The offset a pread/pwrite op names: from the start, or from the file's end. */
function fileOffset(world: World, op: { file: number; offset: number; fromEnd: boolean }): number {
  const rf = world.files[op.file % world.files.length]!;
  return op.fromEnd ? rf.sizeBytes + op.offset : op.offset;
}

export function preparePwrite(ctx: Ctx, world: World, op: Extract<Op, { op: "pwrite" }>): Prepared | null {
  const rf = world.files[op.file % world.files.length]!;
  const args = withBad(
    { offset: fileOffset(world, op) as unknown, data: pattern(op.seed, op.length) as unknown },
    op.bad,
  );
  if (args === null) return null;
  const file = rf.file;
  return {
    label: `pwrite(${file.name} of ${rf.sizeBytes} bytes, ${String(args.offset)}, ${op.length} bytes)${badLabel(op)}`,
    call: () => file.write(args.offset as number, args.data as Uint8Array),
    judge: (w, outcome) => {
      const offset = loff(args.offset);
      if (offset === null || offset < 0n) return expectFailure(outcome, "EINVAL");
      if (!(args.data instanceof Uint8Array)) return expectFailure(outcome, "EFAULT");
      const data = args.data;
      const errno = rwCheck(offset, BigInt(data.length));
      if (errno !== null) return expectFailure(outcome, errno);
      // generic_write_checks: nothing to write is 0, before the size limit is looked at.
      if (data.length === 0)
        return outcome.ok && outcome.value === 0 ? OK : fail("a pwrite of 0 bytes returns 0");
      if (offset >= TMPFS_MAX_BYTES) return expectFailure(outcome, "EFBIG");
      if (ctx.store !== "bytes") return expectFailure(outcome, "EOPNOTSUPP");
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      // generic_write_check_limits: the write is cut at the largest file (a short count).
      const written = Number(
        BigInt(data.length) < TMPFS_MAX_BYTES - offset ? BigInt(data.length) : TMPFS_MAX_BYTES - offset,
      );
      if (outcome.ok && outcome.value !== written)
        return fail(`pwrite returned ${String(outcome.value)}, not ${written}`);
      const target = w.fileOf(file);
      const at = Number(offset);
      for (let i = 0; i < written; i++) {
        const pgoff = Math.floor((at + i) / PAGE);
        let bytes = target.object.pages.get(pgoff);
        if (bytes === undefined) {
          bytes = new Uint8Array(PAGE);
          target.object.pages.set(pgoff, bytes);
        }
        bytes[(at + i) % PAGE] = data[i]!;
      }
      if (at + written > target.sizeBytes) {
        target.sizeBytes = at + written;
        target.object.sizePages = Math.ceil(target.sizeBytes / PAGE);
      }
      return OK;
    },
  };
}

export function preparePread(ctx: Ctx, world: World, op: Extract<Op, { op: "pread" }>): Prepared | null {
  const rf = world.files[op.file % world.files.length]!;
  const args = withBad({ offset: fileOffset(world, op) as unknown, length: op.length as unknown }, op.bad);
  if (args === null) return null;
  const offset = loff(args.offset);
  const count = register(args.length);
  // A read that would return megabytes is not made (hmmsim would hand back up to MAX_RW_COUNT bytes).
  if (offset !== null && count !== null && offset >= 0n && rwCheck(offset, count) === null) {
    const left = BigInt(rf.sizeBytes) - offset;
    if ((count < left ? count : left) > BigInt(PREAD_BYTES_MAX)) return null;
  }
  const file = rf.file;
  return {
    label: `pread(${file.name} of ${rf.sizeBytes} bytes, ${String(args.offset)}, ${String(args.length)} bytes)${badLabel(op)}`,
    call: () => file.read(args.offset as number, args.length as number),
    judge: (w, outcome) => {
      if (offset === null || count === null) return expectFailure(outcome, "EINVAL");
      const errno = rwCheck(offset, count);
      if (errno !== null) return expectFailure(outcome, errno);
      const target = w.fileOf(file);
      // shmem_file_read_iter: nothing at or past the end; MAX_RW_COUNT at most.
      const left = BigInt(target.sizeBytes) - offset;
      const length = Number(left <= 0n ? 0n : [count, left, MAX_RW_COUNT].reduce((a, b) => (a < b ? a : b)));
      if (length > 0 && ctx.store !== "bytes") return expectFailure(outcome, "EOPNOTSUPP");
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const got = outcome.ok ? outcome.value : null;
      if (!(got instanceof Uint8Array) || got.length !== length)
        return fail(
          `pread returned ${got instanceof Uint8Array ? `${got.length} bytes` : String(got)}, the reference says ${length}`,
        );
      const at = Number(offset);
      const wrong = firstDifference(
        got,
        (i) => target.object.pages.get(Math.floor((at + i) / PAGE))?.[(at + i) % PAGE] ?? 0,
      );
      return wrong === null ? OK : fail(wrong);
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Calls on a process that has exited: ESRCH before anything else (src/process.ts checkAlive), except
// unpinPages, which needs no mm; opening a device in it is ESRCH too (device-ops.ts).

export function prepareOnExited(
  _ctx: Ctx,
  world: World,
  op: Extract<Op, { op: "onExited" }>,
): Prepared | null {
  const exited = world.exited();
  if (exited.length === 0) return null;
  const rp = exited[op.p % exited.length]!;
  const process: Process = rp.process;
  const calls: Record<typeof op.call, () => unknown> = {
    mmap: () => process.mmap(PAGE),
    munmap: () => process.munmap(2 ** 32, PAGE),
    fork: () => process.fork(),
    exit: () => process.exit(),
    read: () => process.read(2 ** 32, 1),
    fill: () => process.fillPages(2 ** 32, 1, 1),
    pin: () => process.pinPages(2 ** 32, 1, false),
    unpin: () => process.unpinPages([]),
  };
  return {
    label: `exited pid ${process.pid} ${op.call}()`,
    call: calls[op.call],
    judge: (_w, outcome) =>
      op.call === "unpin"
        ? outcome.ok
          ? OK
          : fail("unpinPages([]) works after exit")
        : (exitedFailure(rp, outcome) ?? fail("unreachable: a live process")),
  };
}
