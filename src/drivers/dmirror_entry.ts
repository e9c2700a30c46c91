/**
 * What every part of the dmirror driver shares: the mirror's entry encoding (an xarray entry of
 * lib/test_hmm.c: a page pointer and its tag), the command result, the bounce buffer's limit and the
 * retry bound that stands for HMM_RANGE_DEFAULT_TIMEOUT.
 */
import type { Kernel } from "../mm/kernel.js";

/** Pages per hmm_range_fault call in dmirror_fault and dmirror_snapshot. */
export const FAULT_CHUNK_PAGES = 32;
/** Device page-table tag of an entry dmirror_atomic_map stored (DPT_XA_TAG_ATOMIC). */
export const DPT_XA_TAG_ATOMIC = 1;
/** Device page-table tag of an entry the device may write through (DPT_XA_TAG_WRITE). */
export const DPT_XA_TAG_WRITE = 3;

/**
 * The attempts that stand for HMM_RANGE_DEFAULT_TIMEOUT (one second), after which a retry loop of the
 * mmu_interval_read_begin/read_retry kind gives up with -EBUSY: the model has no clock, and each
 * attempt follows an invalidation.
 */
export const RETRY_ATTEMPTS_MAX = 1000;

/** The result of one dmirror command (struct hmm_dmirror_cmd's outputs). */
export interface DmirrorResult {
  /** Pages the command handled (cmd->cpages). */
  cpages: number;
  /** Device faults it took (cmd->faults). */
  faults: number;
}

/** Whether a mirror entry is an atomic mapping of a device-exclusive page (HMM_DMIRROR_EXCLUSIVE). */
export function entryAtomic(entry: number): boolean {
  return entry % 4 === DPT_XA_TAG_ATOMIC;
}

/** A mirror entry: pfn * 4 + tag (0 read-only, 1 atomic, 3 writable). */
export function entryPfn(entry: number): number {
  return Math.floor(entry / 4);
}

/** Whether a mirror entry maps its page writable (tag DPT_XA_TAG_WRITE). */
export function entryWritable(entry: number): boolean {
  return entry % 4 === DPT_XA_TAG_WRITE;
}

/**
 * Whether dmirror_bounce_init's vmalloc of npages pages succeeds: __vmalloc_node_range refuses a size
 * above totalram_pages() outright. hmmsim does not take the bounce buffer from simulated RAM.
 */
export function bounceFits(k: Kernel, npages: number): boolean {
  return npages <= k.ram.ramPages;
}
