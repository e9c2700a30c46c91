/**
 * A fingerprint of a whole small system, for the livelock oracle's lasso: when an execution comes back
 * to a state it was in, with no operation completed between and every thread that could run having
 * run, repeating the same steps runs for ever under a fair scheduler. The state is the struct-page
 * arrays, every PTE, the page contents (tokens store) and each live thread's position (its state and
 * the label and object of its next step). Counters that only count (a retry loop's attempts, the
 * scheduler's step count) are left out on purpose: they stand for the kernel's unbounded loops.
 */

import { PTRS_PER_TABLE } from "../base/units.js";
import type { Kernel } from "../mm/kernel.js";
import { HPAGE_PMD_NR } from "../mm/page.js";

/** Two independent 32-bit FNV-1a style hashes, as one string key (collisions are negligible). */
export function stateFingerprint(k: Kernel): string {
  let a = 0x811c9dc5;
  let b = 0x01000193;
  const mix = (x: number): void => {
    const v = x | 0;
    a = Math.imul(a ^ v, 0x01000193);
    b = Math.imul(b ^ (v + 0x9e3779b9), 0x85ebca6b) ^ (b >>> 13);
  };
  const pages = k.pages;
  for (let pfn = 0; pfn < pages.capacity; pfn++) {
    const refcount = pages.refcount[pfn]!;
    const flags = pages.flags[pfn]!;
    if (refcount === 0 && flags === 0) continue;
    mix(pfn);
    mix(refcount);
    mix(pages.mapcount[pfn]!);
    mix(flags);
    mix(pages.lockHolder[pfn]!);
    if (k.store.kind === "tokens") mix(k.store.word(pfn));
    if (pages.isLargeHead(pfn)) mix(pages.entireMapcount[pfn / HPAGE_PMD_NR]!);
  }
  k.pt.forEachHugeLeaf((pmdKey, leaf) => {
    mix(-pmdKey - 1);
    mix(leaf % 0x100000000);
    mix(Math.floor(leaf / 0x100000000));
  });
  const entries = k.pt.entries;
  const used = k.pt.tablesAllocated * PTRS_PER_TABLE;
  for (let slot = 0; slot < used; slot++) {
    const pte = entries[slot]!;
    if (pte === 0) continue;
    mix(slot);
    mix(pte % 0x100000000);
    mix(Math.floor(pte / 0x100000000));
  }
  for (const thread of k.sched.liveThreads()) {
    mix(thread.id);
    mix(thread.state === "blocked" ? 1 : 0);
    mix(thread.object % 0x100000000);
    mix(Math.floor(thread.object / 0x100000000));
    for (let i = 0; i < thread.label.length; i++) mix(thread.label.charCodeAt(i));
  }
  return `${(a >>> 0).toString(36)}.${(b >>> 0).toString(36)}`;
}
