/**
 * The memory-management system calls against the reference: mmap, munmap, mprotect, mremap (with
 * MREMAP_DONTUNMAP and remap_move), madvise (MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE,
 * MADV_HUGEPAGE, MADV_NOHUGEPAGE, and advice hmmsim refuses), mmap of a device file, fork and exit. Argument checks come
 * from kernel-checks.ts; what each call then does, from the kernel source named at each function.
 */
import { KernelError } from "../../../src/base/errno.js";
import type { OpenFile } from "../../../src/device.js";
import { dupMm } from "../../../src/mm/fork.js";
import { sysMadvise } from "../../../src/mm/madvise.js";
import type { MmStruct } from "../../../src/mm/mm_types.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_PRIVATE,
  MAP_SHARED,
  sysMunmap,
} from "../../../src/mm/mmap.js";
import { sysMprotect } from "../../../src/mm/mprotect.js";
import type { Process } from "../../../src/process.js";
import type { Kfn } from "../../../src/sched/thread.js";
import {
  cInt,
  MADV_DONTNEED,
  MADV_DONTNEED_LOCKED,
  MADV_FREE,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MMAP_MIN_ADDR,
  type MremapChecked,
  madviseCheck,
  mmapCheck,
  mprotectCheck,
  mremapCheck,
  munmapCheck,
  PROT_GROWSDOWN,
  registers,
  TASK_SIZE,
} from "./kernel-checks.js";
import type { Bad, Op } from "./ops.js";
import {
  adviseHuge,
  anyMapped,
  hex,
  isPrivate,
  type Kind,
  movePages,
  PAGE,
  type PageMap,
  protect,
  type RefPage,
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
const MMAP_MIN_VPN = Number(MMAP_MIN_ADDR) / PAGE;
/** MAP_32BIT places a mapping below 2 GiB. */
const BELOW_2G_VPN = 2 ** 31 / PAGE;
/** Live processes at most: fork beyond it is skipped. */
export const PROCESSES_MAX = 3;

/**
 * Arguments by name, with the op's hostile value put in; null (the call is not made) when the hostile
 * value is `undefined` for an argument the surface takes as optional: that is the argument left out,
 * which the ordinary calls already cover. (null is not left out: it is a value no register holds.)
 */
export function withBad<T extends Record<string, unknown>>(
  args: T,
  bad: Bad | null,
  optional: readonly string[] = [],
): T | null {
  if (bad === null || !(bad.arg in args)) return args;
  if (bad.value.kind === "undefined" && optional.includes(bad.arg)) return null;
  return { ...args, [bad.arg]: hostileValue(bad.value) };
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
  template: Omit<RefPage, "vma" | "pgoff" | "own">,
  pgoff: number,
): void {
  const id = world.ids.newVmaId();
  for (let i = 0; i < count; i++) pages.set(vpn + i, { ...template, vma: id, pgoff: pgoff + i, own: null });
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
 * mmap of an open device file (lib/test_hmm.c dmirror_fops_mmap, 6.0): the fd must be the caller's
 * own and open (EBADF: fdget); under 4.14 the driver has no ->mmap (ENODEV, do_mmap). Otherwise every
 * page of the new VMA is a zeroed page of system memory inserted at once (vm_insert_page, VM_MIXEDMAP):
 * read as zeros, written in place through MAP_SHARED, copied on write through MAP_PRIVATE (insert_page
 * maps it read-only there), as a file's page would be. The driver ignores the offset.
 */
export function prepareMmapDevice(
  ctx: Ctx,
  world: World,
  op: Extract<Op, { op: "mmapDevice" }>,
): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null || world.fds.length === 0) return null;
  const target = world.fds[op.fd % world.fds.length]!;
  const fd = target.fd;
  const pid = rp.process.pid;
  const process = rp.process;
  const start = resolve(rp.pages, op.at);
  const fixed = op.place === "fixed";
  const flags = (op.shared ? MAP_SHARED : MAP_PRIVATE) | (fixed ? MAP_FIXED : 0);
  return {
    label: `pid ${pid} mmap(${fixed ? `${addrOf(start)} fixed` : "any"}, ${op.pages} pages, ${op.shared ? "MAP_SHARED" : "MAP_PRIVATE"}, prot ${op.prot}, dmirror ${fd.mirror.device.minor} fd ${fd.fd} of pid ${fd.process.pid}${target.closed ? ", closed" : ""})`,
    call: () =>
      process.mmap(op.pages * PAGE, {
        addr: fixed ? start * PAGE : 0,
        prot: op.prot,
        flags,
        file: fd,
      }),
    judge: (w, outcome) => {
      const rf = w.fdOf(fd);
      if (rf.closed || rf.holder.process !== process) return expectFailure(outcome, "EBADF");
      if (ctx.protocol !== "modern") return expectFailure(outcome, "ENODEV");
      const failed = unlessSuccess(outcome);
      if (failed !== null) return failed;
      const got = outcome.ok ? outcome.value : 0;
      if (typeof got !== "number" || got % PAGE !== 0)
        return fail(`mmap returned ${String(got)}, not a page address`);
      const vpn = got / PAGE;
      const owner = w.byPid(pid);
      if (fixed) {
        if (vpn !== start) return fail(`MAP_FIXED at ${hex(start)} returned ${hex(vpn)}`);
        unmap(w.ids, owner.pages, vpn, vpn + op.pages);
      } else if (anyMapped(owner.pages, vpn, vpn + op.pages)) {
        return fail(`mmap chose ${hex(vpn)}, which overlaps a mapping`);
      }
      const object = w.ids.newObject(op.pages);
      const template = {
        prot: op.prot,
        kind: (op.shared ? "fileShared" : "filePrivate") as Kind,
        object,
        driver: true as const,
      };
      addVma(w, owner.pages, vpn, op.pages, template, 0);
      return OK;
    },
  };
}

