/**
 * What every operation's semantics is made of. An operation is prepared against the reference as it is
 * when the operation starts (its addresses resolved, its hostile argument put in), and gives:
 * - `call`: the call on hmmsim's friendly surface (the sequential mode);
 * - `thread` (for the operations the concurrent mode runs): the same operation as a kernel thread
 *   and how to read its result as the surface would report it;
 * - `judge`: given what happened, whether the reference allows it, applying it to a (possibly copied)
 *   reference when it does. Judging never calls hmmsim except to look at state without changing it.
 */
import { KernelError } from "../../../src/base/errno.js";
import { DmirrorLivelockError } from "../../../src/drivers/dmirror.js";
import type { ProtocolVersion } from "../../../src/mm/kernel.js";
import type { MmStruct } from "../../../src/mm/mm_types.js";
import type { StoreKind } from "../../../src/mm/page_store.js";
import { SignalError } from "../../../src/process.js";
import type { Kfn } from "../../../src/sched/thread.js";
import type { System } from "../../../src/system.js";
import type { Hostile, Where } from "./ops.js";
import { PAGE, type PageMap } from "./pages.js";
import type { RefProcess, World } from "./world.js";

export interface Ctx {
  system: System;
  store: StoreKind;
  protocol: ProtocolVersion;
  /** The system's RAM in pages (the bounce buffers' bound). */
  ramPages: number;
  /** dmirror.faultFailsWithoutMm: READ/WRITE on a file whose mm has gone give EINVAL, not the livelock. */
  faultFailsWithoutMm: boolean;
  /**
   * True while a concurrent group is judged in which some other member acts on this mm, or closes or
   * releases a device file (which evicts device pages): a migration may then lose pages to it.
   */
  racing(mm: MmStruct): boolean;
  /** True while a concurrent group is judged. */
  inGroup(): boolean;
}

export type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** ok: the reference allows it (unchanged: and the call must have left every piece of state as it was). */
export type Verdict = { ok: true; unchanged?: boolean } | { ok: false; why: string };

export interface ThreadForm {
  name: string;
  cpu: number;
  body: Kfn<unknown>;
  /** The surface's view of the thread's result (a negative number is -errno). */
  decode(result: unknown): Outcome;
}

export interface Prepared {
  label: string;
  /** The mm the operation acts on, for the concurrent mode's racing(). */
  mm?: MmStruct;
  /** The operation closes or releases a device file (the concurrent mode's racing()). */
  evicts?: boolean;
  /** A variant worth its own line in the statistics (HMMSIM_FUZZ_STATS), e.g. "MREMAP_DONTUNMAP". */
  tag?: string;
  call(): unknown;
  thread?: () => ThreadForm;
  judge(world: World, outcome: Outcome): Verdict;
}

export const OK: Verdict = { ok: true };
export const UNCHANGED: Verdict = { ok: true, unchanged: true };

export function fail(why: string): Verdict {
  return { ok: false, why };
}

/**
 * The outcome name of a READ or WRITE that lib/test_hmm.c never returns from (a file whose mm has gone,
 * the faithful default): hmmsim throws DmirrorLivelockError. Accepted only where the reference expects it.
 */
export const LIVELOCK = "DmirrorLivelockError";

