/**
 * Runs a sequence of steps against a fresh System and the reference, and fails with one clear message
 * at the first disagreement: the step, the call, what the reference expected, and for a concurrent
 * group its seed and the schedule the chooser made (thread ids at each choice, replayable with
 * replayChooser on the same steps).
 *
 * After every step: no exception but KernelError, SignalError, or DmirrorLivelockError where the
 * reference expects it; the judge's verdict; for a call that fails its argument checks, an unchanged
 * signature (surface/observe.ts); every process's VMAs, pages and every file equal to the reference;
 * system.checkInvariants() empty; no OOM kill. At the end, probes that make hidden sharing visible:
 * each open device file reads and then writes its process's pages, each process stores to every
 * writable page of its own (a page two processes wrongly share, or a mirror entry for a page that is
 * not the process's, shows up as a difference), and then everything is torn down (pins released,
 * files closed, processes exited) and no page may be left behind.
 */

import fc from "fast-check";
import { KernelError } from "../../../src/base/errno.js";
import { Rng } from "../../../src/base/rng.js";
import { DmirrorLivelockError, type DmirrorSwitches } from "../../../src/drivers/dmirror.js";
import { UseAfterFreeError } from "../../../src/mm/kasan.js";
import type { ProtocolVersion } from "../../../src/mm/kernel.js";
import type { MmStruct } from "../../../src/mm/mm_types.js";
import type { StoreKind } from "../../../src/mm/page_store.js";
import { batchedCount } from "../../../src/mm/swap.js";
import { DeadlockError, firstRunnable, ThreadFailure } from "../../../src/sched/scheduler.js";
import { System } from "../../../src/system.js";
import {
  prepareCpu,
  prepareCreateFile,
  prepareOnExited,
  preparePages,
  preparePin,
  preparePread,
  preparePwrite,
  prepareRead,
  prepareUnpin,
  prepareWord,
  prepareWrite,
  skipsPastEnd,
} from "./access-ops.js";
import { prepareClose, prepareDev, prepareOpen } from "./device-ops.js";
import {
  prepareExit,
  prepareFork,
  prepareMmap,
  prepareMmapDevice,
  prepareMremap,
  prepareRange,
} from "./mm-ops.js";
import { compareWorld, signature } from "./observe.js";
import type { ConcurrentOp, Op, Step, Where } from "./ops.js";
import { PAGE, pastEnd } from "./pages.js";
import { type Ctx, describeOutcome, errorName, type Outcome, type Prepared } from "./semantics.js";
import { World } from "./world.js";

/** The operation's semantics, prepared against the reference as it is now; null: skipped. */
export function prepare(ctx: Ctx, world: World, op: Op): Prepared | null {
  switch (op.op) {
    case "mmap":
      return prepareMmap(ctx, world, op);
    case "mmapDevice":
      return prepareMmapDevice(ctx, world, op);
    case "munmap":
    case "mprotect":
    case "madvise":
      return prepareRange(ctx, world, op);
    case "mremap":
      return prepareMremap(ctx, world, op);
    case "fork":
      return prepareFork(ctx, world, op);
    case "exit":
      return prepareExit(ctx, world, op);
    case "write":
      return skipsPastEnd(ctx, world, op) ? null : prepareWrite(ctx, world, op);
    case "read":
      return skipsPastEnd(ctx, world, op) ? null : prepareRead(ctx, world, op);
    case "word":
      return skipsPastEnd(ctx, world, op) ? null : prepareWord(ctx, world, op);
    case "fill":
    case "check":
    case "touch":
      return preparePages(ctx, world, op);
    case "pin":
      return preparePin(ctx, world, op);
    case "unpin":
      return prepareUnpin(ctx, world, op);
    case "createFile":
      return prepareCreateFile(ctx, world, op);
    case "pwrite":
      return preparePwrite(ctx, world, op);
    case "pread":
      return preparePread(ctx, world, op);
    case "open":
      return prepareOpen(ctx, world, op);
    case "close":
      return prepareClose(ctx, world, op);
    case "dev":
      return prepareDev(ctx, world, op);
    case "onExited":
      return prepareOnExited(ctx, world, op);
    case "cpuStore":
    case "cpuLoad":
      return prepareCpu(ctx, world, op);
  }
}

export interface RunOptions {
  protocol: ProtocolVersion;
  store: StoreKind;
  /** The dmirror switches (SystemOptions.dmirror); {} is test_hmm.c. */
  dmirror: Partial<DmirrorSwitches>;
}