/**
 * Mappings larger than this are not made: Linux's default overcommit heuristic (__vm_enough_memory)
 * refuses a writable private or shared mapping larger than RAM and swap with ENOMEM, and hmmsim has
 * no overcommit accounting (a documented difference, src/mm/mmap.ts), so such calls are not judged.
 */
const MAPPING_PAGES_MAX = 4096;

function mapsTooMuch(args: Record<string, unknown>, hasFile: boolean): boolean {
  const values = registers(args, ["addr", "length", "prot", "flags", "offset"]);
  if (values === null) return false;
  const checked = mmapCheck(values[0]!, values[1]!, values[2]!, values[3]!, values[4]!, hasFile);
  return checked.errno === null && checked.late === null && checked.pages > MAPPING_PAGES_MAX;
}

/** do_mmap (mm/mmap.c) after the argument checks: MAP_FIXED replaces, NOREPLACE refuses with EEXIST. */
function judgeMmap(
  world: World,
  rp: RefProcess,
  outcome: Outcome,
  args: Record<string, unknown>,
  rf: RefFile | null,
): Verdict {
  const values = registers(args, ["addr", "length", "prot", "flags", "offset"]);
  if (values === null) return expectFailure(outcome, "EINVAL");
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
  } else {
    if (anyMapped(rp.pages, vpn, vpn + pages))
      return fail(`mmap chose ${hex(vpn)}, which overlaps a mapping`);
    if (vpn < MMAP_MIN_VPN || vpn + pages > TASK_VPNS)
      return fail(`mmap chose ${hex(vpn)}, outside user space`);
    if (checked.below2G && vpn + pages > BELOW_2G_VPN) return fail(`MAP_32BIT chose ${hex(vpn)}`);
  }
  const kind: Kind = checked.anonymous
    ? checked.shared
      ? "anonShared"
      : "anonPrivate"
    : checked.shared
      ? "fileShared"
      : "filePrivate";
  const object = checked.anonymous ? (checked.shared ? world.ids.newObject(pages) : null) : rf!.object;
  const template = {
    prot: checked.prot,
    kind,
    object,
    ...(checked.noHuge ? { thp: "nohuge" as const } : {}),
  };
  addVma(world, rp.pages, vpn, pages, template, checked.anonymous ? 0 : checked.pgoff);
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
      advice: op.op === "madvise" ? op.advice : 0,
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
  const extra =
    op.op === "mprotect" ? `, prot ${op.prot}` : op.op === "madvise" ? `, advice ${String(args.advice)}` : "";
  const label = `pid ${pid} ${op.op}(${addrOf(start)}, ${op.bad?.arg === "length" ? String(args.length) : `${(args.length as number) / PAGE} pages`}${extra})${badLabel(op)}`;
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
    return judgeMadvise(w, target, outcome, args);
  };
  const tag = op.op === "madvise" ? (ADVICE_NAMES[op.advice] ?? "(other advice)") : undefined;
  return op.bad === null
    ? { label, mm: process.mm, call, thread, judge, ...(tag === undefined ? {} : { tag }) }
    : { label, call, judge, ...(tag === undefined ? {} : { tag }) };
}

