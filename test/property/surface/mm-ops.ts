/**
 * The memory-management system calls against the reference: mmap, munmap, mprotect, mremap,
 * madvise(MADV_DONTNEED), fork and exit. Argument checks come from kernel-checks.ts; what each call
 * then does, from the kernel source named at each function.
 */
import { KernelError } from "../../../src/base/errno.js";
import { dupMm } from "../../../src/mm/fork.js";
import { sysMadvise } from "../../../src/mm/madvise.js";
import type { MmStruct } from "../../../src/mm/mm_types.js";
import {
  MADV_DONTNEED,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_PRIVATE,
  MAP_SHARED,
  sysMunmap,
} from "../../../src/mm/mmap.js";
import { sysMprotect } from "../../../src/mm/mprotect.js";
import type { Process } from "../../../src/process.js";
import {
  asUlong,
  type MremapChecked,
  madviseCheck,
  mmapCheck,
  mprotectCheck,
  mremapCheck,
  munmapCheck,
  TASK_SIZE,
} from "./kernel-checks.js";
import type { Bad, Op } from "./ops.js";
import {
  anyMapped,
  hex,
  isolate,
  type Kind,
  PAGE,
  type PageMap,
  type SharedObject,
  unmap,
  vmaAt,
} from "./pages.js";
import {
  addrOf,
  type Ctx,
  describeHostile,
  expectFailure,
  fail,
  fitRange,
  hostileValue,
  OK,
  type Outcome,
  type Prepared,
  pickAlive,
  resolve,
  type ThreadForm,
  UNCHANGED,
  unlessSuccess,
  type Verdict,
} from "./semantics.js";
import type { RefFile, RefProcess, World } from "./world.js";

const TASK_VPNS = Number(TASK_SIZE) / PAGE;
/** Live processes at most: fork beyond it is skipped. */
export const PROCESSES_MAX = 3;

/** Arguments by name, with the op's hostile value put in; null when the hostile value means "omitted". */
export function withBad<T extends Record<string, unknown>>(
  args: T,
  bad: Bad | null,
  optional: readonly string[] = [],
): T | null {
  if (bad === null || !(bad.arg in args)) return args;
  // undefined or null for an optional argument is the argument left out (the surface's `??`).
  if ((bad.value.kind === "undefined" || bad.value.kind === "null") && optional.includes(bad.arg))
    return null;
  return { ...args, [bad.arg]: hostileValue(bad.value) };
}

/** The C values of the arguments, or null when one has none. */
export function cValues(args: Record<string, unknown>, names: readonly string[]): bigint[] | null {
  const values: bigint[] = [];
  for (const name of names) {
    const value = asUlong(args[name]);
    if (value === null) return null;
    values.push(value);
  }
  return values;
}

export function badLabel(op: { bad: Bad | null }): string {
  return op.bad === null ? "" : ` [${op.bad.arg} = ${describeHostile(op.bad.value)}]`;
}

/** Adds a fresh VMA of `count` pages at vpn. */
function addVma(
  world: World,
  pages: PageMap,
  vpn: number,
  count: number,
  kind: Kind,
  prot: number,
  object: SharedObject | null,
  pgoff: number,
): void {
  const id = world.ids.newVmaId();
  for (let i = 0; i < count; i++)
    pages.set(vpn + i, { vma: id, prot, kind, object, pgoff: pgoff + i, own: null });
}

// ---------------------------------------------------------------------------------------------------
// mmap

