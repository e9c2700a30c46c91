/**
 * The LRU lists and the per-CPU LRU add batches (mm/swap.c), with isolation and putback
 * (isolate_lru_page in mm/vmscan.c, putback_lru_page in mm/migrate.c of 4.14).
 *
 * Deliberate differences: one node, five lists, no aging or reclaim; lru_add_drain_all drains every
 * CPU's batch directly instead of queueing work on each CPU and waiting for it.
 */
import { assert } from "../base/assert.js";
import type { Kernel } from "./kernel.js";
import { assertPage, PG_active, PG_head, PG_lru, PG_memcg_moved, PG_swapbacked } from "./page.js";

/** LRU_INACTIVE_ANON: the inactive list of anonymous pages. */
export const LRU_INACTIVE_ANON = 0;
/** LRU_ACTIVE_ANON: the active list of anonymous pages. */
export const LRU_ACTIVE_ANON = 1;
/** LRU_INACTIVE_FILE: the inactive list of file pages. */
export const LRU_INACTIVE_FILE = 2;
/** LRU_ACTIVE_FILE: the active list of file pages. */
export const LRU_ACTIVE_FILE = 3;
/** LRU_UNEVICTABLE: the list of pages that cannot be reclaimed (mlocked, for instance). */
export const LRU_UNEVICTABLE = 4;
const LRU_LISTS = 5;

/** Pages per CPU add batch: PAGEVEC_SIZE of the 4.14 to 5.x kernels. */
export const PAGEVEC_SIZE = 15;

/** The LRU lists of the one node (struct lruvec) and the per-CPU LRU add batches. */
export class LruState {
  readonly head = new Int32Array(LRU_LISTS).fill(-1);
  readonly tail = new Int32Array(LRU_LISTS).fill(-1);
  readonly sizes = new Float64Array(LRU_LISTS);
  /** cpu_fbatches.lru_add: pages waiting to be put on a list, one batch per CPU. */
  readonly addBatches: number[][];

  constructor(cpus: number) {
    this.addBatches = Array.from({ length: cpus }, () => []);
  }
}

/** folio_lru_list: the list a page belongs on, from PG_swapbacked and PG_active. */
export function pageLruList(k: Kernel, pfn: number): number {
  const file = !k.pages.has(pfn, PG_swapbacked);
  const active = k.pages.has(pfn, PG_active);
  return (file ? LRU_INACTIVE_FILE : LRU_INACTIVE_ANON) + (active ? 1 : 0);
}

/** add_page_to_lru_list: links the page at the head of its list and sets PG_lru. */
function addToList(k: Kernel, pfn: number): void {
  const pages = k.pages;
  const lru = k.lru;
  assertPage(!pages.has(pfn, PG_lru) && pages.lruList[pfn] === -1, "page already on an LRU list", pages, pfn);
  // folio_lruvec_lock's VM_WARN: the kernel warns and goes on, so the model reports and goes on.
  if (pages.has(pfn, PG_memcg_moved))
    pages.reportBad(pfn, "added to an LRU list after migrating away (no memcg data)");
  const list = pageLruList(k, pfn);
  const first = lru.head[list]!;
  pages.lruPrev[pfn] = -1;
  pages.lruNext[pfn] = first;
  if (first >= 0) pages.lruPrev[first] = pfn;
  else lru.tail[list] = pfn;
  lru.head[list] = pfn;
  lru.sizes[list]!++;
  pages.lruList[pfn] = list;
  pages.set(pfn, PG_lru);
}

/**
 * lru_add_split_folio: links `pfn`, a page just split off a large folio, right after `prev` on prev's
 * list, with PG_lru set.
 */
export function lruAddAfter(k: Kernel, prev: number, pfn: number): void {
  const pages = k.pages;
  const lru = k.lru;
  const list = pages.lruList[prev]!;
  assertPage(list >= 0, "adding after a page not on an LRU list", pages, prev);
  assertPage(!pages.has(pfn, PG_lru) && pages.lruList[pfn] === -1, "page already on an LRU list", pages, pfn);
  const next = pages.lruNext[prev]!;
  pages.lruPrev[pfn] = prev;
  pages.lruNext[pfn] = next;
  pages.lruNext[prev] = pfn;
  if (next >= 0) pages.lruPrev[next] = pfn;
  else lru.tail[list] = pfn;
  lru.sizes[list]!++;
  pages.lruList[pfn] = list;
  pages.set(pfn, PG_lru);
}