/** Pages of the tmpfs file every run starts with. */
const FIRST_FILE_PAGES = 16;

/**
 * RAM and device memory are fixed, small (the invariant checker walks every frame after every step),
 * and never run out: before each step the run checks the headroom a step and the end of the run may
 * need, and stops early (going to its end-of-run probes) when it is not there, so that the OOM killer
 * never runs (the runner checks kernel.stats.oomKills stays 0) and no allocation fails for want of
 * memory. A step runs at most 3 operations; one operation allocates at most 16 frames (8 pages, each
 * given a page-cache page and a private copy, or brought back from a device); a fork copies the pages
 * pinned (copy_present_page for a pinned exclusive page); closing a device file or HMM_DMIRROR_RELEASE
 * evicts every page of the device; the end-of-run probes and teardown need at most 192 more.
 */
const RAM_PAGES = 1024;
const DEVICE_PAGES = 128;
const STEP_FRAMES_MAX = 3 * 16;
const STEP_DEVICE_PAGES_MAX = 3 * 8;
const FINISH_FRAMES_MAX = 192;

/** HMMSIM_FUZZ_TRACE set: every call and its outcome is printed, to follow a replayed counterexample. */
const TRACE = process.env.HMMSIM_FUZZ_TRACE !== undefined;

/** How often each operation ended each way (printed with HMMSIM_FUZZ_STATS). */
export const outcomes = new Map<string, number>();

function tally(key: string): void {
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
}

function outcomeKey(
  op: Op | ConcurrentOp,
  outcome: Outcome | "skip",
  concurrent: boolean,
  tag?: string,
): string {
  const name = `${op.op === "dev" ? `dev ${op.cmd}` : op.op}${tag === undefined ? "" : ` ${tag}`}`;
  const bad = "bad" in op && op.bad !== null ? " (hostile)" : "";
  const how = outcome === "skip" ? "skipped" : outcome.ok ? "ok" : errorName(outcome.error).split(":")[0];
  return `${concurrent ? "concurrent " : ""}${name}${bad}: ${how}`;
}

function permutations(n: number): number[][] {
  if (n <= 1) return [[...Array(n).keys()]];
  const out: number[][] = [];
  for (const rest of permutations(n - 1)) {
    for (let at = 0; at <= rest.length; at++) out.push([...rest.slice(0, at), n - 1, ...rest.slice(at)]);
  }
  return out;
}

function foreign(error: unknown): string | null {
  // The judge decides whether the reference expects the livelock (device-ops.ts).
  if (error instanceof KernelError || error instanceof DmirrorLivelockError) return null;
  if (error instanceof ThreadFailure) {
    const cause =
      error.cause instanceof Error ? `${error.cause.name}: ${error.cause.message}` : String(error.cause);
    return `ThreadFailure (${error.thread.name}): ${cause}`;
  }
  if (error instanceof DeadlockError) return `DeadlockError: ${error.message}`;
  return error instanceof Error ? `${error.name}: ${error.message}` : `threw ${String(error)}`;
}

export class SurfaceRun {
  readonly system: System;
  readonly ctx: Ctx;
  world = new World();
  private stepIndex = 0;

  /** kernel.stats.oomRetries after the last step (for the statistics). */
  private oomRetries = 0;
  /** The members of the concurrent group being judged (for Ctx.racing). */
  private group: readonly Prepared[] = [];

  constructor(options: RunOptions) {
    const ramPages = RAM_PAGES;
    this.system = new System({
      ram: ramPages * PAGE,
      store: options.store,
      protocol: options.protocol,
      // test_hmm.c's two device-private devices; under modern (device-coherent memory came with 6.0) a
      // third, device-coherent one, so that one property covers both kinds and their interplay.
      devices: [
        { memory: DEVICE_PAGES * PAGE },
        { memory: DEVICE_PAGES * PAGE },
        ...(options.protocol === "modern"
          ? [{ memory: DEVICE_PAGES * PAGE, type: "coherent" as const }]
          : []),
      ],
      dmirror: options.dmirror,
    });
    this.ctx = {
      system: this.system,
      store: options.store,
      protocol: options.protocol,
      ramPages,
      faultFailsWithoutMm: options.dmirror.faultFailsWithoutMm === true,
      racing: (mm: MmStruct) =>
        this.group.filter((member) => member.mm === mm).length > 1 ||
        this.group.some((member) => member.evicts),
      inGroup: () => this.group.length > 0,
    };
    const process = this.system.spawn();
    this.world.processes.push({ process, pages: new Map(), alive: true, migrationMayFail: false });
    const file = this.system.createFile("file", FIRST_FILE_PAGES * PAGE);
    this.world.files.push({
      file,
      object: { name: "file", pages: new Map(), sizePages: FIRST_FILE_PAGES },
      sizeBytes: FIRST_FILE_PAGES * PAGE,
    });
  }

