import { describe, expect, it } from "vitest";
import { PAGE_SIZE, type Vpn } from "../../src/base/units.js";
import {
  MADV_DONTNEED,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MREMAP_MAYMOVE,
  PROT_READ,
} from "../../src/mm/mmap.js";
import {
  EVENT_NAMES,
  hasNotifiers,
  MMU_NOTIFY_CLEAR,
  MMU_NOTIFY_MIGRATE,
  type MmuIntervalNotifier,
  type MmuNotifierRange,
  mmuIntervalNotifierInsert,
  mmuIntervalNotifierRemove,
  mmuIntervalReadBegin,
  mmuIntervalReadRetry,
  mmuIntervalSetSeq,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  notifierRange,
} from "../../src/mm/mmu_notifier.js";
import type { Process } from "../../src/process.js";
import { type Kfn, PREEMPT } from "../../src/sched/thread.js";
import type { System } from "../../src/system.js";
import { inThread, smallSystem } from "./helpers.js";

const P = PAGE_SIZE;
const BASE = 0x10_0000_0000;

interface Heard {
  event: string;
  start: number;
  end: number;
  owner: unknown;
}

/** Registers a notifier over [addr, addr + pages) that records what it hears and sets its sequence. */
function listen(proc: Process, addr: number, pages: number): { sub: MmuIntervalNotifier; heard: Heard[] } {
  const heard: Heard[] = [];
  const start = addr / P;
  const sub = mmuIntervalNotifierInsert(proc.mm, start as Vpn, (start + pages) as Vpn, {
    *invalidate(s: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): Kfn<boolean> {
      mmuIntervalSetSeq(s, curSeq);
      heard.push({
        event: EVENT_NAMES[range.event]!,
        start: range.start * P,
        end: range.end * P,
        owner: range.owner,
      });
      return true;
    },
  });
  return { sub, heard };
}

function mapFixed(proc: Process, addr: number, pages: number): number {
  return proc.mmap(pages * P, { addr, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
}

function readBegin(system: System, sub: MmuIntervalNotifier): number {
  return inThread(system, mmuIntervalReadBegin(system.kernel, sub));
}

describe("invalidation events", () => {
  it("munmap, MADV_DONTNEED, mprotect and mremap reach the notifier with their events and ranges", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, BASE, 8);
    proc.touch(BASE, 8, true);
    const { heard } = listen(proc, BASE, 8);
    proc.madvise(BASE + P, P, MADV_DONTNEED);
    proc.mprotect(BASE + 2 * P, 2 * P, PROT_READ);
    proc.munmap(BASE + 7 * P, P);
    expect(heard.map((h) => [h.event, h.start, h.end])).toEqual([
      ["CLEAR", BASE + P, BASE + 2 * P],
      ["PROTECTION_VMA", BASE + 2 * P, BASE + 4 * P],
      ["UNMAP", BASE + 7 * P, BASE + 8 * P],
    ]);
    heard.length = 0;
    mapFixed(proc, BASE + 8 * P, 1);
    proc.mremap(BASE + 4 * P, 3 * P, 6 * P, MREMAP_MAYMOVE);
    expect(heard.map((h) => [h.event, h.start, h.end])).toEqual([["UNMAP", BASE + 4 * P, BASE + 7 * P]]);
    expect(heard.every((h) => h.owner === null)).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a COW fault and fork invalidate the parent's range; exit sends RELEASE", () => {
    const system = smallSystem();
    const parent = system.spawn();
    mapFixed(parent, BASE, 2);
    parent.writeU32(BASE, 1);
    const { heard } = listen(parent, BASE, 2);
    const child = parent.fork();
    expect(heard.map((h) => h.event)).toEqual(["PROTECTION_PAGE"]);
    parent.writeU32(BASE, 2);
    expect(heard.map((h) => [h.event, h.start, h.end])).toEqual([
      ["PROTECTION_PAGE", BASE, BASE + 2 * P],
      ["CLEAR", BASE, BASE + P],
    ]);
    expect(child.readU32(BASE)).toBe(1);
    heard.length = 0;
    parent.exit();
    expect(heard[0]).toMatchObject({ event: "RELEASE", start: BASE, end: BASE + 2 * P });
    expect(heard.every((h) => h.event === "RELEASE")).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("reaches only notifiers that overlap the change, and none once removed", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, BASE, 4);
    const low = listen(proc, BASE, 2);
    const high = listen(proc, BASE + 2 * P, 2);
    expect(hasNotifiers(proc.mm, BASE / P, BASE / P + 1)).toBe(true);
    expect(hasNotifiers(proc.mm, BASE / P + 4, BASE / P + 9)).toBe(false);
    proc.madvise(BASE + 3 * P, P, MADV_DONTNEED);
    expect(low.heard).toEqual([]);
    expect(high.heard).toHaveLength(1);
    inThread(system, mmuIntervalNotifierRemove(system.kernel, high.sub));
    expect(high.sub.removed).toBe(true);
    proc.munmap(BASE, 4 * P);
    expect(high.heard).toHaveLength(1);
    // The notifier hears the whole range being changed, not just its own part of it.
    expect(low.heard.map((h) => [h.event, h.start, h.end])).toEqual([["UNMAP", BASE, BASE + 4 * P]]);
  });

  it("the owner of a migration reaches the notifier with MMU_NOTIFY_MIGRATE", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, BASE, 1);
    const { heard } = listen(proc, BASE, 1);
    const owner = { name: "dmirror 0" };
    const k = system.kernel;
    const vma = proc.mm.vmas[0]!;
    inThread(
      system,
      (function* (): Kfn<void> {
        const range = notifierRange(proc.mm, vma, vma.start, vma.end, MMU_NOTIFY_MIGRATE, owner);
        yield* mmuNotifierInvalidateRangeStart(k, range);
        expect(proc.mm.notifierSeq % 2).toBe(1);
        mmuNotifierInvalidateRangeEnd(k, range);
      })(),
    );
    expect(heard).toEqual([{ event: "MIGRATE", start: BASE, end: BASE + P, owner }]);
    expect(heard[0]!.owner).toBe(owner);
    expect(proc.mm.notifierSeq % 2).toBe(0);
  });
});

