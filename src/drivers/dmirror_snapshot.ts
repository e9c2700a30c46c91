/**
 * lib/test_hmm.c's HMM_DMIRROR_SNAPSHOT (dmirror_snapshot, dmirror_range_snapshot, dmirror_mkentry):
 * what hmm_range_fault reports of the CPU page table, without faulting, as one code per page.
 */
import { assert } from "../base/assert.js";
import { EBUSY, EINVAL } from "../base/errno.js";
import { asVpn } from "../base/units.js";
import {
  HMM_PFN_ERROR,
  HMM_PFN_VALID,
  HMM_PFN_WRITE,
  type HmmRange,
  hmmPfnFlags,
  hmmPfnToMapOrder,
  hmmPfnToPfn,
  hmmRangeFault,
} from "../mm/hmm.js";
import { MEMORY_DEVICE_PRIVATE } from "../mm/memremap.js";
import {
  mmuIntervalNotifierInsert,
  mmuIntervalNotifierRemove,
  mmuIntervalReadBegin,
  mmuIntervalReadRetry,
  mmuIntervalSetSeq,
  notifierObject,
} from "../mm/mmu_notifier.js";
import { HPAGE_PMD_ORDER } from "../mm/page.js";
import { ZERO_PFN } from "../mm/page_alloc.js";
import type { Kfn } from "../sched/thread.js";
import type { Dmirror } from "./dmirror.js";
import { type DmirrorResult, FAULT_CHUNK_PAGES } from "./dmirror_entry.js";
import {
  HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL,
  HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE,
  HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
  HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE,
  HMM_DMIRROR_PROT_ERROR,
  HMM_DMIRROR_PROT_NONE,
  HMM_DMIRROR_PROT_PMD,
  HMM_DMIRROR_PROT_READ,
  HMM_DMIRROR_PROT_WRITE,
  HMM_DMIRROR_PROT_ZERO,
} from "./dmirror_uapi.js";

/** dmirror_mkentry. */
function mkEntry(mirror: Dmirror, word: number): number {
  const flags = hmmPfnFlags(word);
  if ((flags & HMM_PFN_ERROR) !== 0) return HMM_DMIRROR_PROT_ERROR;
  if ((flags & HMM_PFN_VALID) === 0) return HMM_DMIRROR_PROT_NONE;
  const k = mirror.ctx.k;
  const pfn = hmmPfnToPfn(word);
  let code = HMM_DMIRROR_PROT_NONE;
  if (k.pages.isZoneDevice(pfn)) {
    const pgmap = mirror.ctx.pagemaps.of(pfn);
    const local = pgmap.owner === mirror.device;
    if (pgmap.type === MEMORY_DEVICE_PRIVATE)
      code = local ? HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL : HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE;
    else code = local ? HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL : HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE;
  } else if (pfn === ZERO_PFN) {
    code = HMM_DMIRROR_PROT_ZERO;
  }
  code |= (flags & HMM_PFN_WRITE) !== 0 ? HMM_DMIRROR_PROT_WRITE : HMM_DMIRROR_PROT_READ;
  // hmm_pfn_to_map_order(entry) + PAGE_SHIFT == PMD_SHIFT: a huge PMD maps the page.
  if (hmmPfnToMapOrder(word) === HPAGE_PMD_ORDER) code |= HMM_DMIRROR_PROT_PMD;
  return code;
}

/**
 * HMM_DMIRROR_SNAPSHOT (dmirror_snapshot): -EINVAL once the mm has gone; then one code per page of
 * what the CPU page table holds, without faulting, 32 pages at a time, each under a temporary notifier.
 */
export function* dmirrorSnapshot(
  mirror: Dmirror,
  vpn: number,
  npages: number,
  codes: Uint8Array,
): Kfn<DmirrorResult | number> {
  const k = mirror.ctx.k;
  if (!mirror.mmAlive) return -EINVAL;
  assert(codes.length >= npages, "SNAPSHOT buffer too short");
  const pfns = new Float64Array(FAULT_CHUNK_PAGES);
  let cpages = 0;
  for (let addr = vpn; addr < vpn + npages; addr += FAULT_CHUNK_PAGES) {
    const next = Math.min(vpn + npages, addr + FAULT_CHUNK_PAGES);
    // A temporary notifier over the chunk, as dmirror_range_snapshot inserts.
    const sub = mmuIntervalNotifierInsert(mirror.mm, asVpn(addr), asVpn(next), {
      *invalidate(s, _range, curSeq) {
        yield* mirror.mutex.lock();
        mmuIntervalSetSeq(s, curSeq);
        mirror.mutex.unlock();
        return true;
      },
    });
    const range: HmmRange = {
      notifier: sub,
      notifierSeq: 0,
      start: addr,
      end: next,
      hmmPfns: pfns,
      defaultFlags: 0,
      pfnFlagsMask: 0,
      devPrivateOwner: mirror.device,
    };
    let ret = -EBUSY;
    for (let attempt = 0; attempt < 1000 && ret !== 0; attempt++) {
      range.notifierSeq = yield* mmuIntervalReadBegin(k, sub);
      yield* mirror.mm.mmapLock.downRead();
      ret = yield* hmmRangeFault(mirror.ctx, mirror.mm, range);
      mirror.mm.mmapLock.upRead();
      if (ret === -EBUSY) {
        if (k.sched.contended)
          yield k.sched.atRetry("dmirror_range_snapshot: -EBUSY, again", notifierObject(k, mirror.mm));
        continue;
      }
      if (ret !== 0) break;
      yield* mirror.mutex.lock();
      if (mmuIntervalReadRetry(sub, range.notifierSeq)) ret = -EBUSY;
      else for (let v = addr; v < next; v++) codes[v - vpn] = mkEntry(mirror, pfns[v - addr]!);
      mirror.mutex.unlock();
      if (ret === -EBUSY && k.sched.contended)
        yield k.sched.atRetry(
          "dmirror_range_snapshot: mmu_interval_read_retry, again",
          notifierObject(k, mirror.mm),
        );
    }
    yield* mmuIntervalNotifierRemove(k, sub);
    if (ret !== 0) return ret;
    cpages += next - addr;
  }
  return { cpages, faults: 0 };
}
