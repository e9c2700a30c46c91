/**
 * What frames hold. The kernel keeps bytes in the frames themselves; hmmsim keeps them behind one
 * interface with two stores:
 * - `bytes`: real 4 KiB frames in ArrayBuffer slabs of at most 1 GiB, allocated when first touched;
 * - `tokens`: one 32-bit content version per frame, for simulations of many GiB.
 * Device memory is part of the same pfn space, so a page on a device really lives there.
 * The kernel's counterparts are copy_highpage, clear_highpage and kmap + memcpy.
 */
import { assert } from "../base/assert.js";
import { EOPNOTSUPP, KernelError } from "../base/errno.js";
import { PAGE_SIZE } from "../base/units.js";

/** Which page store holds frame contents: "bytes" (real bytes) or "tokens" (a content version per frame). */
export type StoreKind = "bytes" | "tokens";

/**
 * Thrown when a byte-level access is made on the tokens store, which keeps no bytes: a configuration no
 * kernel has, so the closest answer is EOPNOTSUPP ("operation not supported" by this object), and like
 * every error a caller of hmmsim sees it is a KernelError.
 */
export class NoBytesError extends KernelError {
  override readonly name: string = "NoBytesError";

  constructor(what: string) {
    super(EOPNOTSUPP, what);
  }
}

/** What frames hold: copy, zero, fill, read and write of page contents, for RAM and device frames alike. */
export interface PageStore {
  readonly kind: StoreKind;
  /** copy_highpage: dst gets src's contents. */
  copy(dstPfn: number, srcPfn: number): void;
  /** clear_highpage. */
  zero(pfn: number): void;
  /**
   * folio_copy of a naturally aligned block of `nr` frames (a power of two up to 512): one memmove,
   * since such a block never straddles a slab.
   */
  copyFolio(dstPfn: number, srcPfn: number, nr: number): void;
  /** folio_zero_user of a naturally aligned block of `nr` frames (see copyFolio). */
  zeroFolio(pfn: number, nr: number): void;
  /** Fills the frame with a 32-bit value (bytes: every word; tokens: the version). */
  fill(pfn: number, value: number): void;
  /** True when the frame holds exactly what fill(pfn, value) left. */
  holds(pfn: number, value: number): boolean;
  /** The frame's first 32-bit word (bytes) or its version (tokens). */
  word(pfn: number): number;
  /** Reads `length` bytes at `offset` in the frame into `into` at `at`. */
  readBytes(pfn: number, offset: number, into: Uint8Array, at: number, length: number): void;
  /** Writes `length` bytes from `from` at `at` into the frame at `offset`. */
  writeBytes(pfn: number, offset: number, from: Uint8Array, at: number, length: number): void;
  /** Makes room for frames up to `capacity` (device memory added). */
  grow(capacity: number): void;
  /** Bytes of host memory the store has allocated. */
  residentBytes(): number;
}

const SLAB_PAGES = 2 ** 18; // 1 GiB of 4 KiB frames
const FOLIO_PAGES_MAX = 512;

/** A folio's frames: `nr` a power of two up to 512 and `pfn` a multiple of it. */
function assertBlock(pfn: number, nr: number): void {
  assert(
    nr > 0 && nr <= FOLIO_PAGES_MAX && (nr & (nr - 1)) === 0 && pfn >= 0 && pfn % nr === 0,
    "folio frames not naturally aligned",
    () => `pfn ${pfn} nr ${nr}`,
  );
}
const WORDS_PER_PAGE = PAGE_SIZE / 4;

/** The page store with real bytes: 4 KiB frames in ArrayBuffer slabs allocated when first touched. */
export class BytesStore implements PageStore {
  readonly kind = "bytes";
  private readonly slabs: (Uint8Array | undefined)[] = [];
  private readonly slabWords: (Uint32Array | undefined)[] = [];
  private capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  grow(capacity: number): void {
    this.capacity = Math.max(this.capacity, capacity);
  }

  residentBytes(): number {
    let total = 0;
    for (const slab of this.slabs) total += slab?.byteLength ?? 0;
    return total;
  }

  /**
   * The slab that holds pfn, allocated on first use (zero-filled, like fresh RAM in the model). A slab
   * covers what the pfn space held when it was made and is enlarged (copied) when the space grows.
   */
  private slab(pfn: number): Uint8Array {
    const slab = this.slabs[Math.floor(pfn / SLAB_PAGES)];
    // One test for the common case; every pfn in range but not yet in a slab goes out of line.
    if (slab !== undefined && pfn >= 0 && (pfn % SLAB_PAGES) * PAGE_SIZE < slab.byteLength) return slab;
    return this.slabFor(pfn);
  }

  private slabFor(pfn: number): Uint8Array {
    assert(pfn >= 0 && pfn < this.capacity, "pfn outside the page store", () => `${pfn} of ${this.capacity}`);
    const index = Math.floor(pfn / SLAB_PAGES);
    const slab = this.slabs[index];
    const offset = (pfn % SLAB_PAGES) * PAGE_SIZE;
    if (slab !== undefined && offset < slab.byteLength) return slab;
    // A small slab takes what the pfn space holds now, and at least doubles when it grows, so a small
    // system with a small device stays small (the explorer builds thousands of them a second). A slab
    // past a quarter of full size goes straight to full size: growing it again would copy (and touch)
    // hundreds of MiB, where a full-size buffer costs host memory only for the frames touched.
    const needed = Math.min(SLAB_PAGES, this.capacity - index * SLAB_PAGES);
    let pages =
      slab === undefined ? needed : Math.min(SLAB_PAGES, Math.max(needed, (2 * slab.byteLength) / PAGE_SIZE));
    if (pages * 4 >= SLAB_PAGES) pages = SLAB_PAGES;
    const grown = new Uint8Array(pages * PAGE_SIZE);
    if (slab !== undefined) grown.set(slab);
    this.slabs[index] = grown;
    this.slabWords[index] = new Uint32Array(grown.buffer);
    return grown;
  }

