/**
 * A set of free frame numbers that hands out the lowest first: one bit per frame and a cursor below
 * which no word has a free bit. Taking is amortised O(1) when frames are freed and taken in bulk, which
 * is how migrations use it; freeing is O(1).
 *
 * Both of hmmsim's frame allocators use it (RAM in mm/page_alloc.ts, device memory in the dmirror
 * driver), so that runs of allocations walk up through frame numbers as a buddy allocator's do.
 */
import { assert, assertAbout } from "./assert.js";

function describeFrame(frame: number): string {
  return String(frame);
}

export class FreeFrames {
  /** One bit per frame number, set while the frame is free. */
  private bits: Uint32Array;
  /** No word below this one has a bit set. */
  private lowestWord = 0;
  private freeCount = 0;

  constructor(capacity = 0) {
    assert(Number.isSafeInteger(capacity) && capacity >= 0, "bad frame capacity", () => String(capacity));
    this.bits = new Uint32Array(Math.ceil(capacity / 32));
  }

  /** Frame numbers below this can be held. */
  get capacity(): number {
    return this.bits.length * 32;
  }

  get size(): number {
    return this.freeCount;
  }

  /** Makes room for frame numbers below `capacity`; the set's contents are kept. */
  grow(capacity: number): void {
    const words = Math.ceil(capacity / 32);
    if (words <= this.bits.length) return;
    const grown = new Uint32Array(words);
    grown.set(this.bits);
    this.bits = grown;
  }

  has(frame: number): boolean {
    return frame >= 0 && frame < this.capacity && (this.bits[frame >>> 5]! & (1 << (frame & 31))) !== 0;
  }

  /** Adds a frame that is not in the set. */
  add(frame: number): void {
    assertAbout(frame >= 0 && frame < this.capacity, "frame outside the free set", describeFrame, frame);
    const word = frame >>> 5;
    const bit = 1 << (frame & 31);
    const held = this.bits[word]!;
    assertAbout((held & bit) === 0, "frame freed twice", describeFrame, frame);
    this.bits[word] = held | bit;
    this.freeCount++;
    if (word < this.lowestWord) this.lowestWord = word;
  }

  /** Adds every frame in [from, to), none of which may be in the set: whole words at a time. */
  addRange(from: number, to: number): void {
    assert(
      from >= 0 && from <= to && to <= this.capacity,
      "range outside the free set",
      () => `${from}..${to}`,
    );
    let frame = from;
    for (; frame < to && (frame & 31) !== 0; frame++) this.add(frame);
    for (; frame + 32 <= to; frame += 32) {
      const word = frame >>> 5;
      assert(this.bits[word] === 0, "frame freed twice", () => `in ${frame}..${frame + 31}`);
      this.bits[word] = 0xffffffff;
      this.freeCount += 32;
      if (word < this.lowestWord) this.lowestWord = word;
    }
    for (; frame < to; frame++) this.add(frame);
  }

  /** Removes and returns the lowest frame, or -1 when the set is empty. */
  takeLowest(): number {
    const bits = this.bits;
    let word = this.lowestWord;
    while (word < bits.length && bits[word] === 0) word++;
    this.lowestWord = word;
    if (word === bits.length) return -1;
    const free = bits[word]!;
    const lowestBit = free & -free;
    bits[word] = free ^ lowestBit;
    this.freeCount--;
    return word * 32 + 31 - Math.clz32(lowestBit);
  }
}
