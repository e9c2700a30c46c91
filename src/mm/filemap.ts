/**
 * The page lock and the page cache (mm/filemap.c, include/linux/pagemap.h), for tmpfs-like files that
 * live only in memory, and the file read/write system calls over them.
 *
 * Deliberate differences: no readahead, writeback or truncation of cached pages beyond what munmap and
 * exit need; a file's pages are created zero-filled on first touch, as shmem does.
 */
import { fail } from "../base/assert.js";
import { EFAULT, EINVAL, ENOMEM } from "../base/errno.js";
import { PAGE_SIZE } from "../base/units.js";
import { BLOCKED, type Kfn, PREEMPT, type Waitable } from "../sched/thread.js";
import type { Kernel } from "./kernel.js";
import type { AddressSpace } from "./mm_types.js";
import { assertPage, PG_locked, PG_swapbacked, PG_uptodate } from "./page.js";
import { lruCacheAdd } from "./swap.js";

function pageLockWaitable(k: Kernel, pfn: number): Waitable {
  return {
    describe: () => `page lock of pfn ${pfn}`,
    holders: () => {
      const holder = k.threadById(k.pages.lockHolder[pfn]!);
      return holder === null ? [] : [holder];
    },
  };
}

/** trylock_page: takes PG_locked if it is free; never sleeps. */
export function trylockPage(k: Kernel, pfn: number): boolean {
  const pages = k.pages;
  if (pages.has(pfn, PG_locked)) return false;
  pages.set(pfn, PG_locked);
  pages.lockHolder[pfn] = k.sched.current().id;
  return true;
}

/** lock_page: sleeps on the page's wait queue until PG_locked is free, then takes it. */
export function* lockPage(k: Kernel, pfn: number): Kfn<void> {
  const me = k.sched.current();
  assertPage(k.pages.refcount[pfn]! > 0, "locking a page with no references", k.pages, pfn);
  assertPage(
    k.pages.lockHolder[pfn] !== me.id,
    "lock_page on a page this thread already holds",
    k.pages,
    pfn,
  );
  if (k.sched.contended) yield PREEMPT;
  while (!trylockPage(k, pfn)) {
    k.pageWaiters.add(pfn, me);
    k.sched.sleep(pageLockWaitable(k, pfn));
    yield BLOCKED;
  }
}

/** unlock_page: clears PG_locked and wakes the page's waiters. */
export function unlockPage(k: Kernel, pfn: number): void {
  const pages = k.pages;
  // One test for both misuses (the holder is 0 when the page is unlocked); the reports are out of line.
  if (pages.lockHolder[pfn] !== k.sched.current().id) failUnlock(k, pfn);
  pages.clear(pfn, PG_locked);
  pages.lockHolder[pfn] = 0;
  if (k.pageWaiters.hasWaiters(pfn)) k.pageWaiters.wakeAll(pfn, k.sched);
}

/** unlock_page's assertions, out of line so that the hot path makes no closure and stays small. */
function failUnlock(k: Kernel, pfn: number): never {
  const pages = k.pages;
  assertPage(pages.has(pfn, PG_locked), "unlock_page of an unlocked page", pages, pfn);
  fail(
    "unlock_page by a thread that does not hold it",
    () => `${pages.describe(pfn)} holder ${pages.lockHolder[pfn]} current ${k.sched.current().id}`,
  );
}

/**
 * wait_on_page_locked (folio_wait_locked): sleeps until the page is unlocked, without taking the lock.
 * The caller must hold a reference or otherwise keep the page from being freed.
 */
export function* waitOnPageLocked(k: Kernel, pfn: number): Kfn<void> {
  const me = k.sched.current();
  if (k.sched.contended) yield PREEMPT;
  while (k.pages.has(pfn, PG_locked)) {
    k.pageWaiters.add(pfn, me);
    k.sched.sleep(pageLockWaitable(k, pfn));
    yield BLOCKED;
  }
}

/**
 * filemap_get_folio / shmem_get_folio: the page at `pgoff` of the file with a reference held by the
 * caller, created zero-filled and added to the page cache and the file LRU if absent. Returns -ENOMEM
 * when RAM is exhausted.
 */
export function filemapGetPage(k: Kernel, space: AddressSpace, pgoff: number, cpu: number): number {
  const cached = space.pages.get(pgoff);
  if (cached !== undefined) {
    k.pages.get(cached);
    return cached;
  }
  const pfn = k.ram.allocPage();
  if (pfn < 0) return -ENOMEM;
  const pages = k.pages;
  k.store.zero(pfn);
  pages.set(pfn, PG_uptodate);
  // Every hmmsim file is tmpfs: its pages are swap-backed and live on the anon LRU lists, as shmem's do.
  pages.set(pfn, PG_swapbacked);
  pages.mapping[pfn] = space.id;
  pages.index[pfn] = pgoff;
  space.pages.set(pgoff, pfn);
  // The page cache owns one reference; the allocation's reference stays with the caller.
  pages.getStructural(pfn);
  lruCacheAdd(k, pfn, cpu);
  return pfn;
}

/** The cached page at pgoff, or -1. Takes no reference. */
export function filemapLookup(space: AddressSpace, pgoff: number): number {
  return space.pages.get(pgoff) ?? -1;
}

/**
 * pwrite(2) on a tmpfs file: copies bytes into the page cache, growing the file. Returns bytes written
 * or -errno.
 */
export function filemapWrite(
  k: Kernel,
  space: AddressSpace,
  offset: number,
  data: Uint8Array,
  cpu: number,
): number {
  if (!Number.isSafeInteger(offset) || offset < 0) return -EINVAL;
  let done = 0;
  while (done < data.length) {
    const at = offset + done;
    const pgoff = Math.floor(at / PAGE_SIZE);
    const inPage = at % PAGE_SIZE;
    const length = Math.min(PAGE_SIZE - inPage, data.length - done);
    const pfn = filemapGetPage(k, space, pgoff, cpu);
    if (pfn < 0) return done > 0 ? done : pfn;
    k.store.writeBytes(pfn, inPage, data, done, length);
    k.pages.put(pfn);
    done += length;
  }
  space.sizeBytes = Math.max(space.sizeBytes, offset + data.length);
  return done;
}

/** pread(2) on a tmpfs file: bytes read (short at end of file) or -errno. Holes read as zeros. */
export function filemapRead(k: Kernel, space: AddressSpace, offset: number, into: Uint8Array): number {
  if (!Number.isSafeInteger(offset) || offset < 0) return -EINVAL;
  if (into.length > 0 && offset >= space.sizeBytes) return 0;
  const total = Math.min(into.length, space.sizeBytes - offset);
  if (total < 0) return -EFAULT;
  let done = 0;
  while (done < total) {
    const at = offset + done;
    const pgoff = Math.floor(at / PAGE_SIZE);
    const inPage = at % PAGE_SIZE;
    const length = Math.min(PAGE_SIZE - inPage, total - done);
    const pfn = filemapLookup(space, pgoff);
    if (pfn < 0) into.fill(0, done, done + length);
    else k.store.readBytes(pfn, inPage, into, done, length);
    done += length;
  }
  return done;
}
