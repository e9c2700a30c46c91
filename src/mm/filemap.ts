/**
 * The page lock and the page cache (mm/filemap.c, include/linux/pagemap.h), for tmpfs-like files that
 * live only in memory, and the file read/write system calls over them.
 *
 * Deliberate differences: no readahead, writeback or truncation of cached pages beyond what munmap and
 * exit need; a file's pages are created zero-filled on first touch, as shmem does. A file holds at most
 * 2^53 bytes (TMPFS_MAX_BYTES; tmpfs allows MAX_LFS_FILESIZE, 2^63 - 1), so that every byte offset is
 * exact in a double; no size limit on the mount (RAM is the limit: ENOMEM).
 */
import { isByteBuffer, loffArg, minU64, ulongArg } from "../base/abi.js";
import { fail } from "../base/assert.js";
import { EFAULT, EFBIG, EINVAL, ENOMEM, EOPNOTSUPP } from "../base/errno.js";
import { PAGE_SIZE, TASK_SIZE } from "../base/units.js";
import { pageObject } from "../sched/objects.js";
import { BLOCKED, type Kfn, type Waitable } from "../sched/thread.js";
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
  if (pages.footprint !== null) pages.footprint.push(pageObject(pfn));
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
  if (k.sched.contended) yield k.sched.at("lock_page", pageObject(pfn));
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
  if (pages.footprint !== null) pages.footprint.push(pageObject(pfn));
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
  if (k.sched.contended) yield k.sched.at("folio_wait_locked", pageObject(pfn));
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

/** MAX_RW_COUNT (INT_MAX & PAGE_MASK): the most bytes one read or write moves (vfs_read, vfs_write). */
export const MAX_RW_COUNT = 0x7ffff000;
/** hmmsim's tmpfs s_maxbytes: 2^53, where byte offsets stop being exact in a double. */
export const TMPFS_MAX_BYTES = 2 ** 53;
/** The longest buffer a process can own: from mmap_min_addr (64 KiB) to TASK_SIZE (access_ok). */
const USER_BUFFER_MAX = BigInt(TASK_SIZE - 65536);
const LOFF_MAX = (1n << 63n) - 1n;

/**
 * ksys_pread64, vfs_read, rw_verify_area and shmem_file_read_iter on a tmpfs file: the bytes read
 * (short at the end of the file, empty at or past it) or -errno. The caller's buffer is the result, so
 * what a real caller would pass as `buf` is taken to be a valid buffer of `length` bytes; a length no
 * buffer can have is EFAULT, as access_ok gives. In the kernel's order: a negative offset (EINVAL), a
 * length above any buffer (EFAULT), a range past the largest offset (EINVAL); lengths above
 * MAX_RW_COUNT are cut to it. hmmsim's own answers: the tokens store keeps no bytes (EOPNOTSUPP) and
 * a result the host cannot allocate (ENOMEM).
 */
export function sysPread64(
  k: Kernel,
  space: AddressSpace,
  offset: unknown,
  length: unknown,
): Uint8Array | number {
  const pos = loffArg(offset);
  const count = ulongArg(length);
  if (pos === null || count === null) return -EINVAL;
  if (pos < 0n) return -EINVAL;
  if (count > USER_BUFFER_MAX) return -EFAULT;
  if (pos + count > LOFF_MAX) return -EINVAL;
  const wanted = Number(minU64(count, BigInt(MAX_RW_COUNT)));
  // shmem_file_read_iter: nothing to read at or past the end of the file.
  if (pos >= BigInt(space.sizeBytes)) return new Uint8Array(0);
  const at = Number(pos);
  const total = Math.min(wanted, space.sizeBytes - at);
  if (total > 0 && k.store.kind !== "bytes") return -EOPNOTSUPP;
  const into = allocateBytes(total);
  if (into === null) return -ENOMEM;
  filemapRead(k, space, at, into);
  return into;
}

/**
 * ksys_pwrite64, vfs_write, rw_verify_area, generic_write_checks and the shmem write path on a tmpfs
 * file: bytes written (short when RAM runs out part-way) or -errno. In the kernel's order: a negative
 * offset (EINVAL), a buffer that is not a Uint8Array (EFAULT), a range past the largest offset
 * (EINVAL); nothing to write is 0; an offset at or past the largest file (EFBIG); a write is cut to
 * MAX_RW_COUNT and to the largest file. The tokens store keeps no bytes (EOPNOTSUPP). Grows the file.
 */
export function sysPwrite64(
  k: Kernel,
  space: AddressSpace,
  offset: unknown,
  data: unknown,
  cpu: number,
): number {
  const pos = loffArg(offset);
  if (pos === null || pos < 0n) return -EINVAL;
  if (!isByteBuffer(data)) return -EFAULT;
  if (pos + BigInt(data.length) > LOFF_MAX) return -EINVAL;
  if (data.length === 0) return 0;
  if (pos >= BigInt(TMPFS_MAX_BYTES)) return -EFBIG;
  const at = Number(pos);
  const count = Math.min(data.length, MAX_RW_COUNT, TMPFS_MAX_BYTES - at);
  if (k.store.kind !== "bytes") return -EOPNOTSUPP;
  return filemapWrite(k, space, at, data, count, cpu);
}

/** A zero-filled buffer, or null when the host cannot allocate one that long. */
function allocateBytes(length: number): Uint8Array | null {
  try {
    return new Uint8Array(length);
  } catch (error) {
    if (error instanceof RangeError) return null;
    throw error;
  }
}

/**
 * The copy into the page cache behind pwrite: `count` bytes of `data` at `offset`, allocating pages as
 * shmem_write_begin does. Returns bytes written, or -ENOMEM when the first page cannot be had.
 */
function filemapWrite(
  k: Kernel,
  space: AddressSpace,
  offset: number,
  data: Uint8Array,
  count: number,
  cpu: number,
): number {
  let done = 0;
  while (done < count) {
    const at = offset + done;
    const pgoff = Math.floor(at / PAGE_SIZE);
    const inPage = at % PAGE_SIZE;
    const length = Math.min(PAGE_SIZE - inPage, count - done);
    const pfn = filemapGetPage(k, space, pgoff, cpu);
    if (pfn < 0) break;
    k.store.writeBytes(pfn, inPage, data, done, length);
    k.pages.put(pfn);
    done += length;
  }
  if (done === 0) return -ENOMEM;
  space.sizeBytes = Math.max(space.sizeBytes, offset + done);
  return done;
}

/** The copy out of the page cache behind pread: fills `into` from `offset`, holes as zeros. */
function filemapRead(k: Kernel, space: AddressSpace, offset: number, into: Uint8Array): void {
  let done = 0;
  while (done < into.length) {
    const at = offset + done;
    const pgoff = Math.floor(at / PAGE_SIZE);
    const inPage = at % PAGE_SIZE;
    const length = Math.min(PAGE_SIZE - inPage, into.length - done);
    const pfn = filemapLookup(space, pgoff);
    if (pfn < 0) into.fill(0, done, done + length);
    else k.store.readBytes(pfn, inPage, into, done, length);
    done += length;
  }
}