export function prepareMmap(_ctx: Ctx, world: World, op: Extract<Op, { op: "mmap" }>): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null) return null;
  const shared = op.kind === "anonShared" || op.kind === "fileShared";
  const anonymous = op.kind === "anonPrivate" || op.kind === "anonShared";
  const rf = anonymous ? null : world.files[op.file % world.files.length]!;
  const placeFlags = op.place === "fixed" ? MAP_FIXED : op.place === "noreplace" ? MAP_FIXED_NOREPLACE : 0;
  const start = resolve(rp.pages, op.at);
  // A hint (no MAP_FIXED) accepts any value in C; hostile addresses go with MAP_FIXED only.
  if (op.bad?.arg === "addr" && op.place === "any") return null;
  const args = withBad(
    {
      length: op.pages * PAGE,
      addr: op.place === "any" ? 0 : start * PAGE,
      prot: op.prot,
      flags: (shared ? MAP_SHARED : MAP_PRIVATE) | (anonymous ? MAP_ANONYMOUS : 0) | placeFlags,
      offset: op.fileOffset * PAGE,
    },
    op.bad,
    ["addr", "prot", "flags", "offset"],
  );
  if (args === null || mapsTooMuch(args, rf !== null)) return null;
  const pid = rp.process.pid;
  const process = rp.process;
  const file = rf?.file;
  return {
    label: `pid ${pid} mmap(${addrOf(start)} ${op.place}, ${op.pages} pages, ${op.kind}, prot ${op.prot}${file ? `, ${file.name} +${op.fileOffset}` : ""})${badLabel(op)}`,
    call: () =>
      process.mmap(args.length as number, {
        addr: args.addr as number,
        prot: args.prot as number,
        flags: args.flags as number,
        offset: args.offset as number,
        ...(file === undefined ? {} : { file }),
      }),
    judge: (w, outcome) => judgeMmap(w, w.byPid(pid), outcome, args, rf === null ? null : w.fileOf(rf.file)),
  };
}

/**
 * Mappings larger than this are not made: Linux's default overcommit heuristic (__vm_enough_memory)
 * refuses a writable private or shared mapping larger than RAM and swap with ENOMEM, and hmmsim has
 * no overcommit accounting (a documented difference), so such calls are not judged.
 */
const MAPPING_PAGES_MAX = 4096;

function mapsTooMuch(args: Record<string, unknown>, hasFile: boolean): boolean {
  const values = cValues(args, ["addr", "length", "prot", "flags", "offset"]);
  if (values === null) return false;
  const checked = mmapCheck(values[0]!, values[1]!, values[2]!, values[3]!, values[4]!, hasFile);
  return checked.errno === null && (checked.unmodelled || checked.pages > MAPPING_PAGES_MAX);
}

/** do_mmap (mm/mmap.c) after the argument checks: MAP_FIXED replaces, NOREPLACE refuses with EEXIST. */
function judgeMmap(
  world: World,
  rp: RefProcess,
  outcome: Outcome,
  args: Record<string, unknown>,
  rf: RefFile | null,
): Verdict {
  const values = cValues(args, ["addr", "length", "prot", "flags", "offset"]);
  if (values === null) return expectFailure(outcome, "any");
  const [addr, length, prot, flags, offset] = values as [bigint, bigint, bigint, bigint, bigint];
  const checked = mmapCheck(addr, length, prot, flags, offset, rf !== null);
  if (checked.errno !== null) return expectFailure(outcome, checked.errno);
  const { pages, fixedVpn } = checked;
  if (fixedVpn !== null && checked.noreplace && anyMapped(rp.pages, fixedVpn, fixedVpn + pages))
    return expectFailure(outcome, "EEXIST");
  if (checked.late !== null) return expectFailure(outcome, checked.late);
  const failed = unlessSuccess(outcome);
  if (failed !== null) return failed;
  const got = outcome.ok ? outcome.value : 0;
  if (typeof got !== "number" || got % PAGE !== 0)
    return fail(`mmap returned ${String(got)}, not a page address`);
  const vpn = got / PAGE;
  if (fixedVpn !== null) {
    if (vpn !== fixedVpn) return fail(`MAP_FIXED at ${hex(fixedVpn)} returned ${hex(vpn)}`);
    unmap(world.ids, rp.pages, vpn, vpn + pages);
  } else if (anyMapped(rp.pages, vpn, vpn + pages)) {
    return fail(`mmap chose ${hex(vpn)}, which overlaps a mapping`);
  }
  const anonymous = (flags & 0x20n) !== 0n;
  const kind: Kind = anonymous
    ? checked.shared
      ? "anonShared"
      : "anonPrivate"
    : checked.shared
      ? "fileShared"
      : "filePrivate";
  const object = anonymous ? (checked.shared ? world.ids.newObject(pages) : null) : rf!.object;
  addVma(world, rp.pages, vpn, pages, kind, checked.prot, object, anonymous ? 0 : checked.pgoff);
  return OK;
}

