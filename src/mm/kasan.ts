/**
 * hmmsim's stand-in for KASAN (mm/kasan): the kernel poisons freed memory and reports the first access
 * to it. hmmsim knows which struct pages are free (refcount 0), so where the kernel reads a page's
 * fields through a pointer it did not pin, the model checks the page first and reports a use after
 * free, naming who touched it and how. It checks at those reads only (they are the ones a race can
 * make stale); everywhere else a touch of a free page is a model assertion.
 */
import type { Kernel } from "./kernel.js";

/** A use of freed memory, as KASAN would report it: "BUG: KASAN: use-after-free in ...". */
export class UseAfterFreeError extends Error {
  override readonly name = "UseAfterFreeError";
}

/**
 * kasan_check_read of a struct page: throws UseAfterFreeError when the page at `pfn` has been freed.
 * `where` names the kernel function and the field it reads ("dmirror_devmem_fault: page->zone_device_data").
 */
export function kasanCheckPage(k: Kernel, pfn: number, where: string): void {
  if (k.pages.refcount[pfn]! > 0) return;
  const kind = k.pages.isZoneDevice(pfn) ? "device page" : "page";
  throw new UseAfterFreeError(`use-after-free in ${where}: pfn ${pfn} is a freed ${kind}`);
}
