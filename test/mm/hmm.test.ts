import { describe, expect, it } from "vitest";
import { EBUSY, EFAULT, EPERM } from "../../src/base/errno.js";
import { PAGE_SIZE, type Vpn } from "../../src/base/units.js";
import {
  HMM_PFN_ERROR,
  HMM_PFN_REQ_FAULT,
  HMM_PFN_REQ_WRITE,
  HMM_PFN_VALID,
  HMM_PFN_WRITE,
  type HmmRange,
  hmmPfnFlags,
  hmmPfnToMapOrder,
  hmmPfnToPfn,
  hmmRangeFault,
} from "../../src/mm/hmm.js";
import { MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_NONE, PROT_READ } from "../../src/mm/mmap.js";
import {
  MMU_NOTIFY_CLEAR,
  type MmuIntervalNotifier,
  mmuIntervalNotifierInsert,
  mmuIntervalReadBegin,
  mmuIntervalSetSeq,
  mmuNotifierInvalidateRangeEnd,
  mmuNotifierInvalidateRangeStart,
  notifierRange,
} from "../../src/mm/mmu_notifier.js";
import { ZERO_PFN } from "../../src/mm/page_alloc.js";
import type { Process } from "../../src/process.js";
import type { Kfn } from "../../src/sched/thread.js";
import { inThread, pageOf, pfnAt, pteAt, smallSystem } from "./helpers.js";

const P = PAGE_SIZE;
const BASE = 0x10_0000_0000;

interface FaultRequest {
  defaultFlags?: number;
  pfnFlagsMask?: number;
  /** Per-page request flags, written into hmm_pfns before each call. */
  requests?: number[];
  /** Something to do between read_begin and hmm_range_fault (still under mmap_lock). */
  meanwhile?: (sub: MmuIntervalNotifier) => Kfn<void>;
}

/**
 * What a driver does (dmirror_range_fault): register a notifier, then read_begin, take mmap_lock for
 * read and call hmm_range_fault, starting over on -EBUSY unless `retry` is false.
 */
function rangeFault(
  proc: Process,
  addr: number,
  pages: number,
  req: FaultRequest & { retry?: boolean } = {},
) {
  const system = proc.system;
  const k = system.kernel;
  const start = addr / P;
  const sub = mmuIntervalNotifierInsert(proc.mm, start as Vpn, (start + pages) as Vpn, {
    *invalidate(s, _range, curSeq) {
      mmuIntervalSetSeq(s, curSeq);
      return true;
    },
  });
  const hmmPfns = new Float64Array(pages);
  const mm = proc.mm;
  let attempts = 0;
  const ret = inThread(
    system,
    (function* (): Kfn<number> {
      for (;;) {
        attempts++;
        req.requests?.forEach((flags, i) => {
          hmmPfns[i] = flags;
        });
        const range: HmmRange = {
          notifier: sub,
          notifierSeq: yield* mmuIntervalReadBegin(k, sub),
          start,
          end: start + pages,
          hmmPfns,
          defaultFlags: req.defaultFlags ?? 0,
          pfnFlagsMask: req.pfnFlagsMask ?? 0,
          devPrivateOwner: null,
        };
        yield* mm.mmapLock.downRead();
        let ret: number;
        try {
          if (req.meanwhile !== undefined && attempts === 1) yield* req.meanwhile(sub);
          ret = yield* hmmRangeFault(system.faultContext, mm, range);
        } finally {
          mm.mmapLock.upRead();
        }
        if (ret !== -EBUSY || req.retry === false || attempts >= 8) return ret;
      }
    })(),
  );
  return { ret, pfns: [...hmmPfns], attempts };
}

const decode = (word: number) => ({ pfn: hmmPfnToPfn(word), flags: hmmPfnFlags(word) });

function mapFixed(proc: Process, pages: number, prot?: number): number {
  return proc.mmap(pages * P, { addr: BASE, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, prot });
}