// ---------------------------------------------------------------------------------------------------
// munmap, mprotect, madvise

type RangeOp = Extract<Op, { op: "munmap" | "mprotect" | "madvise" }>;

function rangeArgs(rp: RefProcess, op: RangeOp): { start: number; args: Record<string, unknown> } | null {
  const start = resolve(rp.pages, op.at);
  const pages = op.op === "munmap" ? op.pages : fitRange(rp.pages, op.at, start, op.pages);
  const args = withBad(
    {
      addr: start * PAGE,
      length: pages * PAGE,
      prot: op.op === "mprotect" ? op.prot : 0,
      advice: MADV_DONTNEED,
    },
    op.bad,
  );
  return args === null ? null : { start, args };
}

export function prepareRange(ctx: Ctx, world: World, op: RangeOp): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null) return null;
  const resolved = rangeArgs(rp, op);
  if (resolved === null) return null;
  const { start, args } = resolved;
  const pid = rp.process.pid;
  const process = rp.process;
  const k = ctx.system.kernel;
  const label = `pid ${pid} ${op.op}(${addrOf(start)}, ${op.bad?.arg === "length" ? String(args.length) : `${(args.length as number) / PAGE} pages`}${op.op === "mprotect" ? `, prot ${op.prot}` : ""})${badLabel(op)}`;
  const a = args.addr as number;
  const len = args.length as number;
  const call = () => {
    if (op.op === "munmap") return process.munmap(a, len);
    if (op.op === "mprotect") return process.mprotect(a, len, args.prot as number);
    return process.madvise(a, len, args.advice as number);
  };
  const thread = (): ThreadForm => ({
    name: label,
    cpu: process.cpu,
    body:
      op.op === "munmap"
        ? sysMunmap(k, process.mm, a, len)
        : op.op === "mprotect"
          ? sysMprotect(k, process.mm, a, len, args.prot as number)
          : sysMadvise(k, process.mm, a, len, args.advice as number),
    decode: decodeErrno(label),
  });
  const judge = (w: World, outcome: Outcome): Verdict => {
    const target = w.byPid(pid);
    if (op.op === "munmap") return judgeMunmap(w, target, outcome, args);
    if (op.op === "mprotect") return judgeMprotect(w, target, outcome, args);
    return judgeMadvise(target, outcome, args);
  };
  return op.bad === null ? { label, call, thread, judge } : { label, call, judge };
}

/** A kernel path's return value as the surface reports it: -errno is a KernelError. */
export function decodeErrno(what: string): (result: unknown) => Outcome {
  return (result) =>
    typeof result === "number" && result < 0
      ? { ok: false, error: new KernelError(-result, what) }
      : { ok: true, value: result === 0 ? undefined : result };
}

/** do_vmi_munmap (mm/vma.c): unmapping what is not mapped succeeds. */
function judgeMunmap(world: World, rp: RefProcess, outcome: Outcome, args: Record<string, unknown>): Verdict {
  const values = cValues(args, ["addr", "length"]);
  if (values === null) return expectFailure(outcome, "any");
  const checked = munmapCheck(values[0]!, values[1]!);
  if (checked.errno !== null) return expectFailure(outcome, checked.errno);
  const failed = unlessSuccess(outcome);
  if (failed !== null) return failed;
  unmap(world.ids, rp.pages, checked.start, checked.end);
  return OK;
}

