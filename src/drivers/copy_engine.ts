/**
 * The copy engine a device driver moves page contents with. Today a plain memcpy through the page
 * store (TypedArray.set in the bytes store); a cost model can stand behind the same interface later.
 *
 * A driver either copies one page at a time or queues a chunk's copies in a CopyBatch and hands the
 * whole list over, as a real driver fills a DMA engine's descriptor list and waits once for the fence
 * (nouveau_dmem_migrate_chunk does). The batch is also what keeps the bytes store fast: one pass of
 * copies streams through host memory, where copies interleaved with the per-page bookkeeping of
 * allocation ran a third slower (137 against 103 ms per GiB on the development VM).
 */
import { assert, assertAbout } from "../base/assert.js";
import type { PageStore } from "../mm/page_store.js";

/** A list of page copies waiting for the engine: destination and source frame numbers. */
export class CopyBatch {
  readonly dstPfns: Int32Array;
  readonly srcPfns: Int32Array;
  count = 0;

  constructor(capacity: number) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, "bad copy batch size", () => String(capacity));
    this.dstPfns = new Int32Array(capacity);
    this.srcPfns = new Int32Array(capacity);
  }

  /** Queues a copy of frame `srcPfn` into frame `dstPfn`; the batch must not be full. */
  add(dstPfn: number, srcPfn: number): void {
    assertAbout(this.count < this.dstPfns.length, "copy batch full", String, this.count);
    this.dstPfns[this.count] = dstPfn;
    this.srcPfns[this.count] = srcPfn;
    this.count++;
  }
}

/** What a driver copies and clears device and system pages with (a DMA engine in a real driver). */
export interface CopyEngine {
  /** copy_highpage from one frame to another (either may be device memory). */
  copyPage(dstPfn: number, srcPfn: number): void;
  /** Runs every copy queued in the batch, in order, and empties it. */
  copyPages(batch: CopyBatch): void;
  /** clear_highpage. */
  zeroPage(dstPfn: number): void;
  /** Pages copied or cleared so far. */
  readonly pagesMoved: number;
}

/** A CopyEngine that copies through the page store directly; counts the pages it moved. */
export class MemcpyEngine implements CopyEngine {
  pagesMoved = 0;
  constructor(private readonly store: PageStore) {}

  copyPage(dstPfn: number, srcPfn: number): void {
    this.store.copy(dstPfn, srcPfn);
    this.pagesMoved++;
  }

  copyPages(batch: CopyBatch): void {
    const { dstPfns, srcPfns, count } = batch;
    for (let i = 0; i < count; i++) this.store.copy(dstPfns[i]!, srcPfns[i]!);
    this.pagesMoved += count;
    batch.count = 0;
  }

  zeroPage(dstPfn: number): void {
    this.store.zero(dstPfn);
    this.pagesMoved++;
  }
}