  private failure(what: string, why: string): Error {
    return new Error(`step ${this.stepIndex} ${what}: ${why}`);
  }

  /** Whether the next step, and the end of the run after it, have the memory they may need. */
  private roomForAStep(): boolean {
    const pinned = new Set(this.world.pins.filter((pin) => !pin.unpinned).flatMap((pin) => pin.pfns)).size;
    const onDevices = this.system.devices.reduce((sum, device) => sum + device.usedPages, 0);
    const ramNeeded = STEP_FRAMES_MAX + pinned + onDevices + STEP_DEVICE_PAGES_MAX + FINISH_FRAMES_MAX;
    return (
      this.system.kernel.ram.freePages >= ramNeeded &&
      this.system.devices.every((device) => device.usedPages + STEP_DEVICE_PAGES_MAX <= DEVICE_PAGES)
    );
  }

  run(steps: readonly Step[]): void {
    for (const step of steps) {
      if (!this.roomForAStep()) {
        tally("run stopped early for want of memory headroom");
        break;
      }
      if (step.op === "concurrent") this.concurrent(step.ops, step.seed);
      else this.sequential(step);
      this.stepIndex++;
    }
    this.finish();
  }

  /**
   * One call on the surface, judged against the reference. A probe (the end of the run) is judged but
   * leaves the whole-state comparison and the invariants to the end of its phase.
   */
  sequential(op: Op, probe = false): void {
    const prepared = prepare(this.ctx, this.world, op);
    if (prepared === null) {
      if (!probe) tally(outcomeKey(op, "skip", false));
      return;
    }
    const before = probe ? "" : signature(this.system, this.world);
    let outcome: Outcome;
    try {
      outcome = { ok: true, value: prepared.call() };
    } catch (error) {
      outcome = { ok: false, error };
    }
    if (!probe) tally(outcomeKey(op, outcome, false, prepared.tag));
    if (TRACE) console.log(`${this.stepIndex}: ${prepared.label} -> ${describeOutcome(outcome)}`);
    if (!outcome.ok) {
      const thrown = foreign(outcome.error);
      if (thrown !== null)
        throw this.failure(prepared.label, `threw ${thrown} (only KernelError and SignalError may come out)`);
    }
    const verdict = prepared.judge(this.world, outcome);
    if (!verdict.ok) throw this.failure(prepared.label, verdict.why);
    if (mayRevokeAtomic(op, outcome)) this.world.blurAtomic();
    if (verdict.unchanged && !probe) {
      const after = signature(this.system, this.world);
      if (after !== before)
        throw this.failure(
          prepared.label,
          `it failed (${errorName((outcome as { error: unknown }).error)}) but changed state: ${firstChange(before, after)}`,
        );
    }
    if (!probe) this.checkState(prepared.label);
  }

  /** 2 or 3 operations as threads under a seeded chooser; the result must be that of a serial order. */
  concurrent(ops: readonly ConcurrentOp[], seed: number): void {
    const prepared: Prepared[] = [];
    const members: ConcurrentOp[] = [];
    for (const op of ops) {
      const one = prepare(this.ctx, this.world, op);
      if (one?.thread !== undefined) {
        prepared.push(one);
        members.push(op);
      }
    }
    if (prepared.length === 0) return;
    const sched = this.system.kernel.sched;
    const rng = new Rng(seed);
    const firstChoice = sched.schedule.length;
    const forms = prepared.map((one) => one.thread!());
    const threads = forms.map((form) => sched.spawn(form.name, form.body, form.cpu));
    const names = threads.map((thread, i) => `${thread.id} = ${prepared[i]!.label}`).join("; ");
    const where = () =>
      `concurrent group (seed ${seed}; threads ${names}; schedule [${sched.schedule.slice(firstChoice).join(", ")}])`;
    sched.setChooser((runnable) => rng.below(runnable.length));
    try {
      sched.runAll();
    } catch (error) {
      // 4.14's do_swap_page calls migrate_to_ram without a page reference (CVE-2022-3523, fixed in 6.1
      // by 16ce101db85d): two CPUs faulting one device page can have one free it under the other. The
      // model is faithful there, the explorer's catalogue shows it, and this property does not judge it.
      fc.pre(
        !(
          this.ctx.protocol === "4.14" &&
          error instanceof ThreadFailure &&
          error.cause instanceof UseAfterFreeError
        ),
      );
      throw this.failure(where(), `${foreign(error) ?? errorName(error)}`);
    } finally {
      sched.setChooser(firstRunnable);
    }
    const results: Outcome[] = forms.map((form, i) => form.decode(threads[i]!.result));
    if (TRACE) console.log(`${this.stepIndex}: ${where()} -> ${results.map(describeOutcome).join("; ")}`);
    members.forEach((op, i) => {
      tally(outcomeKey(op, results[i]!, true, prepared[i]!.tag));
    });
    this.group = prepared;
    try {
      const explained = this.explain(
        prepared,
        results,
        threads.map((thread) => thread.id),
        where,
      );
      if (explained !== null) throw this.failure(where(), explained);
    } finally {
      this.group = [];
    }
  }

