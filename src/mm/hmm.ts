/**
 * hmm_range_fault (mm/hmm.c): reports, for a range of an mm, the CPU pfn behind each page and whether
 * it may be written, faulting pages in first when asked to. Device-private pages are reported only to
 * their owner; anyone else who needs them faults them back to RAM through migrate_to_ram.
 *
 * Deliberate difference: an hmm pfn word is `pfn * 256 + order * 8 + flags`, with VALID, WRITE and
 * ERROR in the low three bits and the mapping order (hmm_pfn_to_map_order) in the five above them (the
 * kernel keeps flags and order in bits 63..56 of an unsigned long, which a double cannot hold).
 */
import { assert } from "../base/assert.js";
import { EBUSY, EFAULT, EPERM } from "../base/errno.js";
import { pmdObject, pteTableObject } from "../sched/objects.js";
import type { Kfn } from "../sched/thread.js";
import {
  FAULT_FLAG_REMOTE,
  FAULT_FLAG_WRITE,
  type FaultContext,
  handleMmFault,
  migrationEntryWait,
  VM_FAULT_ERROR,
} from "./memory.js";
import { type MmStruct, VM_IO, VM_PFNMAP, VM_READ, VM_WRITE, type Vma } from "./mm_types.js";
import { type MmuIntervalNotifier, mmuIntervalReadRetry, notifierObject } from "./mmu_notifier.js";
import { HPAGE_PMD_NR, HPAGE_PMD_ORDER } from "./page.js";
import { ZERO_PFN } from "./page_alloc.js";
import { walkPageRange } from "./pagewalk.js";
import {
  isDevicePrivateEntry,
  isMigrationEntry,
  isWritableDevicePrivateEntry,
  PageTables,
  pteFrame,
  ptePresent,
  pteProtNone,
  pteSpecial,
  pteWrite,
} from "./pgtable.js";

/** HMM_PFN_VALID: the hmm_pfns entry holds a valid pfn the CPU can access. */
export const HMM_PFN_VALID = 1;
/** HMM_PFN_WRITE: the page is mapped writable. */
export const HMM_PFN_WRITE = 2;
/** HMM_PFN_ERROR: the page cannot be accessed (a fault on it would fail). */
export const HMM_PFN_ERROR = 4;
/** The flag bits are the word modulo this; the order is the quotient modulo 32. */
const HMM_PFN_FLAGS_SCALE = 8;
const HMM_PFN_ORDER_LIMIT = 32;
const HMM_PFN_SCALE = HMM_PFN_FLAGS_SCALE * HMM_PFN_ORDER_LIMIT;
/** The order bits of a PMD-sized mapping (hmm_pfn_flags_order(PMD_SHIFT - PAGE_SHIFT)). */
const HMM_PFN_ORDER_PMD = HPAGE_PMD_ORDER * HMM_PFN_FLAGS_SCALE;
/** HMM_PFN_REQ_FAULT: input flag of hmm_range_fault, fault the page in if it is not present. */
export const HMM_PFN_REQ_FAULT = HMM_PFN_VALID;
/** HMM_PFN_REQ_WRITE: input flag of hmm_range_fault, fault the page in writable. */
export const HMM_PFN_REQ_WRITE = HMM_PFN_WRITE;

/** hmm_pfn_to_page's pfn: the frame number held by an hmm_pfns entry. */
export function hmmPfnToPfn(word: number): number {
  return Math.floor(word / HMM_PFN_SCALE);
}

/** The HMM_PFN_* flag bits of an hmm_pfns entry. */
export function hmmPfnFlags(word: number): number {
  return word % HMM_PFN_FLAGS_SCALE;
}

/** hmm_pfn_to_map_order: the order of the CPU mapping behind the entry (9 for a huge PMD, else 0). */
export function hmmPfnToMapOrder(word: number): number {
  return Math.floor(word / HMM_PFN_FLAGS_SCALE) % HMM_PFN_ORDER_LIMIT;
}

/** struct hmm_range. `start` and `end` are page numbers; hmmPfns has end - start entries. */
export interface HmmRange {
  readonly notifier: MmuIntervalNotifier;
  notifierSeq: number;
  readonly start: number;
  readonly end: number;
  readonly hmmPfns: Float64Array;
  readonly defaultFlags: number;
  readonly pfnFlagsMask: number;
  readonly devPrivateOwner: unknown;
}