describe("read_begin and read_retry", () => {
  it("retry is false with no invalidation in between and true after one", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, BASE, 2);
    proc.touch(BASE, 2, true);
    const { sub } = listen(proc, BASE, 2);
    const seq = readBegin(system, sub);
    proc.touch(BASE, 2, false);
    expect(mmuIntervalReadRetry(sub, seq)).toBe(false);
    proc.madvise(BASE, P, MADV_DONTNEED);
    expect(mmuIntervalReadRetry(sub, seq)).toBe(true);
    const next = readBegin(system, sub);
    expect(mmuIntervalReadRetry(sub, next)).toBe(false);
  });

  it("an invalidation outside the interval does not force a retry", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, BASE, 4);
    proc.touch(BASE, 4, true);
    const { sub } = listen(proc, BASE, 2);
    const seq = readBegin(system, sub);
    proc.madvise(BASE + 2 * P, 2 * P, MADV_DONTNEED);
    expect(mmuIntervalReadRetry(sub, seq)).toBe(false);
  });

  it("read_begin sleeps while an invalidation that reached the interval is in progress", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, BASE, 1);
    const { sub } = listen(proc, BASE, 1);
    const k = system.kernel;
    const vma = proc.mm.vmas[0]!;
    k.sched.setChooser((runnable, i) => i % runnable.length);
    const log: string[] = [];
    let seqSeen = -1;
    k.sched.spawn(
      "invalidator",
      (function* (): Kfn<void> {
        const range = notifierRange(proc.mm, vma, vma.start, vma.end, MMU_NOTIFY_CLEAR);
        yield* mmuNotifierInvalidateRangeStart(k, range);
        log.push("start");
        for (let i = 0; i < 4; i++) yield PREEMPT;
        log.push("end");
        mmuNotifierInvalidateRangeEnd(k, range);
      })(),
    );
    k.sched.spawn(
      "reader",
      (function* (): Kfn<void> {
        yield PREEMPT;
        yield PREEMPT;
        seqSeen = yield* mmuIntervalReadBegin(k, sub);
        log.push("read_begin returned");
      })(),
    );
    k.sched.runAll();
    expect(log).toEqual(["start", "end", "read_begin returned"]);
    expect(mmuIntervalReadRetry(sub, seqSeen)).toBe(false);
  });
});