/** The lowest mapped page in [start, end), or -1. */
function firstMapped(pages: PageMap, start: number, end: number): number {
  let first = -1;
  for (const vpn of pages.keys()) if (vpn >= start && vpn < end && (first < 0 || vpn < first)) first = vpn;
  return first;
}

/**
 * do_mprotect_pkey (mm/mprotect.c): with no VMA at `start`, ENOMEM and nothing changed; otherwise the
 * loop changes each VMA in turn and stops at the first gap, returning ENOMEM with the VMAs before the
 * gap already changed (the kernel does not undo them).
 */
function judgeMprotect(
  world: World,
  rp: RefProcess,
  outcome: Outcome,
  args: Record<string, unknown>,
): Verdict {
  const values = cValues(args, ["addr", "length", "prot"]);
  if (values === null) return expectFailure(outcome, "any");
  const checked = mprotectCheck(values[0]!, values[1]!, values[2]!);
  if (checked.errno !== null) return expectFailure(outcome, checked.errno);
  if (checked.noop) return outcome.ok ? UNCHANGED : fail(`mprotect of length 0 succeeds, got ${outcome.ok}`);
  const { start, end } = checked;
  if (firstMapped(rp.pages, start, end) !== start) return expectFailure(outcome, "ENOMEM");
  let stop = start;
  while (stop < end && rp.pages.has(stop)) stop++;
  const verdict = stop < end ? expectFailure(outcome, "ENOMEM", false) : (unlessSuccess(outcome) ?? OK);
  if (!verdict.ok) return verdict;
  isolate(world.ids, rp.pages, start, stop);
  for (let vpn = start; vpn < stop; vpn++) rp.pages.get(vpn)!.prot = checked.prot;
  return OK;
}

/**
 * madvise_walk_vmas with MADV_DONTNEED (mm/madvise.c): every mapped page in the range is zapped
 * (private pages read zeros or the file again, shared pages keep their data), and a hole anywhere in
 * the range makes the call return ENOMEM after zapping.
 */
function judgeMadvise(rp: RefProcess, outcome: Outcome, args: Record<string, unknown>): Verdict {
  const values = cValues(args, ["addr", "length", "advice"]);
  if (values === null) return expectFailure(outcome, "any");
  const checked = madviseCheck(values[0]!, values[1]!, values[2]!);
  if (checked.errno !== null) return expectFailure(outcome, checked.errno);
  if (checked.noop) return outcome.ok ? UNCHANGED : fail(`madvise of length 0 succeeds, got ${outcome.ok}`);
  let mapped = 0;
  for (const [vpn, page] of rp.pages) {
    if (vpn < checked.start || vpn >= checked.end) continue;
    mapped++;
    if (page.kind === "anonPrivate" || page.kind === "filePrivate") page.own = null;
  }
  if (checked.hole || mapped < checked.end - checked.start) return expectFailure(outcome, "ENOMEM", false);
  return unlessSuccess(outcome) ?? OK;
}

// ---------------------------------------------------------------------------------------------------
// mremap