const ADVICE_NAMES: Record<number, string> = {
  [MADV_DONTNEED]: "MADV_DONTNEED",
  [MADV_FREE]: "MADV_FREE",
  [MADV_HUGEPAGE]: "MADV_HUGEPAGE",
  [MADV_NOHUGEPAGE]: "MADV_NOHUGEPAGE",
  [MADV_DONTNEED_LOCKED]: "MADV_DONTNEED_LOCKED",
};

/** A kernel path's return value as the surface reports it: -errno is a KernelError. */
export function decodeErrno(what: string): (result: unknown) => Outcome {
  return (result) =>
    typeof result === "number" && result < 0
      ? { ok: false, error: new KernelError(-result, what) }
      : { ok: true, value: result === 0 ? undefined : result };
}

/** do_vmi_munmap (mm/vma.c): unmapping what is not mapped succeeds. */
function judgeMunmap(world: World, rp: RefProcess, outcome: Outcome, args: Record<string, unknown>): Verdict {
  const values = registers(args, ["addr", "length"]);
  if (values === null) return expectFailure(outcome, "EINVAL");
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
 * do_mprotect_pkey (mm/mprotect.c): with no VMA in the range, ENOMEM; PROT_GROWSDOWN then needs the
 * first VMA to grow down (none does: EINVAL); otherwise a range starting in a gap is ENOMEM and
 * PROT_GROWSUP is EINVAL (x86 has no VM_GROWSUP). Then the loop changes each VMA in turn
 * (mprotect_fixup, which leaves alone, unsplit, a VMA whose flags do not change) and stops at the first
 * gap, returning ENOMEM with the VMAs before the gap already changed (the kernel does not undo them).
 * No EACCES: every VMA hmmsim makes has VM_MAYREAD, VM_MAYWRITE and VM_MAYEXEC.
 */
function judgeMprotect(
  world: World,
  rp: RefProcess,
  outcome: Outcome,
  args: Record<string, unknown>,
): Verdict {
  const values = registers(args, ["addr", "length", "prot"]);
  if (values === null) return expectFailure(outcome, "EINVAL");
  const checked = mprotectCheck(values[0]!, values[1]!, values[2]!);
  if (checked.errno !== null) return expectFailure(outcome, checked.errno);
  if (checked.noop) return outcome.ok ? UNCHANGED : fail(`mprotect of length 0 succeeds, got ${outcome.ok}`);
  const { start, end } = checked;
  const first = firstMapped(rp.pages, start, end);
  if (first < 0) return expectFailure(outcome, "ENOMEM");
  if ((checked.grows & PROT_GROWSDOWN) !== 0n) return expectFailure(outcome, "EINVAL");
  if (first !== start) return expectFailure(outcome, "ENOMEM");
  if (checked.grows !== 0n) return expectFailure(outcome, "EINVAL");
  let stop = start;
  while (stop < end && rp.pages.has(stop)) stop++;
  const verdict = stop < end ? expectFailure(outcome, "ENOMEM", false) : (unlessSuccess(outcome) ?? OK);
  if (!verdict.ok) return verdict;
  protect(world.ids, rp.pages, start, stop, checked.prot);
  return OK;
}

/**
 * do_madvise and madvise_walk_vmas (mm/madvise.c): the advice is applied VMA by VMA over the mapped
 * part of the range; a gap, or a range running past the last VMA, makes the call return ENOMEM after
 * the walk (with nothing mapped at or after the start: ENOMEM at once). Per VMA:
 * - MADV_DONTNEED, MADV_DONTNEED_LOCKED (madvise_dontneed_single_vma): the pages are zapped: a private
 *   page reads zeros or the file again, a shared page keeps its data;
 * - MADV_FREE (madvise_free_single_vma): EINVAL for a VMA that is not private anonymous
 *   (vma_is_anonymous), which stops the walk there; otherwise the pages are lazily freed. Linux may
 *   then reclaim a clean one (it reads zeros) or keep it; hmmsim has no reclaim and keeps every page's
 *   data (src/mm/madvise.ts, documented), so the reference keeps the bytes;
 * - MADV_HUGEPAGE, MADV_NOHUGEPAGE (hugepage_madvise, madvise_update_vma): the VMA flag is set (the
 *   other cleared), splitting the VMA to the range where it changes; no other effect (no THP).
 */
function judgeMadvise(
  world: World,
  rp: RefProcess,
  outcome: Outcome,
  args: Record<string, unknown>,
): Verdict {
  const values = registers(args, ["addr", "length"]);
  const advice = cInt(args.advice);
  if (values === null || advice === null) return expectFailure(outcome, "EINVAL");
  const checked = madviseCheck(values[0]!, values[1]!, advice);
  if (checked.errno !== null) return expectFailure(outcome, checked.errno);
  if (checked.noop) return outcome.ok ? UNCHANGED : fail(`madvise of length 0 succeeds, got ${outcome.ok}`);
  const { start, end } = checked;
  const mapped = [...rp.pages.keys()].filter((vpn) => vpn >= start && vpn < end).sort((a, b) => a - b);
  if (mapped.length === 0 || (checked.hole && mapped.length === 0)) return expectFailure(outcome, "ENOMEM");
  const hole = checked.hole || mapped.length < end - start;
  let stopped: string | null = null;
  for (const vpn of mapped) {
    const page = rp.pages.get(vpn)!;
    if (advice === MADV_DONTNEED || advice === MADV_DONTNEED_LOCKED) {
      if (isPrivate(page.kind)) page.own = null;
      // zap_page_range_single drops the inserted page too, and nothing can fault it back.
      if (page.driver) page.gone = true;
    } else if (advice === MADV_FREE) {
      if (page.kind !== "anonPrivate") {
        stopped = "EINVAL";
        break;
      }
    }
  }
  if (advice === MADV_HUGEPAGE || advice === MADV_NOHUGEPAGE)
    adviseHuge(world.ids, rp.pages, start, end, advice === MADV_HUGEPAGE ? "huge" : "nohuge");
  if (stopped !== null) return expectFailure(outcome, stopped, false);
  if (hole) return expectFailure(outcome, "ENOMEM", false);
  return unlessSuccess(outcome) ?? OK;
}

// ---------------------------------------------------------------------------------------------------
// mremap

export function prepareMremap(_ctx: Ctx, world: World, op: Extract<Op, { op: "mremap" }>): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null) return null;
  const oldStart = resolve(rp.pages, op.at);
  const oldPages = fitRange(rp.pages, op.at, oldStart, op.oldPages, !op.acrossVmas);
  const newPages = op.sameSize ? oldPages : op.newPages;
  const toStart = resolve(rp.pages, op.to);
  const args = withBad(
    {
      oldAddr: oldStart * PAGE,
      oldLength: oldPages * PAGE,
      newLength: newPages * PAGE,
      flags: op.flags,
      newAddr: toStart * PAGE,
    },
    op.bad,
    ["flags", "newAddr"],
  );
  if (args === null) return null;
  // A device-file mapping is not remapped: what mremap does with a VM_MIXEDMAP VMA (vma_to_resize,
  // move_page_tables of inserted pages) is left to other tests.
  for (let i = 0; i < oldPages; i++) if (rp.pages.get(oldStart + i)?.driver) return null;
  const values = registers(args, ["oldAddr", "oldLength", "newLength", "flags", "newAddr"]);
  const checked =
    values === null ? null : mremapCheck(values[0]!, values[1]!, values[2]!, values[3]!, values[4]!);
  // Growing or moving past MAPPING_PAGES_MAX is not judged (no overcommit accounting, see mmap).
  if (
    checked !== null &&
    checked.errno === null &&
    checked.newLen > BigInt(MAPPING_PAGES_MAX * PAGE) &&
    (checked.newLen > checked.oldLen || checked.fixed || checked.dontUnmap)
  )
    return null;
  const pid = rp.process.pid;
  const process = rp.process;
  const flagNames = [
    (op.flags & 1) !== 0 ? "MAYMOVE" : "",
    (op.flags & 2) !== 0 ? "FIXED" : "",
    (op.flags & 4) !== 0 ? "DONTUNMAP" : "",
  ].filter((name) => name !== "");
  return {
    tag: flagNames.length === 0 ? "(no flags)" : `(${flagNames.join("|")})`,
    label: `pid ${pid} mremap(${addrOf(oldStart)}, ${oldPages} -> ${newPages} pages, flags ${op.flags}, to ${addrOf(toStart)})${badLabel(op)}`,
    call: () =>
      process.mremap(
        args.oldAddr as number,
        args.oldLength as number,
        args.newLength as number,
        args.flags as number,
        args.newAddr as number,
      ),
    judge: (w, outcome) => {
      if (checked === null) return expectFailure(outcome, "EINVAL");
      if (checked.errno !== null) return expectFailure(outcome, checked.errno);
      return new Remap(w, w.byPid(pid), checked).judge(outcome);
    },
  };
}