  /** The first serial order that explains the results (adopted), or why none does. */
  private explain(
    prepared: readonly Prepared[],
    results: readonly Outcome[],
    ids: readonly number[],
    where: () => string,
  ): string | null {
    const tried: string[] = [];
    for (const order of permutations(prepared.length)) {
      const world = this.world.clone();
      let why: string | null = null;
      for (const i of order) {
        const verdict = prepared[i]!.judge(world, results[i]!);
        if (!verdict.ok) {
          why = `${prepared[i]!.label}: ${verdict.why}`;
          break;
        }
      }
      why ??= compareWorld(this.system, world);
      if (why === null) {
        // Any member may have revoked a device's atomic access (world.ts).
        world.blurAtomic();
        this.world = world;
        this.afterStep(where());
        return null;
      }
      tried.push(`order [${order.map((i) => ids[i]!).join(", ")}]: ${why}`);
    }
    const got = results
      .map((result, i) => `${ids[i]!} ${result.ok ? "succeeded" : `failed with ${errorName(result.error)}`}`)
      .join("; ");
    return `no serial order explains the result (${got}):\n  ${tried.join("\n  ")}`;
  }

  private checkState(what: string): void {
    const mismatch = compareWorld(this.system, this.world);
    if (mismatch !== null) throw this.failure(what, `afterwards ${mismatch}`);
    this.afterStep(what);
  }

  /**
   * After every step: the invariants, no OOM kill (RAM is sized so that none can happen), and what the
   * reference learns from hmmsim without changing it: whether each open's FAIL_ALLOC is still armed
   * (the flag is one-shot; once hmmsim has consumed it, no allocation may fail for it any more).
   */
  private afterStep(what: string): void {
    this.checkInvariants(what);
    const retries = this.system.kernel.stats.oomRetries;
    if (retries > this.oomRetries) tally("a CPU fault retried after VM_FAULT_OOM (FAIL_ALLOC, modern)");
    this.oomRetries = retries;
    const kills = this.system.kernel.stats.oomKills;
    if (kills !== 0)
      throw this.failure(what, `the OOM killer ran (${kills}): RAM is sized so that no run can exhaust it`);
    for (const file of this.world.openFiles())
      if (file.failAllocArmed && file.handle.mirror.flags % 2 === 0) file.failAllocArmed = false;
  }

  private checkInvariants(what: string): void {
    const violations = this.system.checkInvariants();
    if (violations.length > 0)
      throw this.failure(what, `invariants violated afterwards:\n  ${violations.slice(0, 8).join("\n  ")}`);
  }

  /** A Where naming exactly `vpn` of the process with these pages. */
  private static at(pages: ReadonlyMap<number, unknown>, vpn: number): Where {
    const vpns = [...pages.keys()].sort((a, b) => a - b);
    return { anchor: vpns.indexOf(vpn), delta: 0, offset: 0 };
  }

