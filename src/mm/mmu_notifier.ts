/**
 * MMU interval notifiers (mm/mmu_notifier.c, include/linux/mmu_notifier.h): a driver registers a range
 * of an mm and is told, before the CPU page table changes in it, which change and on whose behalf.
 *
 * Deliberate differences: one sequence per mm; ranges are page numbers; the non-blocking variants are
 * absent (every invalidation here may sleep).
 */
import { assert } from "../base/assert.js";
import type { Vpn } from "../base/units.js";
import { OBJ_NAMED } from "../sched/objects.js";
import { BLOCKED, type Kfn } from "../sched/thread.js";
import type { Kernel } from "./kernel.js";
import type { MmStruct, Vma } from "./mm_types.js";

/** enum mmu_notifier_event. */
export const MMU_NOTIFY_UNMAP = 0;
/** MMU_NOTIFY_CLEAR: PTEs of the range are cleared (madvise, zap, rmap unmap, a page replaced by another). */
export const MMU_NOTIFY_CLEAR = 1;
/** MMU_NOTIFY_PROTECTION_VMA: the protection of the whole VMA changes (mprotect). */
export const MMU_NOTIFY_PROTECTION_VMA = 2;
/**
 * MMU_NOTIFY_PROTECTION_PAGE: the protection of pages in the range changes (write-protect for COW at fork).
 */
export const MMU_NOTIFY_PROTECTION_PAGE = 3;
/** MMU_NOTIFY_SOFT_DIRTY: soft-dirty tracking clears the write bit. */
export const MMU_NOTIFY_SOFT_DIRTY = 4;
/** MMU_NOTIFY_RELEASE: the mm is being torn down (exit_mmap). */
export const MMU_NOTIFY_RELEASE = 5;
/**
 * MMU_NOTIFY_MIGRATE: pages are being migrated (migrate_vma, device-coherent migration); `owner` names who
 * started it.
 */
export const MMU_NOTIFY_MIGRATE = 6;
/**
 * MMU_NOTIFY_EXCLUSIVE: pages are being made device-exclusive (make_device_exclusive); `owner` names who
 * asked.
 */
export const MMU_NOTIFY_EXCLUSIVE = 7;
/** enum mmu_notifier_event: one of the MMU_NOTIFY_* values. */
export type MmuNotifierEvent = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7;

/** The MMU_NOTIFY_* names without their prefix, indexed by event, for reports. */
export const EVENT_NAMES = [
  "UNMAP",
  "CLEAR",
  "PROTECTION_VMA",
  "PROTECTION_PAGE",
  "SOFT_DIRTY",
  "RELEASE",
  "MIGRATE",
  "EXCLUSIVE",
];

/** struct mmu_notifier_range. */
export interface MmuNotifierRange {
  readonly mm: MmStruct;
  readonly vma: Vma | null;
  readonly start: Vpn;
  readonly end: Vpn;
  readonly event: MmuNotifierEvent;
  /** Who asked: for MMU_NOTIFY_MIGRATE and _EXCLUSIVE, the pgmap owner that started it. */
  readonly owner: unknown;
}

/** struct mmu_interval_notifier_ops. */
export interface MmuIntervalNotifierOps {
  /** Returns false only for a non-blocking range it could not handle (never, here). */
  invalidate(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): Kfn<boolean>;
}

/**
 * struct mmu_interval_notifier: a driver's subscription to invalidations of a range of one mm, with the
 * sequence count that mmu_interval_read_begin / read_retry check.
 */
export class MmuIntervalNotifier {
  invalidateSeq = 0;
  /** Unlinked: no invalidation calls it any more (mmu_interval_notifier_remove has returned). */
  removed = false;
  /**
   * Removal asked for during an invalidation: still linked, so the invalidations under way may still
   * call it, until the last of them ends (the kernel puts it on the deferred list).
   */
  removing = false;
  constructor(
    readonly mm: MmStruct,
    readonly start: Vpn,
    readonly end: Vpn,
    readonly ops: MmuIntervalNotifierOps,
  ) {}

  /** Whether the subscription's range meets [start, end). */
  overlaps(start: number, end: number): boolean {
    return this.start < end && start < this.end;
  }
}

/** mmu_interval_notifier_insert. */
export function mmuIntervalNotifierInsert(
  mm: MmStruct,
  start: Vpn,
  end: Vpn,
  ops: MmuIntervalNotifierOps,
): MmuIntervalNotifier {
  assert(end > start, "notifier range is empty", () => `${start}..${end}`);
  const sub = new MmuIntervalNotifier(mm, start, end, ops);
  // Its sequence is the mm's current one. During an invalidation that is odd, so read_begin waits for
  // the invalidation to end; and the subscription is linked only then (the kernel's deferred_list), so
  // the invalidations already under way do not call it.
  sub.invalidateSeq = mm.notifierSeq;
  if (mm.activeInvalidations > 0) mm.deferredNotifiers.push(sub);
  else mm.notifiers.push(sub);
  return sub;
}

/**
 * mmu_interval_notifier_remove: unlinks the subscription; when no invalidation is running, at once.
 * During an invalidation the subscription stays linked (the invalidations under way may still call it)
 * and the caller sleeps until the last of them has ended and unlinked it, so that no callback runs
 * once this returns. A subscription inserted during the invalidation and not linked yet is just
 * dropped. The caller must not hold a lock the callback takes (the kernel's lockdep annotation).
 */