/** A step of the remap that fails with an errno, having changed what the steps before it changed. */
class RemapError {
  constructor(
    readonly errno: string,
    readonly changed: boolean,
  ) {}
}

/** A move the reference cannot accept whatever the outcome (hmmsim placed it where it may not). */
class PlacementError extends Error {}

/**
 * do_mremap (mm/mremap.c, today's structure) after check_mremap_params, on the reference: applies the
 * remap step by step as the kernel does and returns the address, or throws RemapError.
 */
class Remap {
  private changed = false;

  constructor(
    private readonly world: World,
    private readonly rp: RefProcess,
    private readonly c: MremapChecked,
  ) {}

  judge(outcome: Outcome): Verdict {
    // Where a move that is not MREMAP_FIXED lands is hmmsim's choice: learnt from the result.
    if (outcome.ok && typeof outcome.value === "number" && outcome.value % PAGE === 0)
      this.placedAt = outcome.value / PAGE;
    let result: number;
    try {
      result = this.c.moveOnly ? this.remapMove() : this.remapOne();
    } catch (error) {
      if (error instanceof PlacementError) return fail(error.message);
      if (!(error instanceof RemapError)) throw error;
      return expectFailure(outcome, error.errno, !error.changed);
    }
    const failed = unlessSuccess(outcome);
    if (failed !== null) return failed;
    if (!outcome.ok || outcome.value !== result)
      return fail(
        `mremap returned ${String(outcome.ok ? outcome.value : "")}, the reference says ${addrOf(result / PAGE)}`,
      );
    return OK;
  }

