/**
 * CPU accesses, pins and tmpfs files against the reference.
 *
 * - A CPU access needs every page it touches mapped with the access (x86 access_error: a read needs
 *   PROT_READ here, since the generators never map write-only or exec-only memory); otherwise SIGSEGV
 *   and nothing written. An access of 0 bytes touches no page and cannot fault.
 * - Byte accesses (read, write, readU32...) and pread/pwrite need the bytes store; in the tokens
 *   store they have no C counterpart and must fail with a KernelError, changing nothing.
 * - pin_user_pages (mm/gup.c __get_user_pages, check_vma_flags): a page without a VMA or without the
 *   access (VM_WRITE for a write pin, VM_READ otherwise) ends the pin there; the call returns how many
 *   pages it pinned, or EFAULT when it pinned none; 0 pages pins nothing and returns 0.
 * - pread and pwrite (fs/read_write.c ksys_pread64/ksys_pwrite64, vfs_read/vfs_write): a negative
 *   offset EINVAL, a count no user buffer can have EFAULT; a read past the end returns what is there
 *   (0 bytes at or past it); a write of n > 0 bytes grows the file to offset + n (a write of 0 bytes
 *   changes nothing).
 * - A tmpfs file of a negative size is EINVAL (do_sys_ftruncate).
 */
import { type Process, pageValue, SignalError } from "../../../src/process.js";
import type { Kfn } from "../../../src/sched/thread.js";
import { asLong, asUlong, rwCheck } from "./kernel-checks.js";
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
} from "./semantics.js";
import type { RefProcess, World } from "./world.js";

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
    if (page === undefined || (page.prot & (write ? 2 : 1)) === 0) return "SIGSEGV";
    pages.push(page);
  }
  return pages.some(pastEnd) ? "skip" : pages;
}

/** Pages of a byte range, as accessPages. */
function byteRange(
  rp: RefProcess,
  addr: number,
  length: number,
  write: boolean,
): RefPage[] | "SIGSEGV" | "skip" {
  if (length === 0) return [];
  return accessPages(rp, Math.floor(addr / PAGE), Math.floor((addr + length - 1) / PAGE), write);
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
      if (ctx.store !== "bytes" || !(args.data instanceof Uint8Array)) return expectFailure(outcome, "any");
      const data = args.data;
      // A store at an address no process can map faults in C (SIGSEGV); hmmsim's byte API may
      // refuse such an address up front instead, so any KernelError or SignalError will do.
      if (!Number.isSafeInteger(args.addr) || (args.addr as number) < 0) return expectFailure(outcome, "any");
      const start = args.addr as number;
      const pages = byteRange(w.byPid(pid), start, data.length, true);
      if (pages === "skip") return fail("unreachable: skipped access judged");
      if (pages === "SIGSEGV") return expectFailure(outcome, "SIGSEGV");
      const first = Math.floor(start / PAGE);
      /** The page's bytes once this write's part of it is in. */
      const written = (i: number) => {
        const bytes = contents(pages[i]!).slice();
        for (let j = 0; j < data.length; j++)
          if (Math.floor((start + j) / PAGE) - first === i) bytes[(start + j) % PAGE] = data[j]!;
        return bytes;
      };
      if (explainedByAllocation(ctx, w, "cpu", outcome)) {
        // The pages before the one that could not come back were written: learn which from hmmsim.
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
      return OK;
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
    judge: (w, outcome) => {
      if (ctx.store !== "bytes") return expectFailure(outcome, "any");
      const start = args.addr;
      const length = args.length;
      // As for write: an address or length no access can have is any KernelError or SignalError.
      if (
        !Number.isSafeInteger(start) ||
        (start as number) < 0 ||
        !Number.isSafeInteger(length) ||
        (length as number) < 0
      )
        return expectFailure(outcome, "any");
      const pages = byteRange(w.byPid(pid), start as number, length as number, false);
      if (pages === "skip") return fail("unreachable: skipped access judged");
      if (pages === "SIGSEGV") return expectFailure(outcome, "SIGSEGV");
      if (explainedByAllocation(ctx, w, "cpu", outcome)) return OK;
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const got = outcome.ok ? outcome.value : null;
      if (!(got instanceof Uint8Array) || got.length !== length) return fail(`read returned ${String(got)}`);
      const first = Math.floor((start as number) / PAGE);
      const wrong = firstDifference(got, (i) => byteAt(pages, first, (start as number) + i));
      return wrong === null ? OK : fail(wrong);
    },
  };
}

