/**
 * A set of free frame numbers that hands out the lowest first: one bit per frame, one summary bit per
 * 32-frame word that has a free frame, and a cursor below which no word has one. Adding is O(1); taking
 * scans summary words from the cursor, so finding the next free frame costs one step per 1024 frames
 * skipped, and bulk frees followed by bulk takes (how migrations use it) cost O(1) each.
 *
 * Both of hmmsim's frame allocators use it (RAM in mm/page_alloc.ts, device memory in the dmirror
 * driver), so that runs of allocations walk up through frame numbers as a buddy allocator's do.
 */
import { assert, assertAbout } from "./assert.js";

function describeFrame(frame: number): string {
  return String(frame);
}

/** Frames in the blocks takeLowestBlock hands out: one PMD-sized folio. */
const BLOCK_FRAMES = 512;

/** The index of the lowest set bit of a non-zero 32-bit word. */
function lowestBitIndex(word: number): number {
  return 31 - Math.clz32(word & -word);
}

/** A set of free frame numbers that hands out the lowest first (see the file comment for the layout). */
export class FreeFrames {
  /** One bit per frame number, set while the frame is free. */
  private bits: Uint32Array;
  /** One bit per word of `bits`, set while that word has a free frame. */
  private summary: Uint32Array;
  /** No word of `bits` below this one has a free frame. */
  private lowestWord = 0;
  private freeCount = 0;

  constructor(capacity = 0) {
    assert(Number.isSafeInteger(capacity) && capacity >= 0, "bad frame capacity", () => String(capacity));
    const words = Math.ceil(capacity / 32);
    this.bits = new Uint32Array(words);
    this.summary = new Uint32Array(Math.ceil(words / 32));
  }

  /** Frame numbers below this can be held. */
  get capacity(): number {
    return this.bits.length * 32;
  }

  /** How many frames the set holds. */
  get size(): number {
    return this.freeCount;
  }

  /** Makes room for frame numbers below `capacity`; the set's contents are kept. */
  grow(capacity: number): void {
    const words = Math.ceil(capacity / 32);
    if (words <= this.bits.length) return;
    const bits = new Uint32Array(words);
    bits.set(this.bits);
    this.bits = bits;
    const summary = new Uint32Array(Math.ceil(words / 32));
    summary.set(this.summary);
    this.summary = summary;
  }

  /** Whether `frame` is in the set (false for numbers outside its capacity). */
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
    this.summary[word >>> 5]! |= 1 << (word & 31);
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
      this.summary[word >>> 5]! |= 1 << (word & 31);
      this.freeCount += 32;
      if (word < this.lowestWord) this.lowestWord = word;
    }
    for (; frame < to; frame++) this.add(frame);
  }

  /**
   * Removes and returns the lowest 512-aligned block of 512 frames that are all in the set (the buddy
   * allocator's order-9 block), or -1 when there is none. Scans 16 words per block from the cursor.
   */
  takeLowestBlock(): number {
    const bits = this.bits;
    const wordsPerBlock = BLOCK_FRAMES / 32;
    for (
      let word = this.lowestWord - (this.lowestWord % wordsPerBlock);
      word + wordsPerBlock <= bits.length;
      word += wordsPerBlock
    ) {
      let full = true;
      for (let w = word; w < word + wordsPerBlock; w++) {
        if (bits[w] !== 0xffffffff) {
          full = false;
          break;
        }
      }
      if (!full) continue;
      bits.fill(0, word, word + wordsPerBlock);
      // The block is half of one summary word: those 16 words are empty now.
      this.summary[word >>> 5]! &= ~(0xffff << (word & 31));
      this.freeCount -= BLOCK_FRAMES;
      return word * 32;
    }
    return -1;
  }

  /** Removes and returns the lowest frame, or -1 when the set is empty. */
  takeLowest(): number {
    let word = this.lowestWord;
    // Small on purpose, so that it inlines into the allocators: moving to the next word with a free
    // frame is out of line (once per 32 frames taken in a run).
    if (word >= this.bits.length || this.bits[word] === 0) {
      word = this.nextWordWithFreeFrame();
      if (word < 0) return -1;
    }
    const free = this.bits[word]!;
    const lowestBit = free & -free;
    const left = free ^ lowestBit;
    this.bits[word] = left;
    if (left === 0) this.summary[word >>> 5]! &= ~(1 << (word & 31));
    this.freeCount--;
    return word * 32 + lowestBitIndex(lowestBit);
  }

  /**
   * The lowest word with a free frame, through the summary, which becomes the cursor; -1 when the set
   * is empty. Summary bits below the cursor's are clear (no word below it has a free frame), so the
   * first set bit from the cursor's summary word on is the one.
   */
  private nextWordWithFreeFrame(): number {
    if (this.freeCount === 0) return -1;
    const summary = this.summary;
    let group = this.lowestWord >>> 5;
    while (group < summary.length && summary[group] === 0) group++;
    assert(group < summary.length, "free count and bitmap disagree", () => String(this.freeCount));
    const word = group * 32 + lowestBitIndex(summary[group]!);
    this.lowestWord = word;
    return word;
  }
}
