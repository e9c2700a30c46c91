/**
 * The gup_test module (mm/gup_test.c, /sys/kernel/debug/gup_test): an ioctl that takes references or
 * pins on a range of the caller's memory with get_user_pages, pin_user_pages and their _fast forms,
 * nr_pages_per_call pages at a time, then releases them all. hmm-tests' hmm_gup_test uses it to show
 * that a long-term pin moves device memory back to system memory.
 *
 * Deliberate differences: the _fast forms take the same path as the others (the fast walk falls back
 * to it for any page not present and writable, which is every page the tests give it); no timing is
 * reported (get_delta_usec and put_delta_usec stay 0); DUMP_USER_PAGES_TEST is not modelled (EINVAL).
 */
import { EINVAL } from "../base/errno.js";
import { PAGE_SIZE } from "../base/units.js";
import {
  FOLL_GET,
  FOLL_LONGTERM,
  FOLL_PIN,
  type GupLedger,
  getUserPages,
  putUserPage,
  unpinUserPage,
} from "../mm/gup.js";
import type { MigrateContext } from "../mm/migrate_device.js";
import type { MmStruct } from "../mm/mm_types.js";
import type { Kfn } from "../sched/thread.js";

/** The commands of mm/gup_test.h (the _IOWR('g', n, struct gup_test) numbers n). */
export const GUP_FAST_BENCHMARK = 1;
/** PIN_FAST_BENCHMARK: pin_user_pages_fast over the range, then unpin. */
export const PIN_FAST_BENCHMARK = 2;
/** PIN_LONGTERM_BENCHMARK: pin_user_pages with FOLL_LONGTERM over the range, then unpin. */
export const PIN_LONGTERM_BENCHMARK = 3;
/** GUP_BASIC_TEST: get_user_pages over the range, then put_page. */
export const GUP_BASIC_TEST = 4;
/** PIN_BASIC_TEST: pin_user_pages over the range, then unpin. */
export const PIN_BASIC_TEST = 5;

/** struct gup_test's inputs, as hmm-tests' gup_test_exec fills them. */
export interface GupTestArgs {
  /** Start of the range, a byte address. */
  readonly addr: number;
  /** Bytes. */
  readonly size: number;
  readonly nrPagesPerCall: number;
  /** FOLL_* flags for each call (FOLL_WRITE, FOLL_LONGTERM). */
  readonly gupFlags: number;
}

/**
 * __gup_test_ioctl: returns the bytes of the pages taken (gup->size on return: their count times
 * PAGE_SIZE), or -EINVAL for an unknown command, a size of 0 or not a multiple of PAGE_SIZE, or
 * nr_pages_per_call 0. Each call asks for nr_pages_per_call pages (fewer at the end of the range); the
 * loop stops after a call that took fewer than it asked for, and a call that fails (its errno, EINVAL
 * for flags is_valid_gup_args refuses: the caller's FOLL_PIN, FOLL_GET on a pin, FOLL_LONGTERM on a
 * plain get) ends it without failing the ioctl. Every page is then put back (put_back_pages).
 */
export function* gupTestIoctl(
  ctx: MigrateContext,
  ledger: GupLedger,
  mm: MmStruct,
  cmd: number,
  args: GupTestArgs,
): Kfn<number> {
  const pin = cmd === PIN_FAST_BENCHMARK || cmd === PIN_LONGTERM_BENCHMARK || cmd === PIN_BASIC_TEST;
  if (!pin && cmd !== GUP_FAST_BENCHMARK && cmd !== GUP_BASIC_TEST) return -EINVAL;
  if (args.size === 0 || args.nrPagesPerCall === 0 || args.size % PAGE_SIZE !== 0) return -EINVAL;
  const pfns: number[] = [];
  const end = args.addr + args.size;
  // FOLL_PIN is internal (INTERNAL_GUP_FLAGS): get_user_pages and pin_user_pages both refuse a caller's.
  const flagsOk = (args.gupFlags & FOLL_PIN) === 0;
  let flags = args.gupFlags | (pin ? FOLL_PIN : FOLL_GET);
  if (cmd === PIN_LONGTERM_BENCHMARK) flags |= FOLL_LONGTERM;
  yield* mm.mmapLock.downRead();
  try {
    let nr = args.nrPagesPerCall;
    // Bounded by the range: each pass takes the next nr pages or stops the loop.
    for (let addr = args.addr; addr < end && nr === args.nrPagesPerCall; ) {
      nr = Math.min(nr, (end - addr) / PAGE_SIZE);
      const next = addr + nr * PAGE_SIZE;
      const got = flagsOk
        ? yield* getUserPages(ctx, ledger, mm, Math.floor(addr / PAGE_SIZE), nr, flags, pfns)
        : -EINVAL;
      if (got <= 0) break;
      nr = got;
      addr = next;
    }
  } finally {
    mm.mmapLock.upRead();
  }
  const taken = pfns.length;
  // put_back_pages.
  for (const pfn of pfns) {
    if (pin) unpinUserPage(ctx.k, ledger, pfn);
    else putUserPage(ctx.k, ledger, pfn);
  }
  return taken * PAGE_SIZE;
}