  private error(errno: string): RemapError {
    return new RemapError(errno, this.changed);
  }

  private get pages(): PageMap {
    return this.rp.pages;
  }

  /** The one-VMA path: vma_lookup, check_prep_vma, then mremap_to or mremap_at. */
  private remapOne(): number {
    const { c } = this;
    const vpn = Number(c.oldAddr / BigInt(PAGE));
    const vma = c.oldAddr < TASK_SIZE ? vmaAt(this.pages, vpn) : null;
    if (vma === null) throw this.error("EFAULT");
    const impliesNew = c.fixed || c.dontUnmap;
    const type = c.oldLen === c.newLen ? "same" : c.newLen < c.oldLen ? "shrink" : "expand";
    if (type === "expand" || impliesNew) this.checkPrep(vpn, vma.end, type, c.oldLen, c.newLen);
    return impliesNew ? this.mremapTo(vpn, type) : this.mremapAt(vpn, vma.end, type);
  }

  /**
   * check_prep_vma for a remap that maps new space: duplicating a private mapping (old_len 0) EINVAL;
   * the old range (for a shrink, its new length) running past the VMA's end EFAULT. hmmsim's VMAs are
   * never VM_DONTEXPAND, VM_PFNMAP, sealed, hugetlb or locked.
   */
  private checkPrep(vpn: number, vmaEnd: number, type: string, oldLen: bigint, newLen: bigint): void {
    const page = this.pages.get(vpn)!;
    if (oldLen === 0n && isPrivate(page.kind)) throw this.error("EINVAL");
    const checkedLen = type === "shrink" ? newLen : oldLen;
    if (checkedLen > BigInt((vmaEnd - vpn) * PAGE)) throw this.error("EFAULT");
  }