export function prepareMremap(_ctx: Ctx, world: World, op: Extract<Op, { op: "mremap" }>): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null) return null;
  const oldStart = resolve(rp.pages, op.at);
  const oldPages = fitRange(rp.pages, op.at, oldStart, op.oldPages, true);
  const fixed = (op.flags & 2) !== 0;
  const toStart = fixed ? resolve(rp.pages, op.to) : 0;
  // Without MREMAP_FIXED the kernel never looks at new_addr (check_mremap_params).
  if (op.bad?.arg === "newAddr" && !fixed) return null;
  const args = withBad(
    {
      oldAddr: oldStart * PAGE,
      oldLength: oldPages * PAGE,
      newLength: op.newPages * PAGE,
      flags: op.flags,
      newAddr: toStart * PAGE,
    },
    op.bad,
    ["flags", "newAddr"],
  );
  if (args === null) return null;
  const values = cValues(args, ["oldAddr", "oldLength", "newLength", "flags", "newAddr"]);
  const checked =
    values === null ? null : mremapCheck(values[0]!, values[1]!, values[2]!, values[3]!, values[4]!);
  if (checked !== null && checked.errno === null) {
    if (checked.unmodelled !== null || checked.newPages > MAPPING_PAGES_MAX) return null;
    // remap_move (mm/mremap.c, 6.17): a same-size MREMAP_FIXED move of a range beyond its first VMA
    // moves every VMA in it; the reference does not model that, so such calls are not made.
    const vma = vmaAt(rp.pages, checked.oldVpn);
    if (
      checked.fixed &&
      checked.oldPages === checked.newPages &&
      vma !== null &&
      checked.oldVpn + checked.oldPages > vma.end
    )
      return null;
    // Duplicating a shared mapping (old_len 0) is not modelled by hmmsim.
    if (checked.oldPages === 0 && vma !== null && rp.pages.get(checked.oldVpn)!.kind !== "anonPrivate")
      return null;
  }
  const pid = rp.process.pid;
  const process = rp.process;
  return {
    label: `pid ${pid} mremap(${addrOf(oldStart)}, ${oldPages} -> ${op.newPages} pages, flags ${op.flags}${fixed ? `, to ${addrOf(toStart)}` : ""})${badLabel(op)}`,
    call: () =>
      process.mremap(
        args.oldAddr as number,
        args.oldLength as number,
        args.newLength as number,
        args.flags as number,
        args.newAddr as number,
      ),
    judge: (w, outcome) => {
      if (checked === null) return expectFailure(outcome, "any");
      if (checked.errno !== null) return expectFailure(outcome, checked.errno);
      return judgeMremap(w, w.byPid(pid), outcome, checked);
    },
  };
}

/**
 * do_mremap (mm/mremap.c) after check_mremap_params: vma_lookup of the old address (EFAULT without a
 * VMA), check_prep_vma (an old length 0 of a private mapping EINVAL; a range past the VMA's end EFAULT,
 * where a shrink counts only its new length), then resize in place, move (MREMAP_MAYMOVE, or
 * mremap_to for MREMAP_FIXED: the target unmapped first, a shrink done before the move), or ENOMEM.
 * Without MREMAP_FIXED a shrink or a same-size call needs only the VMA at the old address: the kernel
 * unmaps [addr + new_len, addr + old_len) whatever is there.
 */
