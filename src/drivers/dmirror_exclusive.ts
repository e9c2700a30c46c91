/**
 * lib/test_hmm.c's device-exclusive commands: HMM_DMIRROR_EXCLUSIVE (dmirror_exclusive and
 * dmirror_atomic_map) and HMM_DMIRROR_CHECK_EXCLUSIVE (dmirror_check_atomic), on one open (Dmirror).
 */
import { assert } from "../base/assert.js";
import { EBUSY, EINVAL, ENOENT, ENOMEM, EPERM } from "../base/errno.js";
import { PAGE_SIZE } from "../base/units.js";
import { makeDeviceExclusive } from "../mm/device_exclusive.js";
import { unlockPage } from "../mm/filemap.js";
import { mmuIntervalReadBegin, mmuIntervalReadRetry, notifierObject } from "../mm/mmu_notifier.js";
import type { Kfn } from "../sched/thread.js";
import type { Dmirror } from "./dmirror.js";
import {
  bounceFits,
  type DmirrorResult,
  DPT_XA_TAG_ATOMIC,
  entryAtomic,
  entryPfn,
  RETRY_ATTEMPTS_MAX,
} from "./dmirror_entry.js";

/**
 * HMM_DMIRROR_EXCLUSIVE (dmirror_exclusive): -EINVAL once the mm has gone; under mmap_lock, for each
 * page make_device_exclusive (owner NULL, as test_hmm.c passes it) and dmirror_atomic_map, which
 * stores an atomic entry, before the page is unlocked and put; the first error stops the loop and is
 * the command's. Then the range is read back through the mirror as READ's dmirror_do_read does
 * (-ENOENT at the first page not mirrored) into `into` when every page was. Device-exclusive access
 * came with 5.14: under "seed" and "4.14" the command does not exist (-EINVAL).
 */
export function* dmirrorExclusive(
  mirror: Dmirror,
  vpn: number,
  npages: number,
  into: Uint8Array | null,
): Kfn<DmirrorResult | number> {
  const k = mirror.ctx.k;
  if (mirror.ctx.migrate.protocol !== "modern" || !mirror.mmAlive) return -EINVAL;
  assert(
    into === null || (k.store.kind === "bytes" && into.length >= npages * PAGE_SIZE),
    "bad read-back buffer",
  );
  let ret = 0;
  yield* mirror.mm.mmapLock.downRead();
  try {
    const rechecks = mirror.device.switches.exclusiveRechecks;
    let staleAttempts = 0;
    for (let v = vpn; ret === 0 && v < vpn + npages; v++) {
      const seq = rechecks ? yield* mmuIntervalReadBegin(k, mirror.notifier) : 0;
      const pfn = yield* makeDeviceExclusive(mirror.ctx, mirror.mm, v, rechecks ? mirror : null);
      if (pfn < 0) {
        ret = pfn;
        break;
      }
      // dmirror_atomic_map (the corrected driver stores only if nothing invalidated the page since).
      yield* mirror.mutex.lock();
      const stale = rechecks && mmuIntervalReadRetry(mirror.notifier, seq);
      if (!stale) mirror.pt.set(v, pfn * 4 + DPT_XA_TAG_ATOMIC);
      mirror.mutex.unlock();
      unlockPage(k, pfn);
      k.pages.put(pfn);
      if (stale) {
        // nouveau_atomic_range_fault gives up with -EBUSY after its one-second timeout. It needs one:
        // a retry finds its own device-exclusive entry, GUP faults it back (MMU_NOTIFY_CLEAR, no
        // owner, which the callback cannot tell from anyone else's), and that invalidation makes the
        // retry stale too, every time: nothing in this loop maps the page for the CPU again.
        if (++staleAttempts >= RETRY_ATTEMPTS_MAX) {
          ret = -EBUSY;
          break;
        }
        if (k.sched.contended)
          yield k.sched.atRetry(
            "dmirror_exclusive: mmu_interval_read_retry, again",
            notifierObject(k, mirror.mm),
          );
        v--;
      }
    }
  } finally {
    mirror.mm.mmapLock.upRead();
  }
  if (ret !== 0) return ret;
  if (!bounceFits(k, npages)) return -ENOMEM;
  yield* mirror.mutex.lock();
  const cpages = mirror.pt.presentRun(vpn, npages);
  if (cpages === npages && into !== null) {
    for (let i = 0; i < npages; i++)
      k.store.readBytes(entryPfn(mirror.pt.get(vpn + i)), 0, into, i * PAGE_SIZE, PAGE_SIZE);
  }
  mirror.mutex.unlock();
  return cpages === npages ? { cpages, faults: 0 } : -ENOENT;
}

/**
 * HMM_DMIRROR_CHECK_EXCLUSIVE (dmirror_check_atomic): -EPERM while any page of the range is still
 * mapped for atomic access, 0 once every such mapping has been revoked. Like test_hmm.c it reads the
 * xarray without the mirror's mutex. Under "seed" and "4.14" the command does not exist (-EINVAL).
 */
export function dmirrorCheckAtomic(mirror: Dmirror, vpn: number, npages: number): DmirrorResult | number {
  if (mirror.ctx.migrate.protocol !== "modern") return -EINVAL;
  // The kernel xa_loads every page of the range; the mirror's stored entries give the same answer
  // without walking a range of 2^52 pages one by one (the kernel would take hours there).
  if (mirror.pt.someInRange(vpn, vpn + npages, entryAtomic)) return -EPERM;
  return { cpages: 0, faults: 0 };
}