  /** do_vmi_munmap of [addr, addr + len) as a step of the remap. */
  private munmap(addr: bigint, len: bigint): void {
    const checked = munmapCheck(addr, len);
    if (checked.errno !== null) throw this.error(checked.errno);
    if (anyMapped(this.pages, checked.start, checked.end)) this.changed = true;
    unmap(this.world.ids, this.pages, checked.start, checked.end);
  }

  /** mremap_at: no resize, shrink_vma, or expand_vma (in place, else a move with MREMAP_MAYMOVE). */
  private mremapAt(vpn: number, vmaEnd: number, type: string): number {
    const { c } = this;
    if (type === "same") return vpn * PAGE;
    if (type === "shrink") {
      this.munmap(c.oldAddr + c.newLen, c.oldLen - c.newLen);
      return vpn * PAGE;
    }
    const oldPages = Number(c.oldLen / BigInt(PAGE));
    const newPages = Number(c.newLen / BigInt(PAGE));
    const newEnd = vpn + newPages;
    // vrm_can_expand_in_place: the range ends the VMA, and the space after it is free and in user space.
    if (vpn + oldPages === vmaEnd && newEnd <= TASK_VPNS && !anyMapped(this.pages, vmaEnd, newEnd)) {
      const last = this.pages.get(vmaEnd - 1)!;
      for (let v = vmaEnd; v < newEnd; v++)
        this.pages.set(v, { ...last, pgoff: last.pgoff + (v - (vmaEnd - 1)), own: null });
      return vpn * PAGE;
    }
    if (!c.mayMove) throw this.error("ENOMEM");
    return this.moveVma(vpn, oldPages, null, newPages);
  }

  /** mremap_to: MREMAP_FIXED unmaps the target first, a shrink is done before the move. */
  private mremapTo(vpn: number, type: string): number {
    const { c } = this;
    // After each unmap the VMA at the old address is looked up again (EFAULT when it went: the old
    // range's end can wrap past 2^64, so that the overlap check lets the target cover it).
    if (c.fixed) {
      this.munmap(c.newAddr, c.newLen);
      if (!this.pages.has(vpn)) throw this.error("EFAULT");
    }
    let oldLen = c.oldLen;
    if (type === "shrink") {
      this.munmap(c.oldAddr + c.newLen, c.oldLen - c.newLen);
      if (!this.pages.has(vpn)) throw this.error("EFAULT");
      oldLen = c.newLen;
    }
    return this.moveVma(vpn, Number(oldLen / BigInt(PAGE)), c.newAddr, Number(c.newLen / BigInt(PAGE)));
  }