  /** The probes and the teardown described in the header. */
  finish(): void {
    this.stepIndex = -1;
    const probe = (op: Op) => this.sequential(op, true);
    const pagesOf = (rp: (typeof this.world.processes)[number], access: number) =>
      [...rp.pages]
        .filter(([, page]) => (page.prot & access) !== 0 && !pastEnd(page))
        .map(([vpn]) => vpn)
        .slice(0, 8);
    const openFds = () => this.world.fds.map((rf, fd) => ({ rf, fd })).filter(({ rf }) => !rf.closed);
    const deviceProbe = (cmd: "read" | "write", seed: number) => {
      for (const { rf, fd } of openFds()) {
        const owner = rf.file.mirror;
        // A file whose mm has gone: one command, which the reference expects to livelock or fail.
        const vpns = owner.alive ? pagesOf(owner, cmd === "read" ? 1 : 2) : [0];
        for (const vpn of vpns) {
          probe({
            op: "dev",
            fd,
            cmd,
            at: owner.alive ? SurfaceRun.at(owner.pages, vpn) : { anchor: 0, delta: 0, offset: 0 },
            pages: 1,
            seed: seed + fd * 977 + vpn,
            into: false,
            bad: null,
          });
        }
      }
    };
    deviceProbe("read", 0);
    this.checkState("after the device READ probes");
    if (this.ctx.store === "bytes") deviceProbe("write", 0x5000);
    this.checkState("after the device WRITE probes");
    for (const rp of this.world.alive()) {
      for (const vpn of pagesOf(rp, 2)) {
        const p = this.world.alive().indexOf(rp);
        probe({
          op: "cpuStore",
          p,
          at: SurfaceRun.at(rp.pages, vpn),
          value: (0xc0de0000 + rp.process.pid * 0x100 + (vpn & 0xff)) >>> 0,
        });
      }
    }
    this.checkState("after the CPU store probes");
    deviceProbe("read", 0);
    this.checkState("after the last device READ probes");
    // Teardown: every pin released, every device file closed, every process gone.
    this.world.pins.forEach((pin, index) => {
      // A pin outlives its process: unpinning needs no mm.
      if (!pin.unpinned) probe({ op: "unpin", pin: index, bad: null });
    });
    for (const { fd } of openFds()) probe({ op: "close", fd });
    this.checkState("after closing every device file");
    while (this.world.alive().length > 1) probe({ op: "exit", p: 0 });
    const last = this.world.alive()[0]!;
    try {
      last.process.exit();
    } catch (error) {
      throw this.failure(`pid ${last.process.pid} exit() (the last)`, `threw ${errorName(error)}`);
    }
    last.alive = false;
    this.checkInvariants("after every process exited");
    const k = this.system.kernel;
    const cached = k.addressSpaces().reduce((sum, space) => sum + space.pages.size, 0);
    const pinned = new Set(this.world.pins.filter((pin) => !pin.unpinned).flatMap((pin) => pin.pfns)).size;
    // A freed page can still sit in a per-CPU LRU add batch (folio_batch), holding its reference.
    const batched = batchedCount(k).size;
    if (k.ram.usedPages > cached + pinned + batched)
      throw this.failure(
        "teardown",
        `${k.ram.usedPages} RAM pages in use with no process left (${cached} in page caches, ${pinned} pinned, ${batched} in LRU batches)`,
      );
    for (const device of this.system.devices)
      if (device.usedPages !== 0)
        throw this.failure("teardown", `device ${device.minor} still has ${device.usedPages} pages in use`);
  }
}

/**
 * Whether a step may have revoked a device's atomic access to a page the reference still counts as
 * surely atomic (world.ts): every step but those that look without invalidating (SNAPSHOT, CHECK,
 * FLAGS; EXCLUSIVE settles its own state), those on other objects (tmpfs files, open), and CPU accesses
 * and pins that succeeded (their judges revoke exactly the pages they touched; no other page hears an
 * invalidation).
 */
function mayRevokeAtomic(op: Op, outcome: Outcome): boolean {
  switch (op.op) {
    case "dev":
      return !(
        op.cmd === "snapshot" ||
        op.cmd === "checkExclusive" ||
        op.cmd === "flags" ||
        op.cmd === "exclusive"
      );
    case "createFile":
    case "pread":
    case "pwrite":
    case "open":
    case "unpin":
      return false;
    case "write":
    case "read":
    case "word":
    case "fill":
    case "check":
    case "touch":
    case "cpuStore":
    case "cpuLoad":
    case "pin":
      return !outcome.ok;
    default:
      return true;
  }
}

/** The first token where two signatures differ, with a little context. */
function firstChange(before: string, after: string): string {
  const a = before.split(" ");
  const b = after.split(" ");
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i])
      return `"${a.slice(Math.max(0, i - 2), i + 2).join(" ")}" became "${b.slice(Math.max(0, i - 2), i + 2).join(" ")}"`;
  }
  return "no difference";
}
