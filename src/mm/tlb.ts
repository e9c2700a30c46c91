/**
 * The CPUs' TLBs (arch/x86/mm/tlb.c, include/asm-generic/tlb.h): each CPU caches translations of the
 * user addresses it has accessed, and a user load or store that hits uses the cached pfn and
 * permissions without looking at the PTE. The kernel must flush an entry wherever it takes a
 * translation away or narrows it (ptep_clear_flush, flush_tlb_range, flush_tlb_mm); until it does, a
 * CPU holding the entry keeps reaching the page it names. That window is S12 (KERNEL-NOTES section 9).
 *
 * Each CPU has a direct-mapped TLB of TLB_ENTRIES entries in typed arrays, indexed by the vpn's low
 * bits and tagged with (mm id, vpn): an entry is `pfn * 4 + writable * 2 + dirty`. A fill evicts
 * whatever held the index, as a real TLB may drop an entry at any time; with no PCID, the tag's mm id
 * stands in for the CR3 switch (hmmsim's CPUs run every mm at once).
 *
 * x86 rules the model keeps: an entry is made only from a present, accessed PTE (the walk sets the
 * accessed bit); a write through an entry that is not dirty walks the page table again to set the dirty
 * bit (and faults if the PTE no longer allows the write); a page fault drops the faulting address's
 * entry. Deliberate differences: no global pages, no lazy-TLB mode, no batched flushing (a flush is
 * immediate on every CPU, as an IPI that has been answered), and no ASID generations.
 */

import { tlbObject } from "../sched/objects.js";
import type { Scheduler } from "../sched/scheduler.js";

/** Entries per CPU: a power of two (the index is vpn & (TLB_ENTRIES - 1)). */
export const TLB_ENTRIES = 64;
const INDEX_MASK = TLB_ENTRIES - 1;
/** Above this many pages a range flush scans the whole TLB instead of probing each page. */
const RANGE_PROBE_MAX = TLB_ENTRIES;

/** Bit of a TLB entry: the cached translation allows writes. */
export const TLB_WRITABLE = 2;
/** Bit of a TLB entry: the translation was cached with the PTE already dirty. */
export const TLB_DIRTY = 1;

/** One CPU's cached translation, as the invariant checker and tests see it. */
export interface TlbEntry {
  readonly cpu: number;
  readonly mmId: number;
  readonly vpn: number;
  readonly pfn: number;
  readonly writable: boolean;
  readonly dirty: boolean;
}

/**
 * The TLBs of every CPU: fills on access and the flushes the kernel issues (flush_tlb_range, flush_tlb_mm,
 * ptep_clear_flush).
 */
export class Tlbs {
  /** The mm id of each entry, 0 when the entry is invalid: CPU c's entry i is at c * TLB_ENTRIES + i. */
  private readonly mmOf: Int32Array;
  private readonly vpnOf: Float64Array;
  /** pfn * 4 + TLB_WRITABLE + TLB_DIRTY. */
  private readonly value: Float64Array;
  /** Valid entries, all CPUs together: flushes return at once when there are none. */
  private live = 0;
  /** Entries flushed since boot (ranges count each entry they drop), for tests and reports. */
  flushedEntries = 0;

  constructor(
    private readonly sched: Scheduler,
    readonly cpus: number,
  ) {
    this.mmOf = new Int32Array(cpus * TLB_ENTRIES);
    this.vpnOf = new Float64Array(cpus * TLB_ENTRIES);
    this.value = new Float64Array(cpus * TLB_ENTRIES);
  }

  /** The cached entry of (mm, vpn) on `cpu`: pfn * 4 + flags, or -1 on a miss. */
  lookup(cpu: number, mmId: number, vpn: number): number {
    const at = cpu * TLB_ENTRIES + (vpn & INDEX_MASK);
    if (this.mmOf[at] !== mmId || this.vpnOf[at] !== vpn) return -1;
    return this.value[at]!;
  }

  /** Caches a translation on `cpu` (the walk's fill), evicting what held its index. */
  fill(cpu: number, mmId: number, vpn: number, pfn: number, writable: boolean, dirty: boolean): void {
    const at = cpu * TLB_ENTRIES + (vpn & INDEX_MASK);
    if (this.mmOf[at] === 0) this.live++;
    this.mmOf[at] = mmId;
    this.vpnOf[at] = vpn;
    this.value[at] = pfn * 4 + (writable ? TLB_WRITABLE : 0) + (dirty ? TLB_DIRTY : 0);
  }

  /** Drops `cpu`'s entry for (mm, vpn): what a page fault on that address does to the local TLB. */
  invalidateLocal(cpu: number, mmId: number, vpn: number): void {
    if (this.live === 0) return;
    this.drop(cpu * TLB_ENTRIES + (vpn & INDEX_MASK), mmId, vpn);
  }

  private drop(at: number, mmId: number, vpn: number): void {
    if (this.mmOf[at] !== mmId || this.vpnOf[at] !== vpn) return;
    this.mmOf[at] = 0;
    this.live--;
    this.flushedEntries++;
  }

  /**
   * flush_tlb_range / flush_tlb_mm_range: every CPU drops its entries of mm for [start, end). Always
   * records the TLBs of mm as touched, so that the explorer orders it against lookups.
   */
  flushRange(mmId: number, start: number, end: number): void {
    this.sched.touch(tlbObject(mmId));
    if (this.live === 0 || end <= start) return;
    if (end - start <= RANGE_PROBE_MAX) {
      for (let cpu = 0; cpu < this.cpus; cpu++) {
        const base = cpu * TLB_ENTRIES;
        for (let vpn = start; vpn < end; vpn++) this.drop(base + (vpn & INDEX_MASK), mmId, vpn);
      }
      return;
    }
    const mmOf = this.mmOf;
    const vpnOf = this.vpnOf;
    for (let at = 0; at < mmOf.length; at++) {
      if (mmOf[at] !== mmId) continue;
      const vpn = vpnOf[at]!;
      if (vpn >= start && vpn < end) this.drop(at, mmId, vpn);
    }
  }

  /** flush_tlb_page: the one page (ptep_clear_flush's flush). */
  flushPage(mmId: number, vpn: number): void {
    this.flushRange(mmId, vpn, vpn + 1);
  }

  /** flush_tlb_mm: every entry of mm on every CPU (fork's flush of the parent, exit). */
  flushMm(mmId: number): void {
    this.sched.touch(tlbObject(mmId));
    if (this.live === 0) return;
    const mmOf = this.mmOf;
    for (let at = 0; at < mmOf.length; at++) if (mmOf[at] === mmId) this.drop(at, mmId, this.vpnOf[at]!);
  }

  /** Valid entries on every CPU, all mms together. */
  get size(): number {
    return this.live;
  }

  /** Every valid entry, CPU by CPU. */
  entries(): TlbEntry[] {
    const out: TlbEntry[] = [];
    if (this.live === 0) return out;
    for (let at = 0; at < this.mmOf.length; at++) {
      const mmId = this.mmOf[at]!;
      if (mmId === 0) continue;
      const value = this.value[at]!;
      out.push({
        cpu: Math.floor(at / TLB_ENTRIES),
        mmId,
        vpn: this.vpnOf[at]!,
        pfn: Math.floor(value / 4),
        writable: (value & TLB_WRITABLE) !== 0,
        dirty: (value & TLB_DIRTY) !== 0,
      });
    }
    return out;
  }
}