  /**
   * vrm_set_new_addr and move_vma: the new range is MREMAP_FIXED's address (EPERM below mmap_min_addr:
   * get_unmapped_area's security_mmap_addr), or any free area (MREMAP_DONTUNMAP takes the address as a
   * hint); the old pages move into one new VMA there, which continues the last one's object past them.
   * With old_len 0 (a shared mapping duplicated) nothing moves and the new VMA maps the object from the
   * old address on. MREMAP_DONTUNMAP leaves the old VMA in place, emptied: its private pages read zeros
   * or the file again (dontunmap_complete), its shared pages the object.
   */
  private moveVma(vpn: number, oldPages: number, fixedAddr: bigint | null, newPages: number): number {
    const { c } = this;
    const pages = this.pages;
    const ids = this.world.ids;
    let newStart: number;
    const moved = Math.min(oldPages, newPages);
    if (c.fixed && fixedAddr !== null) {
      if (fixedAddr < MMAP_MIN_ADDR) throw this.error("EPERM");
      newStart = Number(fixedAddr / BigInt(PAGE));
    } else {
      newStart = this.placement(newPages);
    }
    this.changed = true;
    if (oldPages === 0) {
      const base = pages.get(vpn)!;
      const id = ids.newVmaId();
      for (let i = 0; i < newPages; i++)
        pages.set(newStart + i, { ...base, vma: id, pgoff: base.pgoff + i, own: null });
      return newStart * PAGE;
    }
    if (!c.dontUnmap) {
      movePages(ids, pages, vpn, moved, newStart, newPages);
      return newStart * PAGE;
    }
    // MREMAP_DONTUNMAP: the new VMA gets the pages' contents; the old one stays, unsplit, empty.
    const id = ids.newVmaId();
    for (let i = 0; i < moved; i++) {
      const page = pages.get(vpn + i)!;
      pages.set(newStart + i, { ...page, vma: id, own: page.own });
      pages.set(vpn + i, { ...page, own: null });
    }
    return newStart * PAGE;
  }

  /** The page a move that is not MREMAP_FIXED landed on (hmmsim's choice), from the call's result. */
  private placedAt: number | null = null;

  /** get_unmapped_area's answer: what the call returned, checked to be free user space. */
  private placement(newPages: number): number {
    const at = this.placedAt;
    if (at === null) throw new PlacementError("expected success (a move to a free area)");
    if (at < MMAP_MIN_VPN || at + newPages > TASK_VPNS || anyMapped(this.pages, at, at + newPages))
      throw new PlacementError(`mremap moved to ${hex(at)}, which is not a free area of user space`);
    return at;
  }

  /**
   * remap_move: MREMAP_FIXED with old_len == new_len moves every VMA in [addr, addr + old_len), keeping
   * the gaps between them: each piece goes through check_prep_vma and mremap_to in turn (so a failure
   * leaves the pieces before it moved); EFAULT when the range starts in a gap or holds no VMA.
   */
  private remapMove(): number {
    const { c } = this;
    const start = c.oldAddr;
    const end = c.oldAddr + c.oldLen;
    if (end >= 2n ** 64n || start >= TASK_SIZE) throw this.error("EFAULT");
    const startVpn = Number(start / BigInt(PAGE));
    // The range may run far past TASK_SIZE, where no VMA lies: only mapped pages are visited.
    const endVpn = Number(end / BigInt(PAGE));
    // The VMAs of the range, found before any moves (no target overlaps the old range).
    const pieces: { vmaStart: number; vmaEnd: number; start: number; end: number }[] = [];
    const mapped = [...this.pages.keys()].filter((v) => v >= startVpn && v < endVpn).sort((a, b) => a - b);
    for (const v of mapped) {
      if (pieces.length > 0 && v < pieces[pieces.length - 1]!.vmaEnd) continue;
      const vma = vmaAt(this.pages, v)!;
      pieces.push({
        vmaStart: vma.start,
        vmaEnd: vma.end,
        start: Math.max(vma.start, startVpn),
        end: Math.min(vma.end, endVpn),
      });
    }
    if (pieces.length === 0 || pieces[0]!.vmaStart > startVpn) throw this.error("EFAULT");
    let target = c.newAddr;
    let lastEnd = 0;
    let result = 0;
    pieces.forEach((piece, i) => {
      const offset = i === 0 ? 0 : piece.vmaStart - lastEnd;
      lastEnd = piece.vmaEnd;
      const len = BigInt((piece.end - piece.start) * PAGE);
      const newAddr = target + BigInt(offset * PAGE);
      this.munmap(newAddr, len);
      const at = this.moveVma(piece.start, piece.end - piece.start, newAddr, piece.end - piece.start);
      if (i === 0) result = at;
      target = BigInt(at) + len;
    });
    return result;
  }
}

