/**
 * The copy engine a device driver moves page contents with. Today a plain memcpy through the page
 * store (TypedArray.set in the bytes store); a cost model can stand behind the same interface later.
 */
import type { PageStore } from "../mm/page_store.js";

export interface CopyEngine {
  /** copy_highpage from one frame to another (either may be device memory). */
  copyPage(dstPfn: number, srcPfn: number): void;
  /** clear_highpage. */
  zeroPage(dstPfn: number): void;
  /** Pages copied or cleared so far. */
  readonly pagesMoved: number;
}

export class MemcpyEngine implements CopyEngine {
  pagesMoved = 0;
  constructor(private readonly store: PageStore) {}

  copyPage(dstPfn: number, srcPfn: number): void {
    this.store.copy(dstPfn, srcPfn);
    this.pagesMoved++;
  }

  zeroPage(dstPfn: number): void {
    this.store.zero(dstPfn);
    this.pagesMoved++;
  }
}