/** "SIGSEGV", "SIGBUS", an errno name, LIVELOCK, or a description of a foreign exception. */
export function errorName(error: unknown): string {
  if (error instanceof DmirrorLivelockError) return LIVELOCK;
  if (error instanceof SignalError) return error.signal;
  if (error instanceof KernelError) return error.code;
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

export function describeOutcome(outcome: Outcome): string {
  if (!outcome.ok) return `failed with ${errorName(outcome.error)}`;
  const value = outcome.value;
  if (value === undefined) return "succeeded";
  if (typeof value === "number" || typeof value === "bigint") return `returned ${value}`;
  if (Array.isArray(value))
    return `returned [${value.slice(0, 8).join(", ")}${value.length > 8 ? ", ..." : ""}]`;
  return "succeeded";
}

/**
 * The outcome must be a failure with `expected` ("any": any KernelError or SignalError), changing
 * nothing when `unchanged`.
 */
export function expectFailure(outcome: Outcome, expected: string, unchanged = true): Verdict {
  if (outcome.ok)
    return fail(
      `expected ${expected === "any" ? "a KernelError" : expected}, but it ${describeOutcome(outcome)}`,
    );
  const got = errorName(outcome.error);
  if (expected !== "any" && got !== expected) return fail(`expected ${expected}, got ${got}`);
  return unchanged ? UNCHANGED : OK;
}

/** A failure verdict when the outcome is not a success, else null. */
export function unlessSuccess(outcome: Outcome): Verdict | null {
  return outcome.ok ? null : fail(`expected success, got ${errorName(outcome.error)}`);
}

/** Where the reference says an arena starts when a process has nothing mapped: 4 GiB. */
export const ARENA_VPN = 2 ** 20;

/** The page a Where names in this process. */
export function resolve(pages: PageMap, at: Where): number {
  const vpns = [...pages.keys()].sort((a, b) => a - b);
  const base = vpns.length === 0 ? ARENA_VPN : vpns[at.anchor % vpns.length]!;
  return Math.max(0, base + at.delta);
}

/**
 * With `at.delta` 0 (an address on a mapped page), a range is cut to the mapped run it starts in, so
 * that most calls succeed; other deltas keep the length and probe holes and edges.
 */
export function fitRange(pages: PageMap, at: Where, start: number, count: number, withinVma = false): number {
  if (at.delta !== 0 || count === 0) return count;
  let run = 0;
  const vma = pages.get(start)?.vma;
  while (run < count && pages.has(start + run) && (!withinVma || pages.get(start + run)!.vma === vma)) run++;
  return Math.max(run, 1);
}

/** The live process `index` picks, or null. */
export function pickAlive(world: World, index: number): RefProcess | null {
  const alive = world.alive();
  return alive.length === 0 ? null : alive[index % alive.length]!;
}

/** The JS value a hostile argument stands for (buffers sized for `bytes`). */
export function hostileValue(value: Hostile, bytes = PAGE): unknown {
  switch (value.kind) {
    case "number":
      return value.value;
    case "string":
      return value.value;
    case "null":
      return null;
    case "undefined":
      return undefined;
    case "bigint":
      return value.value;
    case "object":
      return {};
    case "shortBuffer":
      return new Uint8Array(Math.max(0, bytes - 1));
    case "longString":
      return "x".repeat(bytes);
    case "array":
      return Array.from({ length: 4 }, () => 1);
  }
}

/** A short description of a hostile value for labels. */
export function describeHostile(value: Hostile): string {
  switch (value.kind) {
    case "number":
      return String(value.value);
    case "string":
      return JSON.stringify(value.value);
    case "bigint":
      return `${value.value}n`;
    case "shortBuffer":
      return "a buffer one byte short";
    case "longString":
      return "a string as long as the buffer";
    case "array":
      return "a plain array";
    default:
      return value.kind === "object" ? "{}" : value.kind;
  }
}

export function addrOf(vpn: number): string {
  return `0x${(vpn * PAGE).toString(16)}`;
}

/**
 * True when HMM_DMIRROR_FLAGS armed FAIL_ALLOC on some open device file (and hmmsim's flag still holds
 * it): a later migration through that open, or the fault of a device page it migrated back to RAM,
 * may then fail one allocation. The reference does not know where pages are, so while any file is
 * armed it allows what such a failure gives:
 * - a CPU access: under 4.14 the driver's migrate_to_ram answers a failed allocation with
 *   VM_FAULT_SIGBUS (the MIGRATE_PFN_ERROR convention of that era), so the access may get SIGBUS;
 *   under modern dmirror_devmem_fault_alloc_and_copy returns VM_FAULT_OOM, which a user fault never
 *   turns into a signal (arch/x86/mm/fault.c mm_fault_error: pagefault_out_of_memory, which with RAM
 *   left only retries, mm/oom_kill.ts), and the retry finds the flag gone: the access must succeed;
 * - get_user_pages (a pin): VM_FAULT_OOM is ENOMEM, VM_FAULT_SIGBUS EFAULT (mm/gup.c
 *   vm_fault_to_errno), and a pin that already has pages returns them short;
 * - hmm_range_fault (a device READ or WRITE): any VM_FAULT_ERROR is EFAULT (hmm_vma_fault).
 * Either way the failed access or command changes no byte it had not already written.
 */
export function allocationMayFail(world: World): boolean {
  return world.openFiles().some((file) => file.failAllocArmed);
}

/** The errnos or signal a failed allocation may give this kind of access under this protocol. */
export function allocationFailures(ctx: Ctx, world: World, kind: "cpu" | "gup" | "hmm"): readonly string[] {
  if (!allocationMayFail(world)) return [];
  if (kind === "cpu") return ctx.protocol === "modern" ? [] : ["SIGBUS"];
  if (kind === "gup") return ctx.protocol === "modern" ? ["ENOMEM"] : ["EFAULT"];
  return ["EFAULT"];
}

/** A failed outcome that a failed allocation explains (see allocationMayFail), else false. */
export function explainedByAllocation(
  ctx: Ctx,
  world: World,
  kind: "cpu" | "gup" | "hmm",
  outcome: Outcome,
): boolean {
  return !outcome.ok && allocationFailures(ctx, world, kind).includes(errorName(outcome.error));
}