function judgeMremap(world: World, rp: RefProcess, outcome: Outcome, c: MremapChecked): Verdict {
  const { oldVpn, oldPages, newPages, fixed, mayMove } = c;
  const vma = vmaAt(rp.pages, oldVpn);
  if (vma === null) return expectFailure(outcome, "EFAULT");
  const ids = world.ids;
  if (!fixed && newPages <= oldPages) {
    const failed = unlessSuccess(outcome);
    if (failed !== null) return failed;
    if (outcome.ok && outcome.value !== oldVpn * PAGE)
      return fail(`a shrink in place returned ${String(outcome.value)}`);
    if (newPages < oldPages) unmap(ids, rp.pages, oldVpn + newPages, oldVpn + oldPages);
    return OK;
  }
  if (oldPages === 0) return expectFailure(outcome, "EINVAL");
  const checkedPages = fixed && newPages < oldPages ? newPages : oldPages;
  if (oldVpn + checkedPages > vma.end) return expectFailure(outcome, "EFAULT");
  const oldEnd = oldVpn + oldPages;
  const newEnd = oldVpn + newPages;
  if (!fixed && oldEnd === vma.end && !anyMapped(rp.pages, vma.end, newEnd) && newEnd <= TASK_VPNS) {
    const failed = unlessSuccess(outcome);
    if (failed !== null) return failed;
    if (outcome.ok && outcome.value !== oldVpn * PAGE)
      return fail(`a growth in place returned ${String(outcome.value)}`);
    const last = rp.pages.get(vma.end - 1)!;
    for (let vpn = vma.end; vpn < newEnd; vpn++)
      rp.pages.set(vpn, { ...last, pgoff: last.pgoff + (vpn - (vma.end - 1)), own: null });
    return OK;
  }
  if (!fixed && !mayMove) return expectFailure(outcome, "ENOMEM");
  const failed = unlessSuccess(outcome);
  if (failed !== null) return failed;
  const got = outcome.ok ? outcome.value : 0;
  if (typeof got !== "number" || got % PAGE !== 0) return fail(`mremap returned ${String(got)}`);
  const newStart = got / PAGE;
  if (fixed) {
    if (newStart !== c.newVpn) return fail(`MREMAP_FIXED to ${hex(c.newVpn)} returned ${hex(newStart)}`);
    unmap(ids, rp.pages, newStart, newStart + newPages);
  } else if (anyMapped(rp.pages, newStart, newStart + newPages)) {
    return fail(`mremap moved to ${hex(newStart)}, which overlaps a mapping`);
  }
  const moved = Math.min(oldPages, newPages);
  if (newPages < oldPages) unmap(ids, rp.pages, oldVpn + newPages, oldEnd);
  isolate(ids, rp.pages, oldVpn, oldVpn + moved);
  const id = ids.newVmaId();
  const movedPages = [];
  for (let i = 0; i < moved; i++) {
    movedPages.push(rp.pages.get(oldVpn + i)!);
    rp.pages.delete(oldVpn + i);
  }
  movedPages.forEach((page, i) => {
    page.vma = id;
    rp.pages.set(newStart + i, page);
  });
  const last = movedPages[moved - 1]!;
  for (let i = moved; i < newPages; i++)
    rp.pages.set(newStart + i, { ...last, pgoff: last.pgoff + (i - (moved - 1)), own: null });
  return OK;
}

// ---------------------------------------------------------------------------------------------------
// fork and exit

export function prepareFork(ctx: Ctx, world: World, op: { p: number }): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null || world.alive().length >= PROCESSES_MAX) return null;
  const pid = rp.process.pid;
  const process = rp.process;
  const label = `pid ${pid} fork()`;
  return {
    label,
    call: () => process.fork(),
    thread: () => ({
      name: label,
      cpu: process.cpu,
      body: dupMm(ctx.system.kernel, process.mm),
      decode: (result) =>
        typeof result === "number"
          ? { ok: false, error: new KernelError(-result, "fork") }
          : { ok: true, value: ctx.system.adoptProcess(result as MmStruct) },
    }),
    judge: (w, outcome) => judgeFork(w, w.byPid(pid), outcome),
  };
}

/** dup_mmap (kernel/fork.c): the child gets a copy of private memory and shares MAP_SHARED memory. */
function judgeFork(world: World, parent: RefProcess, outcome: Outcome): Verdict {
  const failed = unlessSuccess(outcome);
  if (failed !== null) return failed;
  const child = outcome.ok ? (outcome.value as Process) : null;
  if (child === null || typeof child.pid !== "number") return fail("fork returned no process");
  const pages: PageMap = new Map();
  for (const [vpn, page] of parent.pages) pages.set(vpn, { ...page, own: page.own?.slice() ?? null });
  parent.migrationMayFail = true;
  world.processes.push({ process: child, pages, alive: true, migrationMayFail: true });
  return OK;
}

export function prepareExit(_ctx: Ctx, world: World, op: { p: number }): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null || world.alive().length <= 1) return null;
  const pid = rp.process.pid;
  const process = rp.process;
  return {
    label: `pid ${pid} exit()`,
    call: () => process.exit(),
    judge: (w, outcome) => {
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const target = w.byPid(pid);
      target.alive = false;
      target.pages = new Map();
      // exit_files: the process's device files close with it.
      for (const rf of w.fds) if (rf.owner === target) rf.closed = true;
      return OK;
    },
  };
}