const NEED_FAULT = 1;
const NEED_WRITE_FAULT = 2;

/** hmm_pte_need_fault. */
function needFault(range: HmmRange, index: number, cpuFlags: number): number {
  const req = ((range.hmmPfns[index]! % HMM_PFN_FLAGS_SCALE) & range.pfnFlagsMask) | range.defaultFlags;
  if ((req & HMM_PFN_REQ_FAULT) === 0) return 0;
  if ((req & HMM_PFN_REQ_WRITE) !== 0 && (cpuFlags & HMM_PFN_WRITE) === 0)
    return NEED_FAULT | NEED_WRITE_FAULT;
  if ((cpuFlags & HMM_PFN_VALID) === 0) return NEED_FAULT;
  return 0;
}

function needFaultSpan(range: HmmRange, start: number, end: number): number {
  let need = 0;
  if (((range.defaultFlags | range.pfnFlagsMask) & HMM_PFN_REQ_FAULT) === 0) return 0;
  for (let vpn = start; vpn < end; vpn++) need |= needFault(range, vpn - range.start, 0);
  return need;
}

/** hmm_range_fault: 0 with every entry filled, or -EBUSY, -EFAULT, -EPERM, -ENOMEM. */
export function* hmmRangeFault(ctx: FaultContext, mm: MmStruct, range: HmmRange): Kfn<number> {
  const k = ctx.k;
  assert(mm.mmapLock.heldBy(k.sched.current()), "hmm_range_fault without mmap_lock");
  assert(
    range.hmmPfns.length >= range.end - range.start,
    "hmm_pfns too short",
    () => `${range.hmmPfns.length}`,
  );
  const walk = { last: range.start };
  // Each pass either completes, fails, or made progress by faulting: bounded by pages times retries.
  for (let pass = 0; pass < 64 * (range.end - range.start) + 64; pass++) {
    // mmu_interval_check_retry reads the subscription's sequence without a lock: an invalidation on
    // another CPU may move it just before or just after.
    if (k.sched.contended)
      yield k.sched.at("hmm_range_fault: mmu_interval_check_retry", notifierObject(k, mm));
    if (mmuIntervalReadRetry(range.notifier, range.notifierSeq)) return -EBUSY;
    const ret = yield* walkPageRange(k, mm, walk.last, range.end, hmmWalkOps(ctx, range, walk));
    if (ret !== -EBUSY) return ret;
  }
  return -EBUSY;
}