  private frame(pfn: number): Uint8Array {
    const slab = this.slab(pfn);
    const start = (pfn % SLAB_PAGES) * PAGE_SIZE;
    return slab.subarray(start, start + PAGE_SIZE);
  }

  private frameWords(pfn: number): Uint32Array {
    this.slab(pfn);
    const words = this.slabWords[Math.floor(pfn / SLAB_PAGES)]!;
    const start = (pfn % SLAB_PAGES) * WORDS_PER_PAGE;
    return words.subarray(start, start + WORDS_PER_PAGE);
  }

  copy(dstPfn: number, srcPfn: number): void {
    const dstSlab = this.slab(dstPfn);
    const srcSlab = this.slab(srcPfn);
    const dstAt = (dstPfn % SLAB_PAGES) * PAGE_SIZE;
    const srcAt = (srcPfn % SLAB_PAGES) * PAGE_SIZE;
    // Within one slab copyWithin moves the bytes without creating a view.
    if (dstSlab === srcSlab) dstSlab.copyWithin(dstAt, srcAt, srcAt + PAGE_SIZE);
    else dstSlab.set(srcSlab.subarray(srcAt, srcAt + PAGE_SIZE), dstAt);
  }

  zero(pfn: number): void {
    this.frame(pfn).fill(0);
  }

  copyFolio(dstPfn: number, srcPfn: number, nr: number): void {
    assertBlock(dstPfn, nr);
    assertBlock(srcPfn, nr);
    // Touching the last frame first makes the slab cover the whole block.
    this.slab(dstPfn + nr - 1);
    this.slab(srcPfn + nr - 1);
    const dstSlab = this.slab(dstPfn);
    const srcSlab = this.slab(srcPfn);
    const dstAt = (dstPfn % SLAB_PAGES) * PAGE_SIZE;
    const srcAt = (srcPfn % SLAB_PAGES) * PAGE_SIZE;
    const bytes = nr * PAGE_SIZE;
    if (dstSlab === srcSlab) dstSlab.copyWithin(dstAt, srcAt, srcAt + bytes);
    else dstSlab.set(srcSlab.subarray(srcAt, srcAt + bytes), dstAt);
  }

  zeroFolio(pfn: number, nr: number): void {
    assertBlock(pfn, nr);
    this.slab(pfn + nr - 1);
    const at = (pfn % SLAB_PAGES) * PAGE_SIZE;
    this.slab(pfn).fill(0, at, at + nr * PAGE_SIZE);
  }

  fill(pfn: number, value: number): void {
    this.frameWords(pfn).fill(value >>> 0);
  }

  holds(pfn: number, value: number): boolean {
    const words = this.frameWords(pfn);
    const wanted = value >>> 0;
    for (let i = 0; i < WORDS_PER_PAGE; i++) if (words[i] !== wanted) return false;
    return true;
  }

  word(pfn: number): number {
    return this.frameWords(pfn)[0]!;
  }

  readBytes(pfn: number, offset: number, into: Uint8Array, at: number, length: number): void {
    assert(
      offset >= 0 && length >= 0 && offset + length <= PAGE_SIZE,
      "read crosses a frame",
      () => `${offset}+${length}`,
    );
    into.set(this.frame(pfn).subarray(offset, offset + length), at);
  }

  writeBytes(pfn: number, offset: number, from: Uint8Array, at: number, length: number): void {
    assert(
      offset >= 0 && length >= 0 && offset + length <= PAGE_SIZE,
      "write crosses a frame",
      () => `${offset}+${length}`,
    );
    this.frame(pfn).set(from.subarray(at, at + length), offset);
  }
}

/** The page store without bytes: one 32-bit content version per frame, for simulations of many GiB. */
export class TokensStore implements PageStore {
  readonly kind = "tokens";
  private versions: Uint32Array;

  constructor(capacity: number) {
    this.versions = new Uint32Array(capacity);
  }

  grow(capacity: number): void {
    if (capacity <= this.versions.length) return;
    const grown = new Uint32Array(capacity);
    grown.set(this.versions);
    this.versions = grown;
  }

  residentBytes(): number {
    return this.versions.byteLength;
  }

  copy(dstPfn: number, srcPfn: number): void {
    this.versions[dstPfn] = this.versions[srcPfn]!;
  }

  zero(pfn: number): void {
    this.versions[pfn] = 0;
  }

  copyFolio(dstPfn: number, srcPfn: number, nr: number): void {
    assertBlock(dstPfn, nr);
    assertBlock(srcPfn, nr);
    this.versions.copyWithin(dstPfn, srcPfn, srcPfn + nr);
  }

  zeroFolio(pfn: number, nr: number): void {
    assertBlock(pfn, nr);
    this.versions.fill(0, pfn, pfn + nr);
  }

  fill(pfn: number, value: number): void {
    this.versions[pfn] = value >>> 0;
  }

  holds(pfn: number, value: number): boolean {
    return this.versions[pfn] === value >>> 0;
  }

  word(pfn: number): number {
    return this.versions[pfn]!;
  }

  readBytes(): void {
    throw new NoBytesError("the tokens store keeps one version per page, not bytes; use the bytes store");
  }

  writeBytes(): void {
    throw new NoBytesError("the tokens store keeps one version per page, not bytes; use the bytes store");
  }
}

/** The page store of `kind` for frames below `capacity`. */
export function createPageStore(kind: StoreKind, capacity: number): PageStore {
  return kind === "bytes" ? new BytesStore(capacity) : new TokensStore(capacity);
}
