/**
 * Reading what a process would see without faulting or taking a lock: the explorer's observations at
 * the end of an execution (faulting would change the state being judged).
 */
import {
  isDeviceExclusiveEntry,
  isDevicePrivateEntry,
  isMigrationEntry,
  pteFrame,
  ptePresent,
} from "../mm/pgtable.js";
import type { Process } from "../process.js";

/**
 * The first word of the page at `vpn` as the process would read it: from the frame a present PTE, a
 * migration entry or a device entry names (device memory holds its bytes too), 0 for an unpopulated
 * page (the zero page), and -1 for an entry that names no page (a swap entry hmmsim does not have).
 */
export function peekWord(process: Process, vpn: number): number {
  const k = process.system.kernel;
  const pte = k.pt.read(process.mm.root, vpn);
  if (pte === 0) return 0;
  if (ptePresent(pte) || isMigrationEntry(pte) || isDevicePrivateEntry(pte) || isDeviceExclusiveEntry(pte))
    return k.store.word(pteFrame(pte));
  return -1;
}

/** peekWord of `npages` pages from `vpn`, comma-separated: a data oracle's final observation. */
export function peekWords(process: Process, vpn: number, npages: number): string {
  const words: number[] = [];
  for (let i = 0; i < npages; i++) words.push(peekWord(process, vpn + i));
  return words.join(",");
}