function hmmWalkOps(ctx: FaultContext, range: HmmRange, walk: { last: number }) {
  const k = ctx.k;
  const fill = (start: number, end: number, value: number) => {
    for (let vpn = start; vpn < end; vpn++) range.hmmPfns[vpn - range.start] = value;
  };
  /** hmm_vma_fault: fault every page of [start, end) for read or write, then ask for a re-walk. */
  function* fault(vma: Vma, start: number, end: number, need: number): Kfn<number> {
    walk.last = start;
    let flags = FAULT_FLAG_REMOTE;
    if ((need & NEED_WRITE_FAULT) !== 0) {
      if ((vma.flags & VM_WRITE) === 0) return -EPERM;
      flags |= FAULT_FLAG_WRITE;
    }
    for (let vpn = start; vpn < end; vpn++) {
      const ret = yield* handleMmFault(ctx, vma, vpn, flags);
      if ((ret & VM_FAULT_ERROR) !== 0) return -EFAULT;
    }
    return -EBUSY;
  }
  const vmaUsable = (vma: Vma) => (vma.flags & (VM_IO | VM_PFNMAP)) === 0 && (vma.flags & VM_READ) !== 0;
  return {
    *pteHole(start: number, end: number, vma: Vma | null): Kfn<number> {
      const need = needFaultSpan(range, start, end);
      if (vma === null || !vmaUsable(vma)) {
        if (need !== 0) return -EFAULT;
        fill(start, end, HMM_PFN_ERROR);
        return 0;
      }
      if (need !== 0) return yield* fault(vma, start, end, need);
      fill(start, end, 0);
      return 0;
    },
    /**
     * hmm_vma_handle_pmd: a huge PMD is reported whole, each page's entry carrying the PMD order; a
     * PROT_NONE one is not valid. Faults where the request needs more (a write to a read-only PMD).
     */
    *pmdHuge(pmdKey: number, leaf: number, start: number, end: number, vma: Vma): Kfn<number> {
      if (!vmaUsable(vma)) {
        if (needFaultSpan(range, start, end) !== 0) return -EFAULT;
        fill(start, end, HMM_PFN_ERROR);
        return 0;
      }
      // pmdp_get_lockless: no PMD lock, as for the PTEs.
      if (k.sched.contended) yield k.sched.at("hmm_vma_walk_pmd: pmdp_get_lockless", pmdObject(pmdKey));
      const now = k.pt.pmdLeaf(pmdKey);
      if (now !== leaf) {
        walk.last = start;
        return -EBUSY;
      }
      const cpuFlags = pteProtNone(leaf) ? 0 : HMM_PFN_VALID | (pteWrite(leaf) ? HMM_PFN_WRITE : 0);
      let need = 0;
      for (let vpn = start; vpn < end; vpn++) need |= needFault(range, vpn - range.start, cpuFlags);
      if (need !== 0) return yield* fault(vma, start, end, need);
      const first = pteFrame(leaf) + (start % HPAGE_PMD_NR);
      for (let vpn = start; vpn < end; vpn++) {
        range.hmmPfns[vpn - range.start] =
          cpuFlags === 0 ? 0 : (first + vpn - start) * HMM_PFN_SCALE + HMM_PFN_ORDER_PMD + cpuFlags;
      }
      return 0;
    },
    *pmdEntry(table: number, start: number, end: number, vma: Vma): Kfn<number> {
      if (!vmaUsable(vma)) {
        if (needFaultSpan(range, start, end) !== 0) return -EFAULT;
        fill(start, end, HMM_PFN_ERROR);
        return 0;
      }
      for (let vpn = start; vpn < end; vpn++) {
        const index = vpn - range.start;
        // hmm_vma_handle_pte reads each PTE with ptep_get and no PTE lock (the notifier sequence makes
        // the result safe to use): a fault or an unmap on another CPU may come between two reads.
        if (k.sched.contended) yield k.sched.at("hmm_vma_walk_pmd: ptep_get", pteTableObject(table));
        const pte = k.pt.entries[PageTables.slot(table, vpn)]!;
        if (pte === 0) {
          const need = needFault(range, index, 0);
          if (need !== 0) return yield* fault(vma, vpn, end, need);
          range.hmmPfns[index] = 0;
          continue;
        }
        if (!ptePresent(pte)) {
          const pfn = pteFrame(pte);
          if (isDevicePrivateEntry(pte) && ctx.pagemaps.of(pfn).owner === range.devPrivateOwner) {
            range.hmmPfns[index] =
              pfn * HMM_PFN_SCALE + HMM_PFN_VALID + (isWritableDevicePrivateEntry(pte) ? HMM_PFN_WRITE : 0);
            continue;
          }
          const need = needFault(range, index, 0);
          if (need === 0) {
            range.hmmPfns[index] = 0;
            continue;
          }
          if (isMigrationEntry(pte)) {
            // migration_entry_wait (with its era's page reference), then walk again from here.
            walk.last = vpn;
            yield* migrationEntryWait(ctx, table, vpn, pte);
            return -EBUSY;
          }
          return yield* fault(vma, vpn, end, need);
        }
        const cpuFlags = pteProtNone(pte) ? 0 : HMM_PFN_VALID | (pteWrite(pte) ? HMM_PFN_WRITE : 0);
        const need = needFault(range, index, cpuFlags);
        if (need !== 0) return yield* fault(vma, vpn, end, need);
        const pfn = pteFrame(pte);
        if (pteSpecial(pte) && pfn !== ZERO_PFN) {
          range.hmmPfns[index] = HMM_PFN_ERROR;
          continue;
        }
        range.hmmPfns[index] = cpuFlags === 0 ? 0 : pfn * HMM_PFN_SCALE + cpuFlags;
      }
      return 0;
    },
  };
}
