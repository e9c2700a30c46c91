/**
 * A device page table for a mirror (dmirror's xarray): vpn → entry, in blocks of 512 typed-array
 * slots found through a Map, so that mirroring a GiB costs 512 Map entries rather than 262144.
 */
import { assertAbout } from "../base/assert.js";

const BLOCK = 512;
/**
 * vpn % BLOCK for a vpn below 2^53. vpns of user addresses pass 2^31, where `%` on a double is a call
 * into the C library; the low bits of ToInt32(vpn) are the same and cost one instruction.
 */
function slotOf(vpn: number): number {
  return vpn & (BLOCK - 1);
}

/** A mirror's device page table: vpn to a non-negative entry, in blocks of typed-array slots. */
export class DeviceTable {
  private readonly blocks = new Map<number, Float64Array>();
  private lastKey = -1;
  private lastBlock: Float64Array | null = null;
  /** Entries present. */
  size = 0;

  private block(vpn: number, create: boolean): Float64Array | null {
    const key = Math.floor(vpn * (1 / BLOCK)); // exact: BLOCK is a power of two
    if (key === this.lastKey) return this.lastBlock;
    let block = this.blocks.get(key) ?? null;
    if (block === null && create) {
      block = new Float64Array(BLOCK);
      this.blocks.set(key, block);
    }
    if (block !== null) {
      this.lastKey = key;
      this.lastBlock = block;
    }
    return block;
  }

  /** The entry at vpn, or -1. Entries are non-negative numbers. */
  get(vpn: number): number {
    const block = this.block(vpn, false);
    if (block === null) return -1;
    return block[slotOf(vpn)]! - 1;
  }

  /** Whether `vpn` has an entry. */
  has(vpn: number): boolean {
    return this.get(vpn) >= 0;
  }

  /** How many entries from `start` on are present before the first absent one, at most `limit`. */
  presentRun(start: number, limit: number): number {
    let count = 0;
    // Bounded by limit: each pass counts at least one entry or stops.
    while (count < limit) {
      const block = this.block(start + count, false);
      if (block === null) return count;
      const from = slotOf(start + count);
      const to = Math.min(BLOCK, from + (limit - count));
      for (let slot = from; slot < to; slot++) {
        if (block[slot] === 0) return count + (slot - from);
      }
      count += to - from;
    }
    return count;
  }

  /** Stores `entry` (non-negative) for `vpn`, replacing any entry it had. */
  set(vpn: number, entry: number): void {
    assertAbout(entry >= 0, "device table entries are non-negative", String, entry);
    const block = this.block(vpn, true)!;
    const slot = slotOf(vpn);
    if (block[slot] === 0) this.size++;
    block[slot] = entry + 1;
  }

  /** Removes the entry of `vpn`, if any. */
  delete(vpn: number): void {
    const block = this.block(vpn, false);
    if (block === null) return;
    const slot = slotOf(vpn);
    if (block[slot] !== 0) {
      block[slot] = 0;
      this.size--;
    }
  }

  /** Erases every entry in [start, end). */
  deleteRange(start: number, end: number): void {
    if (this.size === 0) return;
    for (const [key, block] of this.blocks) {
      const first = key * BLOCK;
      if (first >= end || first + BLOCK <= start) continue;
      for (let i = Math.max(start, first) - first; i < Math.min(end, first + BLOCK) - first; i++) {
        if (block[i] !== 0) {
          block[i] = 0;
          this.size--;
        }
      }
    }
  }

  /**
   * Whether some entry in [start, end) satisfies `test`: only the entries stored are visited, so the
   * cost follows the table, not the width of the range.
   */
  someInRange(start: number, end: number, test: (entry: number) => boolean): boolean {
    if (this.size === 0) return false;
    for (const [key, block] of this.blocks) {
      const first = key * BLOCK;
      if (first >= end || first + BLOCK <= start) continue;
      for (let i = Math.max(start, first) - first; i < Math.min(end, first + BLOCK) - first; i++) {
        if (block[i] !== 0 && test(block[i]! - 1)) return true;
      }
    }
    return false;
  }

  /** Calls visit(vpn, entry) for every entry present, in no particular order. */
  forEach(visit: (vpn: number, entry: number) => void): void {
    if (this.size === 0) return;
    for (const [key, block] of this.blocks) {
      for (let slot = 0; slot < BLOCK; slot++)
        if (block[slot] !== 0) visit(key * BLOCK + slot, block[slot]! - 1);
    }
  }

  /** Removes every entry. */
  clear(): void {
    this.blocks.clear();
    this.lastKey = -1;
    this.lastBlock = null;
    this.size = 0;
  }
}