// ---------------------------------------------------------------------------------------------------
// fork and exit

export function prepareFork(ctx: Ctx, world: World, op: { p: number }): Prepared | null {
  const rp = pickAlive(world, op.p);
  if (rp === null || world.alive().length >= PROCESSES_MAX) return null;
  const pid = rp.process.pid;
  const process = rp.process;
  const label = `pid ${pid} fork()`;
  const k = ctx.system.kernel;
  return {
    label,
    mm: process.mm,
    call: () => process.fork(),
    thread: () => {
      // copy_process copies the descriptor table (copy_files, taking a reference on each open file)
      // before the mm (copy_mm): take the references when the thread starts, install them at the end.
      const held: { fd: number; file: OpenFile }[] = [];
      return {
        name: label,
        cpu: process.cpu,
        body: (function* (): Kfn<unknown> {
          for (const handle of process.files) {
            handle.file.get();
            held.push({ fd: handle.fd, file: handle.file });
          }
          const mm = yield* dupMm(k, process.mm);
          if (typeof mm === "number") for (const { file } of held) yield* file.put();
          return mm;
        })(),
        decode: (result) => {
          if (typeof result === "number") return { ok: false, error: new KernelError(-result, "fork") };
          const child = ctx.system.adoptProcess(result as MmStruct);
          for (const { fd, file } of held) {
            child.fdTable.install(file, fd);
            // install took its own reference; the one copy_files took is the child's, so drop ours
            // (never the last: the child's descriptor holds one).
            file.put().next();
          }
          return { ok: true, value: child };
        },
      };
    },
    judge: (w, outcome) => judgeFork(w, w.byPid(pid), outcome),
  };
}

/**
 * dup_mmap (kernel/fork.c): the child gets a copy of private memory and shares MAP_SHARED memory;
 * dup_fd: its descriptor table names the parent's open files at the same fd numbers.
 */
function judgeFork(world: World, parent: RefProcess, outcome: Outcome): Verdict {
  const failed = unlessSuccess(outcome);
  if (failed !== null) return failed;
  const child = outcome.ok ? (outcome.value as Process) : null;
  if (child === null || typeof child.pid !== "number") return fail("fork returned no process");
  const pages: PageMap = new Map();
  for (const [vpn, page] of parent.pages) pages.set(vpn, { ...page, own: page.own?.slice() ?? null });
  parent.migrationMayFail = true;
  const rc: RefProcess = { process: child, pages, alive: true, migrationMayFail: true };
  world.processes.push(rc);
  const inherited = world.fds.filter((rf) => rf.holder === parent && !rf.closed);
  const files = child.files;
  if (files.length !== inherited.length)
    return fail(`the child has ${files.length} device files, the parent ${inherited.length} open`);
  for (const rf of inherited) {
    const fd = files.find((handle) => handle.fd === rf.fd.fd);
    if (fd === undefined) return fail(`the child has no fd ${rf.fd.fd}`);
    if (fd.file !== rf.fd.file) return fail(`the child's fd ${rf.fd.fd} names another open file`);
    world.fds.push({ fd, holder: rc, file: rf.file, closed: false });
  }
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
      exitProcess(w, w.byPid(pid));
      return OK;
    },
  };
}

/** do_exit: exit_mm, then exit_files (each descriptor closed, the last of a file releasing it). */
export function exitProcess(world: World, rp: RefProcess): void {
  rp.alive = false;
  rp.pages = new Map();
  for (const rf of world.fds) if (rf.holder === rp && !rf.closed) world.closeFd(rf);
}