/** Skips byte accesses the reference cannot judge (pages past the end of their object). */
export function skipsPastEnd(world: World, op: Extract<Op, { op: "write" | "read" | "word" }>): boolean {
  const rp = pickAlive(world, op.p);
  if (rp === null) return true;
  const addr = resolve(rp.pages, op.at) * PAGE + op.at.offset;
  const length = op.op === "word" ? op.width / 8 : op.length;
  return byteRange(rp, addr, length, op.op === "write" || (op.op === "word" && op.write)) === "skip";
}

export function prepareWord(ctx: Ctx, world: World, op: Extract<Op, { op: "word" }>): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null) return null;
  const vpn = resolve(rp.pages, op.at);
  const bytes = op.width / 8;
  const args = withBad(
    { addr: vpn * PAGE + op.at.offset, value: (op.width === 64 ? BigInt(op.value) : op.value) as unknown },
    op.bad,
  );
  if (args === null) return null;
  const pid = rp.process.pid;
  const process = rp.process;
  const name = `${op.write ? "write" : "read"}U${op.width}`;
  return {
    label: `pid ${pid} ${name}(${addrOf(vpn)} + ${op.at.offset}${op.write ? `, ${String(args.value)}` : ""})${badLabel(op)}`,
    call: () => {
      const addr = args.addr as number;
      if (op.width === 32)
        return op.write ? process.writeU32(addr, args.value as number) : process.readU32(addr);
      return op.write ? process.writeU64(addr, args.value as bigint) : process.readU64(addr);
    },
    judge: (w, outcome) => {
      if (ctx.store !== "bytes") return expectFailure(outcome, "any");
      const value = args.value;
      const valueOk = op.width === 64 ? typeof value === "bigint" : Number.isSafeInteger(value);
      if (op.write && !valueOk) return expectFailure(outcome, "any");
      if (!Number.isSafeInteger(args.addr) || (args.addr as number) < 0) return expectFailure(outcome, "any");
      const start = args.addr as number;
      const pages = byteRange(w.byPid(pid), start, bytes, op.write);
      if (pages === "skip") return fail("unreachable: skipped access judged");
      if (pages === "SIGSEGV") return expectFailure(outcome, "SIGSEGV");
      // A word access that straddles two pages is not generated often enough to resolve halves here.
      if (explainedByAllocation(ctx, w, "cpu", outcome) && pages.length === 1) return OK;
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const first = Math.floor(start / PAGE);
      if (op.write) {
        const encoded = new Uint8Array(8);
        const view = new DataView(encoded.buffer);
        if (op.width === 32) view.setUint32(0, (value as number) >>> 0, true);
        else view.setBigUint64(0, BigInt.asUintN(64, value as bigint), true);
        for (let i = 0; i < bytes; i++)
          writable(pages[Math.floor((start + i) / PAGE) - first]!)[(start + i) % PAGE] = encoded[i]!;
        return OK;
      }
      const raw = new Uint8Array(8);
      for (let i = 0; i < bytes; i++) raw[i] = byteAt(pages, first, start + i);
      const view = new DataView(raw.buffer);
      const want = op.width === 32 ? view.getUint32(0, true) : view.getBigUint64(0, true);
      const got = outcome.ok ? outcome.value : null;
      return got === want ? OK : fail(`${name} returned ${String(got)}, the reference says ${String(want)}`);
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
      // hmmsim's page API (no C counterpart): an aligned address and a positive page count, or EINVAL.
      if (op.bad !== null) return expectFailure(outcome, "any");
      if (count === 0) return expectFailure(outcome, "EINVAL");
      const pages = accessPages(w.byPid(pid), start, start + count - 1, write);
      if (pages === "skip") return fail("unreachable: skipped access judged");
      if (pages === "SIGSEGV") return expectFailure(outcome, "SIGSEGV");
      if (explainedByAllocation(ctx, w, "cpu", outcome)) {
        // fillPages stops at the page that could not come back: learn which it filled from hmmsim.
        if (op.op === "fill")
          pages.forEach((page, i) => {
            const want = filledPage(pageValue(seed, i));
            if (frameHolds(ctx.system, frameAt(ctx.system, process.mm, start + i), want))
              writable(page).set(want);
          });
        return OK;
      }
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
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

function signalOf(pfn: number, vpn: number, what: string): SignalError {
  return new SignalError(pfn === -1 ? "SIGSEGV" : "SIGBUS", vpn * PAGE, what);
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
    call: () => {
      const outcome = decode(ctx.system.kernel.sched.call(label, body(), process.cpu));
      if (!outcome.ok) throw outcome.error;
      return outcome.value;
    },
    thread,
    judge: (w, outcome) => {
      const target = w.byPid(pid).pages.get(vpn);
      if (target === undefined || (target.prot & (write ? 2 : 1)) === 0)
        return expectFailure(outcome, "SIGSEGV", false);
      if (explainedByAllocation(ctx, w, "cpu", outcome)) return OK;
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
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
  const args = withBad({ addr: start * PAGE, npages: count as unknown }, op.bad);
  if (args === null) return null;
  // The pin stops at the first page it cannot take; a page past its object's end is not judged.
  let pinnable = 0;
  while (pinnable < count) {
    const page = rp.pages.get(start + pinnable);
    if (page === undefined || (page.prot & (op.write ? 2 : 1)) === 0) break;
    if (pastEnd(page)) return null;
    pinnable++;
  }
  const pid = rp.process.pid;
  const process = rp.process;
  return {
    label: `pid ${pid} pinPages(${addrOf(start)}, ${String(args.npages)} pages, ${op.write ? "write" : "read"})${badLabel(op)}`,
    call: () => process.pinPages(args.addr as number, args.npages as number, op.write),
    judge: (w, outcome) => {
      if (op.bad !== null) return expectFailure(outcome, "any");
      if (count > 0 && pinnable === 0) return expectFailure(outcome, "EFAULT");
      if (explainedByAllocation(ctx, w, "kernel", outcome)) return OK;
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const pfns = outcome.ok ? outcome.value : null;
      // A fault that fails its allocation ends the pin early (__get_user_pages returns what it got).
      const short = allocationMayFail(w) && Array.isArray(pfns) && pfns.length < pinnable;
      if (!Array.isArray(pfns) || (pfns.length !== pinnable && !short))
        return fail(`pinned ${String(pfns)}, the reference says ${pinnable} pages`);
      const pinned = pfns.length;
      const owner = w.byPid(pid);
      // A write pin faults for write: a private page gets its own copy, as a store would give it.
      if (op.write) for (let i = 0; i < pinned; i++) writable(owner.pages.get(start + i)!);
      if (pinned > 0) {
        w.pins.push({ owner, pfns: pfns as number[], unpinned: false });
        owner.migrationMayFail = true;
      }
      return OK;
    },
  };
}

export function prepareUnpin(_ctx: Ctx, world: World, op: Extract<Op, { op: "unpin" }>): Prepared | null {
  if (world.pins.length === 0) return null;
  const index = op.pin % world.pins.length;
  const pin = world.pins[index]!;
  const args = withBad({ pfns: pin.pfns as unknown }, op.bad);
  if (args === null) return null;
  if (op.bad === null && pin.unpinned) {
    // A second unpin is only misuse when no other pin holds those pages (the ledger counts per page).
    const held = new Map<number, number>();
    for (const other of world.pins)
      if (!other.unpinned) for (const pfn of other.pfns) held.set(pfn, (held.get(pfn) ?? 0) + 1);
    if (pin.pfns.some((pfn) => (held.get(pfn) ?? 0) > 0)) return null;
  }
  const process = pin.owner.process;
  return {
    label: `pid ${process.pid} unpinPages(pin ${index}: [${pin.pfns.join(", ")}])${pin.unpinned ? " again" : ""}${badLabel(op)}`,
    call: () => process.unpinPages(args.pfns as number[]),
    judge: (w, outcome) => {
      const target = w.pins[index]!;
      if (op.bad !== null || target.unpinned || !target.owner.alive) return expectFailure(outcome, "any");
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      target.unpinned = true;
      return OK;
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// tmpfs files

/**
 * An integer offset past 2^53: exact, and Linux takes it (below MAX_LFS_FILESIZE), but the reference
 * cannot count bytes from it in doubles, so such calls are not judged.
 */
function beyondSafe(value: unknown): boolean {
  return typeof value === "number" && Number.isInteger(value) && !Number.isSafeInteger(value);
}

export const FILES_MAX = 4;

export function prepareCreateFile(
  ctx: Ctx,
  world: World,
  op: Extract<Op, { op: "createFile" }>,
): Prepared | null {
  if (world.files.length >= FILES_MAX) return null;
  const args = withBad({ size: (op.pages * PAGE + op.extraBytes) as unknown }, op.bad, ["size"]);
  if (args === null) return null;
  // Sizes past 2^53 are exact integers, and tmpfs takes them (s_maxbytes is MAX_LFS_FILESIZE), but
  // hmmsim keeps sizes as safe integers; the reference does not judge them.
  if (typeof args.size === "number" && Number.isInteger(args.size) && !Number.isSafeInteger(args.size))
    return null;
  const name = `file-${world.files.length}`;
  const system = ctx.system;
  return {
    label: `createFile(${name}, ${String(args.size)} bytes)${badLabel(op)}`,
    call: () => system.createFile(name, args.size as number),
    judge: (w, outcome) => {
      const size = asLong(args.size);
      if (size === null) return expectFailure(outcome, "any");
      if (size < 0n) return expectFailure(outcome, "EINVAL");
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const sizeBytes = Number(size);
      const file = outcome.ok ? (outcome.value as import("../../../src/system.js").TmpFile) : null;
      w.files.push({
        file: file!,
        object: { name, pages: new Map(), sizePages: Math.ceil(sizeBytes / PAGE) },
        sizeBytes,
      });
      return OK;
    },
  };
}

export function preparePwrite(ctx: Ctx, world: World, op: Extract<Op, { op: "pwrite" }>): Prepared | null {
  const rf = world.files[op.file % world.files.length]!;
  const args = withBad(
    { offset: op.offset as unknown, data: pattern(op.seed, op.length) as unknown },
    op.bad,
  );
  if (args === null) return null;
  const file = rf.file;
  return {
    label: `pwrite(${file.name}, ${String(args.offset)}, ${op.length} bytes)${badLabel(op)}`,
    call: () => file.write(args.offset as number, args.data as Uint8Array),
    judge: (w, outcome) => {
      // In the tokens store a pwrite has no bytes to write; one of 0 bytes needs none.
      if (ctx.store !== "bytes" && !(op.length === 0 && op.bad === null && outcome.ok))
        return expectFailure(outcome, "any");
      const offset = asLong(args.offset);
      if (offset === null || !(args.data instanceof Uint8Array)) return expectFailure(outcome, "any");
      const data = args.data;
      const errno = rwCheck(offset, BigInt(data.length));
      if (errno !== null) return expectFailure(outcome, errno);
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      if (outcome.ok && outcome.value !== data.length)
        return fail(`pwrite returned ${String(outcome.value)}, not ${data.length}`);
      const target = w.fileOf(file);
      const at = Number(offset);
      for (let i = 0; i < data.length; i++) {
        const pgoff = Math.floor((at + i) / PAGE);
        let bytes = target.object.pages.get(pgoff);
        if (bytes === undefined) {
          bytes = new Uint8Array(PAGE);
          target.object.pages.set(pgoff, bytes);
        }
        bytes[(at + i) % PAGE] = data[i]!;
      }
      if (data.length > 0 && at + data.length > target.sizeBytes) {
        target.sizeBytes = at + data.length;
        target.object.sizePages = Math.ceil(target.sizeBytes / PAGE);
      }
      return OK;
    },
  };
}

export function preparePread(ctx: Ctx, world: World, op: Extract<Op, { op: "pread" }>): Prepared | null {
  const rf = world.files[op.file % world.files.length]!;
  const args = withBad({ offset: op.offset as unknown, length: op.length as unknown }, op.bad);
  if (args === null || beyondSafe(args.offset)) return null;
  const file = rf.file;
  return {
    label: `pread(${file.name}, ${String(args.offset)}, ${String(args.length)} bytes)${badLabel(op)}`,
    call: () => file.read(args.offset as number, args.length as number),
    judge: (w, outcome) => {
      // The tokens store keeps no bytes: a pread must fail, unless it needed none (holes, past the end).
      if (ctx.store !== "bytes" && !outcome.ok) return expectFailure(outcome, "any");
      const offset = asLong(args.offset);
      const count = asUlong(args.length);
      if (offset === null || count === null) return expectFailure(outcome, "any");
      const errno = rwCheck(offset, count);
      if (errno !== null) return expectFailure(outcome, errno);
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const target = w.fileOf(file);
      const at = Number(offset);
      const length = Math.max(0, Math.min(Number(count), target.sizeBytes - at));
      const got = outcome.ok ? outcome.value : null;
      if (!(got instanceof Uint8Array) || got.length !== length)
        return fail(
          `pread returned ${got instanceof Uint8Array ? `${got.length} bytes` : String(got)}, the reference says ${length}`,
        );
      const wrong = firstDifference(
        got,
        (i) => target.object.pages.get(Math.floor((at + i) / PAGE))?.[(at + i) % PAGE] ?? 0,
      );
      return wrong === null ? OK : fail(wrong);
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Calls on a process that has exited: no C counterpart (a dead process makes no calls), so any
// KernelError with nothing changed.

export function prepareOnExited(
  _ctx: Ctx,
  world: World,
  op: Extract<Op, { op: "onExited" }>,
): Prepared | null {
  const exited = world.exited();
  if (exited.length === 0) return null;
  const process: Process = exited[op.p % exited.length]!.process;
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
    judge: (_w, outcome) => expectFailure(outcome, "any"),
  };
}