/** del_page_from_lru_list: unlinks the page and clears PG_lru. */
export function lruDel(k: Kernel, pfn: number): void {
  const pages = k.pages;
  const lru = k.lru;
  const list = pages.lruList[pfn]!;
  assertPage(list >= 0 && pages.has(pfn, PG_lru), "page is not on an LRU list", pages, pfn);
  const prev = pages.lruPrev[pfn]!;
  const next = pages.lruNext[pfn]!;
  if (prev >= 0) pages.lruNext[prev] = next;
  else lru.head[list] = next;
  if (next >= 0) pages.lruPrev[next] = prev;
  else lru.tail[list] = prev;
  pages.lruPrev[pfn] = -1;
  pages.lruNext[pfn] = -1;
  pages.lruList[pfn] = -1;
  lru.sizes[list]!--;
  pages.clear(pfn, PG_lru);
}

/**
 * folio_add_lru / lru_cache_add: queues the page on this CPU's batch with a reference of its own; the
 * page reaches its list when the batch fills or is drained. A large folio drains the batch at once
 * (folio_add_lru: `folio_test_large(folio)` moves the batch to the LRU), so it never waits in one.
 */
export function lruCacheAdd(k: Kernel, pfn: number, cpu: number): void {
  const pages = k.pages;
  assertPage(!pages.has(pfn, PG_lru), "lru_cache_add of a page already on the LRU", pages, pfn);
  pages.getStructural(pfn);
  const batch = k.lru.addBatches[cpu]!;
  batch.push(pfn);
  if (batch.length >= PAGEVEC_SIZE || pages.has(pfn, PG_head)) drainBatch(k, batch);
}

function drainBatch(k: Kernel, batch: number[]): void {
  // Bounded by PAGEVEC_SIZE: a batch never holds more. Iterated in place (no copy): nothing below
  // adds to a batch.
  const count = batch.length;
  for (let i = 0; i < count; i++) {
    const pfn = batch[i]!;
    addToList(k, pfn);
    k.pages.putStructural(pfn);
  }
  assert(batch.length === count, "LRU add batch changed while draining");
  batch.length = 0;
}

/** lru_add_drain: empties the calling CPU's add batch. */
export function lruAddDrain(k: Kernel, cpu: number): void {
  drainBatch(k, k.lru.addBatches[cpu]!);
}

/** lru_add_drain_all: empties every CPU's add batch. */
export function lruAddDrainAll(k: Kernel): void {
  for (const batch of k.lru.addBatches) drainBatch(k, batch);
}

/** How many times pfn sits in add batches (each holds a reference), for the invariant checker. */
export function batchedCount(k: Kernel): Map<number, number> {
  const counts = new Map<number, number>();
  for (const batch of k.lru.addBatches) for (const pfn of batch) counts.set(pfn, (counts.get(pfn) ?? 0) + 1);
  return counts;
}

/**
 * isolate_lru_page (4.14 and earlier: returns 0 or -EBUSY): takes the page off its list with a
 * reference held by the caller. A page not on a list (in a batch, isolated, or ZONE_DEVICE) fails.
 */
export function isolateLruPage(k: Kernel, pfn: number): number {
  const pages = k.pages;
  assertPage(pages.refcount[pfn]! > 0, "isolating a free page", pages, pfn);
  if (!pages.has(pfn, PG_lru)) return -16; // -EBUSY
  pages.get(pfn);
  lruDel(k, pfn);
  return 0;
}

/**
 * putback_lru_page: returns an isolated page to the LRU (through this CPU's add batch) and drops the
 * reference taken by isolation. It does not check what kind of page it is given: put a ZONE_DEVICE page
 * here and it joins a list, which the invariant checker reports (defect S10).
 */
export function putbackLruPage(k: Kernel, pfn: number, cpu: number): void {
  lruCacheAdd(k, pfn, cpu);
  k.pages.put(pfn);
}