describe("hmm_range_fault: snapshot without faulting", () => {
  it("reports untouched pages as not valid and allocates nothing", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, 4);
    const { ret, pfns } = rangeFault(proc, BASE, 4);
    expect(ret).toBe(0);
    expect(pfns).toEqual([0, 0, 0, 0]);
    expect(system.usedPages).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("reports written pages VALID|WRITE with the CPU's pfn, and zero-page reads VALID only", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, 2);
    proc.writeU32(BASE, 1);
    proc.read(BASE + P, 1);
    const { ret, pfns } = rangeFault(proc, BASE, 2);
    expect(ret).toBe(0);
    expect(decode(pfns[0]!)).toEqual({ pfn: pfnAt(proc, BASE), flags: HMM_PFN_VALID | HMM_PFN_WRITE });
    expect(decode(pfns[1]!)).toEqual({ pfn: ZERO_PFN, flags: HMM_PFN_VALID });
  });

  it("marks pages outside any VMA with ERROR when no fault is asked for", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, 1);
    const { ret, pfns } = rangeFault(proc, BASE, 3);
    expect(ret).toBe(0);
    expect(pfns).toEqual([0, HMM_PFN_ERROR, HMM_PFN_ERROR]);
  });
});

describe("hmm_range_fault: faulting in", () => {
  it("a read fault maps the zero page read-only and reports it VALID without WRITE", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, 3);
    const { ret, pfns } = rangeFault(proc, BASE, 3, { defaultFlags: HMM_PFN_REQ_FAULT });
    expect(ret).toBe(0);
    for (const word of pfns) expect(decode(word)).toEqual({ pfn: ZERO_PFN, flags: HMM_PFN_VALID });
    expect(pfnAt(proc, BASE)).toBe(ZERO_PFN);
    expect(system.usedPages).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a write fault allocates pages, reports them VALID|WRITE, and they are the CPU's pages", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, 2);
    proc.read(BASE, 1); // the zero page first: the write fault must replace it
    const { ret, pfns, attempts } = rangeFault(proc, BASE, 2, {
      defaultFlags: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE,
    });
    expect(ret).toBe(0);
    // Replacing the zero page invalidates the interval (wp_page_copy), so the first try ends in -EBUSY.
    expect(attempts).toBe(2);
    const first = decode(pfns[0]!);
    expect(first.flags).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
    expect(first.pfn).not.toBe(ZERO_PFN);
    expect(first.pfn).toBe(pfnAt(proc, BASE));
    expect(decode(pfns[1]!).pfn).toBe(pfnAt(proc, BASE + P));
    // What the device would read or write through that pfn is what the CPU sees.
    proc.write(BASE, pageOf(0x5e));
    expect(system.kernel.store.word(first.pfn)).toBe(0x5e5e5e5e);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("per-page requests through pfn_flags_mask: pages before the first request are left alone", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, 4);
    proc.read(BASE + 3 * P, 1); // the PTE table exists, so the walk looks at each PTE
    const { ret, pfns } = rangeFault(proc, BASE, 3, {
      pfnFlagsMask: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE,
      requests: [0, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, 0],
    });
    expect(ret).toBe(0);
    expect(pfns[0]).toBe(0);
    expect(pteAt(proc, BASE)).toBe(0);
    expect(decode(pfns[1]!)).toEqual({ pfn: pfnAt(proc, BASE + P), flags: HMM_PFN_VALID | HMM_PFN_WRITE });
    // hmm_vma_fault faults from the first page that needs it to the end of the span, as the kernel does.
    expect(decode(pfns[2]!).flags).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
    expect(system.usedPages).toBe(2);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a hole with one page requested is faulted whole, as hmm_vma_walk_hole does", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, 3);
    const { ret, pfns } = rangeFault(proc, BASE, 3, {
      pfnFlagsMask: HMM_PFN_REQ_FAULT,
      requests: [0, 0, HMM_PFN_REQ_FAULT],
    });
    expect(ret).toBe(0);
    for (const word of pfns) expect(decode(word)).toEqual({ pfn: ZERO_PFN, flags: HMM_PFN_VALID });
  });

  it("a write fault on a private file mapping gets an anonymous copy; a read fault the page cache", () => {
    const system = smallSystem();
    const file = system.createFile("f", 2 * P);
    file.write(0, pageOf(0x21, 2));
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, { file, flags: MAP_PRIVATE });
    const read = rangeFault(proc, addr, 1, { defaultFlags: HMM_PFN_REQ_FAULT });
    expect(decode(read.pfns[0]!)).toEqual({ pfn: file.space.pages.get(0), flags: HMM_PFN_VALID });
    const write = rangeFault(proc, addr + P, 1, { defaultFlags: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE });
    const copy = decode(write.pfns[0]!).pfn;
    expect(copy).not.toBe(file.space.pages.get(1));
    expect(system.kernel.pages.isAnon(copy)).toBe(true);
    expect(system.kernel.store.word(copy)).toBe(0x21212121);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("hmm_range_fault: errors", () => {
  it("-EFAULT when a fault is asked for outside a VMA", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, 1);
    expect(rangeFault(proc, BASE, 2, { defaultFlags: HMM_PFN_REQ_FAULT }).ret).toBe(-EFAULT);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("-EFAULT on a PROT_NONE VMA, even with its pages present", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, 1);
    proc.writeU32(BASE, 1);
    proc.mprotect(BASE, P, PROT_NONE);
    expect(rangeFault(proc, BASE, 1, { defaultFlags: HMM_PFN_REQ_FAULT }).ret).toBe(-EFAULT);
    // Without a fault request the page is only reported as an error.
    const snapshot = rangeFault(proc, BASE, 1);
    expect([snapshot.ret, snapshot.pfns[0]]).toEqual([0, HMM_PFN_ERROR]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("-EPERM for a write fault on a read-only VMA, which a read fault still serves", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, 1, PROT_READ);
    const write = rangeFault(proc, BASE, 1, { defaultFlags: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE });
    expect(write.ret).toBe(-EPERM);
    expect(pteAt(proc, BASE)).toBe(0);
    const read = rangeFault(proc, BASE, 1, { defaultFlags: HMM_PFN_REQ_FAULT });
    expect(read.ret).toBe(0);
    expect(decode(read.pfns[0]!)).toEqual({ pfn: ZERO_PFN, flags: HMM_PFN_VALID });
  });

  it("-EFAULT for a page of a file mapping beyond the end of the file", () => {
    const system = smallSystem();
    const file = system.createFile("short", P);
    const proc = system.spawn();
    const addr = proc.mmap(2 * P, { file });
    expect(rangeFault(proc, addr, 2, { defaultFlags: HMM_PFN_REQ_FAULT }).ret).toBe(-EFAULT);
    expect(file.space.pages.has(1)).toBe(false);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("-EBUSY when the interval was invalidated after read_begin", () => {
    const system = smallSystem();
    const proc = system.spawn();
    mapFixed(proc, 1);
    const k = system.kernel;
    const { ret, pfns } = rangeFault(proc, BASE, 1, {
      defaultFlags: HMM_PFN_REQ_FAULT,
      retry: false,
      *meanwhile() {
        const vma = proc.mm.vmas[0]!;
        const range = notifierRange(proc.mm, vma, vma.start, vma.end, MMU_NOTIFY_CLEAR);
        yield* mmuNotifierInvalidateRangeStart(k, range);
        mmuNotifierInvalidateRangeEnd(k, range);
      },
    });
    expect(ret).toBe(-EBUSY);
    expect(pfns).toEqual([0]);
    expect(pteAt(proc, BASE)).toBe(0);
  });
});

describe("hmm pfn words", () => {
  it("encode a pfn above 2^32 with its flags and mapping order", () => {
    const word = 2 ** 36 * 256 + 9 * 8 + HMM_PFN_VALID + HMM_PFN_WRITE;
    expect(hmmPfnToPfn(word)).toBe(2 ** 36);
    expect(hmmPfnFlags(word)).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
    expect(hmmPfnToMapOrder(word)).toBe(9);
    expect(hmmPfnToMapOrder(2 ** 36 * 256 + HMM_PFN_VALID)).toBe(0);
    expect(hmmPfnFlags(HMM_PFN_ERROR)).toBe(HMM_PFN_ERROR);
  });
});