export function* mmuIntervalNotifierRemove(k: Kernel, sub: MmuIntervalNotifier): Kfn<void> {
  assert(!sub.removed && !sub.removing, "removing a notifier twice");
  const mm = sub.mm;
  if (k.sched.contended)
    yield k.sched.at("mmu_interval_notifier_remove: subscriptions lock", notifierObject(k, mm));
  const deferred = mm.deferredNotifiers.indexOf(sub);
  if (mm.activeInvalidations === 0 || deferred >= 0) {
    const list = deferred >= 0 ? mm.deferredNotifiers : mm.notifiers;
    const index = deferred >= 0 ? deferred : list.indexOf(sub);
    assert(index >= 0, "removing a notifier that is not registered");
    list.splice(index, 1);
    sub.removed = true;
    return;
  }
  assert(mm.notifiers.includes(sub), "removing a notifier that is not registered");
  sub.removing = true;
  mm.deferredNotifiers.push(sub);
  const seq = mm.notifierSeq;
  // Bounded: the sequence moves when the last invalidation ends, which unlinks the subscription.
  while (mm.notifierSeq === seq) {
    mm.notifierWaiters.add(k.sched.current());
    k.sched.sleep({
      describe: () => `mmu notifier removal during an invalidation of mm ${mm.id}`,
      holders: () => [],
    });
    yield BLOCKED;
  }
  assert(sub.removed, "notifier still linked after the invalidation ended");
}

/** mmu_interval_set_seq: called by the driver from invalidate, under its own lock. */
export function mmuIntervalSetSeq(sub: MmuIntervalNotifier, curSeq: number): void {
  sub.invalidateSeq = curSeq;
}

/**
 * mmu_interval_read_begin: a sequence to check later with read_retry. Sleeps while an invalidation that
 * has already told this subscription is still in progress.
 */
export function* mmuIntervalReadBegin(k: Kernel, sub: MmuIntervalNotifier): Kfn<number> {
  const mm = sub.mm;
  if (k.sched.contended) yield k.sched.at("mmu_interval_read_begin: invalidate_seq", notifierObject(k, mm));
  // Bounded: each pass waits for one invalidation to end.
  while (mm.activeInvalidations > 0 && sub.invalidateSeq === mm.notifierSeq) {
    mm.notifierWaiters.add(k.sched.current());
    k.sched.sleep({ describe: () => `mmu notifier invalidation of mm ${mm.id}`, holders: () => [] });
    yield BLOCKED;
  }
  return sub.invalidateSeq;
}

const notifierObjects = new WeakMap<MmStruct, number>();

/**
 * The shared object (sched/objects.ts) of an mm's notifier subscriptions: their sequence numbers and the
 * active invalidations, which read_begin and read_retry read and invalidate_range_start/end change.
 */
export function notifierObject(k: Kernel, mm: MmStruct): number {
  let object = notifierObjects.get(mm);
  if (object === undefined) {
    object = k.sched.nameObject(OBJ_NAMED, `mmu notifier subscriptions of mm ${mm.id}`);
    notifierObjects.set(mm, object);
  }
  return object;
}

/** mmu_interval_read_retry: true when the range was invalidated since read_begin returned seq. */
export function mmuIntervalReadRetry(sub: MmuIntervalNotifier, seq: number): boolean {
  return sub.invalidateSeq !== seq;
}

/** mmu_notifier_invalidate_range_start: tells every overlapping subscription, which may sleep. */
export function* mmuNotifierInvalidateRangeStart(k: Kernel, range: MmuNotifierRange): Kfn<void> {
  const mm = range.mm;
  if (k.sched.footprint !== null) k.sched.touch(notifierObject(k, mm));
  assert(range.end > range.start, "invalidating an empty range", () => `${range.start}..${range.end}`);
  if (mm.activeInvalidations++ === 0) mm.notifierSeq++;
  assert(mm.notifierSeq % 2 === 1, "notifier sequence must be odd during an invalidation");
  // Copy: a callback may remove its own subscription.
  for (const sub of [...mm.notifiers]) {
    if (sub.removed || !sub.overlaps(range.start, range.end)) continue;
    const ok = yield* sub.ops.invalidate(sub, range, mm.notifierSeq);
    assert(ok, "blocking invalidation refused", () => EVENT_NAMES[range.event]!);
  }
}

/** mmu_notifier_invalidate_range_end: ends the invalidation and wakes read_begin sleepers. */
export function mmuNotifierInvalidateRangeEnd(k: Kernel, range: MmuNotifierRange): void {
  const mm = range.mm;
  if (k.sched.footprint !== null) k.sched.touch(notifierObject(k, mm));
  assert(mm.activeInvalidations > 0, "range_end without range_start");
  if (--mm.activeInvalidations === 0) {
    mm.notifierSeq++;
    // mn_itree_inv_end: the deferred list holds subscriptions inserted during the invalidation, to
    // link, and subscriptions removed during it, to unlink. Bounded by that list.
    for (const sub of mm.deferredNotifiers.splice(0)) {
      if (!sub.removing) {
        mm.notifiers.push(sub);
        continue;
      }
      const index = mm.notifiers.indexOf(sub);
      assert(index >= 0, "a notifier being removed is not linked");
      mm.notifiers.splice(index, 1);
      sub.removing = false;
      sub.removed = true;
    }
    mm.notifierWaiters.wakeAll(k.sched);
  }
}

/** mmu_notifier_range_init: the range an invalidation is announced with. */
export function notifierRange(
  mm: MmStruct,
  vma: Vma | null,
  start: number,
  end: number,
  event: MmuNotifierEvent,
  owner: unknown = null,
): MmuNotifierRange {
  return { mm, vma, start: start as Vpn, end: end as Vpn, event, owner };
}

/** True when some subscription overlaps [start, end): lets hot paths skip building a range. */
export function hasNotifiers(mm: MmStruct, start: number, end: number): boolean {
  for (const sub of mm.notifiers) if (sub.overlaps(start, end)) return true;
  return false;
}