describe("a notifier inserted during an invalidation", () => {
  it("is not called by the invalidations under way, and its read_begin waits for them to end", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, BASE, 2);
    const k = system.kernel;
    const vma = proc.mm.vmas[0]!;
    const box: { late: { sub: MmuIntervalNotifier; heard: Heard[] } | null } = { late: null };
    const log: string[] = [];
    k.sched.setChooser((runnable, i) => i % runnable.length);
    k.sched.spawn(
      "invalidator",
      (function* (): Kfn<void> {
        const outer = notifierRange(proc.mm, vma, vma.start, vma.end, MMU_NOTIFY_CLEAR);
        yield* mmuNotifierInvalidateRangeStart(k, outer);
        box.late = listen(proc, BASE, 2);
        // A nested invalidation in the same window: the deferred subscription must not hear it.
        const inner = notifierRange(proc.mm, vma, vma.start, vma.start + 1, MMU_NOTIFY_CLEAR);
        yield* mmuNotifierInvalidateRangeStart(k, inner);
        mmuNotifierInvalidateRangeEnd(k, inner);
        for (let i = 0; i < 4; i++) yield PREEMPT;
        log.push("end");
        mmuNotifierInvalidateRangeEnd(k, outer);
      })(),
    );
    k.sched.spawn(
      "reader",
      (function* (): Kfn<void> {
        while (box.late === null) yield PREEMPT;
        yield* mmuIntervalReadBegin(k, box.late.sub);
        log.push("read_begin returned");
      })(),
    );
    k.sched.runAll();
    expect(log).toEqual(["end", "read_begin returned"]);
    expect(box.late!.heard).toEqual([]);
    // Linked once the invalidations ended: the next change reaches it.
    inThread(
      system,
      (function* (): Kfn<void> {
        const range = notifierRange(proc.mm, vma, vma.start, vma.end, MMU_NOTIFY_CLEAR);
        yield* mmuNotifierInvalidateRangeStart(k, range);
        mmuNotifierInvalidateRangeEnd(k, range);
      })(),
    );
    expect(box.late!.heard.map((h) => h.event)).toEqual(["CLEAR"]);
    inThread(system, mmuIntervalNotifierRemove(k, box.late!.sub));
  });
});

describe("mmu_interval_notifier_remove", () => {
  // mmu_interval_notifier_remove: during an invalidation the subscription goes on the deferred list and
  // the caller waits until invalidate_seq moves (mn_itree_inv_end), so no callback runs after it returns.
  it("waits for an invalidation in progress to end, which may still call the subscription", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, BASE, 2);
    const { sub, heard } = listen(proc, BASE, 2);
    const k = system.kernel;
    const vma = proc.mm.vmas[0]!;
    const log: string[] = [];
    k.sched.setChooser((runnable, i) => i % runnable.length);
    k.sched.spawn(
      "invalidator",
      (function* (): Kfn<void> {
        const outer = notifierRange(proc.mm, vma, vma.start, vma.end, MMU_NOTIFY_CLEAR);
        yield* mmuNotifierInvalidateRangeStart(k, outer);
        for (let i = 0; i < 4; i++) yield PREEMPT;
        // Another invalidation inside the window still reaches the subscription being removed.
        const inner = notifierRange(proc.mm, vma, vma.start, vma.start + 1, MMU_NOTIFY_CLEAR);
        yield* mmuNotifierInvalidateRangeStart(k, inner);
        mmuNotifierInvalidateRangeEnd(k, inner);
        log.push("end");
        mmuNotifierInvalidateRangeEnd(k, outer);
      })(),
    );
    k.sched.spawn(
      "remover",
      (function* (): Kfn<void> {
        yield PREEMPT;
        yield* mmuIntervalNotifierRemove(k, sub);
        log.push("removed");
      })(),
    );
    k.sched.runAll();
    expect(log).toEqual(["end", "removed"]);
    expect(heard).toHaveLength(2);
    expect(sub.removed).toBe(true);
    expect(proc.mm.notifiers).not.toContain(sub);
    proc.munmap(BASE, 2 * P);
    expect(heard).toHaveLength(2);
  });

  it("drops at once a subscription inserted during the invalidation and not yet linked", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, BASE, 2);
    const k = system.kernel;
    const vma = proc.mm.vmas[0]!;
    const log: string[] = [];
    inThread(
      system,
      (function* (): Kfn<void> {
        const range = notifierRange(proc.mm, vma, vma.start, vma.end, MMU_NOTIFY_CLEAR);
        yield* mmuNotifierInvalidateRangeStart(k, range);
        const late = listen(proc, BASE, 2);
        yield* mmuIntervalNotifierRemove(k, late.sub);
        log.push("removed");
        expect(late.sub.removed).toBe(true);
        mmuNotifierInvalidateRangeEnd(k, range);
        log.push("end");
      })(),
    );
    expect(log).toEqual(["removed", "end"]);
    expect(proc.mm.notifiers).toHaveLength(0);
    expect(proc.mm.deferredNotifiers).toHaveLength(0);
  });
});
