/**
 * get_user_pages and pin_user_pages (mm/gup.c): fault in a range of a process and take a reference
 * (FOLL_GET) or a pin (FOLL_PIN, GUP_PIN_COUNTING_BIAS references) on each page, which is how a driver
 * or a DMA user keeps pages in place. A pinned page fails migration's pin checks.
 *
 * FOLL_LONGTERM (check_and_migrate_movable_pages): a page that must not be pinned for long is migrated
 * first and the pages are taken again. In hmmsim the only such pages are device-coherent ones
 * (folio_is_longterm_pinnable is false for them), which migrate_device_coherent_folio moves to RAM.
 *
 * A THP or a hugetlb folio is taken whole (follow_huge_pmd, follow_hugetlb_page): the reference is its
 * head's, the page returned the one asked for; FOLL_SPLIT_PMD splits a THP first. A THP split later
 * (hmmsim splits eagerly, where the kernel cannot split a pinned folio and leaves it PTE-mapped) moves
 * each page's GUP references from the head to that page.
 *
 * Deliberate differences: RAM has no ZONE_MOVABLE or CMA, so no RAM page is unpinnable.
 * The caller holds mmap_lock for read, as with get_user_pages_remote.
 */
import { assert } from "../base/assert.js";
import { EAGAIN, EBUSY, EFAULT, EINVAL, ENOMEM } from "../base/errno.js";
import type { Kfn } from "../sched/thread.js";
import { splitHugePmd } from "./huge_memory.js";
import type { Kernel } from "./kernel.js";
import {
  FAULT_FLAG_UNSHARE,
  FAULT_FLAG_WRITE,
  type FaultContext,
  GUP_PIN_COUNTING_BIAS,
  handleMmFault,
  VM_FAULT_ERROR,
  VM_FAULT_OOM,
} from "./memory.js";
import { type MigrateContext, migrateDeviceCoherentFolio } from "./migrate_device.js";
import { type MmStruct, VM_HUGETLB, VM_IO, VM_PFNMAP, VM_READ, VM_WRITE } from "./mm_types.js";
import { PG_anon_exclusive } from "./page.js";
import { pteFrame, ptePresent, pteProtNone, pteSpecial, pteWrite } from "./pgtable.js";

/** FOLL_WRITE: the pages must be writable (break COW first). */
export const FOLL_WRITE = 0x01;
/** FOLL_GET: take a plain page reference (get_user_pages). */
export const FOLL_GET = 0x02;
/** The pin is long-term (RDMA, VFIO): migrate what may not stay pinned first. */
export const FOLL_LONGTERM = 0x100;
/** FOLL_SPLIT_PMD: split a PMD-mapped THP and take the 4 KiB page (make_device_exclusive asks for it). */
export const FOLL_SPLIT_PMD = 0x200;
/**
 * FOLL_PIN: take a pin, counted apart from plain references (pin_user_pages). One of mm/internal.h's
 * INTERNAL_GUP_FLAGS: only the pin_user_pages*() calls set it, and a caller's is refused.
 */
export const FOLL_PIN = 0x80000;

/** Per-page references taken through GUP, so the invariant checker can account for them. */
export class GupLedger {
  readonly gets = new Map<number, number>();
  readonly pins = new Map<number, number>();
}

/**
 * __get_user_pages: for `count` pages from vpn, faults each in as needed and takes a reference or a
 * pin; fills `pfns`. Returns the number of pages done, or -errno if the first page failed. EINVAL, as
 * is_valid_gup_args gives it, for FOLL_GET with FOLL_PIN and for FOLL_LONGTERM without FOLL_PIN (a
 * get_user_pages caller may not ask for a long-term reference).
 */
export function* getUserPages(
  ctx: FaultContext,
  ledger: GupLedger,
  mm: MmStruct,
  vpn: number,
  count: number,
  gupFlags: number,
  pfns: number[],
): Kfn<number> {
  // is_valid_gup_args: FOLL_GET and FOLL_PIN exclude each other, and only a pin may be long-term.
  if ((gupFlags & (FOLL_GET | FOLL_PIN)) === (FOLL_GET | FOLL_PIN)) return -EINVAL;
  if ((gupFlags & FOLL_LONGTERM) !== 0 && (gupFlags & FOLL_PIN) === 0) return -EINVAL;
  if ((gupFlags & FOLL_LONGTERM) === 0)
    return yield* getUserPagesLocked(ctx, ledger, mm, vpn, count, gupFlags, pfns);
  // __gup_longterm_locked: take the pages, migrate the unpinnable ones, and again until none is left.
  // Bounded: each -EAGAIN follows the migration of a device-coherent page to RAM, and RAM pages stay.
  const first = pfns.length;
  for (;;) {
    const done = yield* getUserPagesLocked(ctx, ledger, mm, vpn, count, gupFlags, pfns);
    if (done <= 0) return done;
    const ret = yield* checkAndMigrateMovablePages(ctx, ledger, pfns, first);
    if (ret !== -EAGAIN) return ret < 0 ? ret : done;
  }
}

/**
 * check_and_migrate_movable_pages for the pages of one call (pfns from `first` on): 0 when each may be
 * pinned for long. Otherwise every page is released, each device-coherent one after its pin became a
 * plain reference for migrate_device_coherent_folio, and the result is -EAGAIN (take them again) or
 * -EBUSY when a page would not move.
 */
function* checkAndMigrateMovablePages(
  ctx: FaultContext,
  ledger: GupLedger,
  pfns: number[],
  first: number,
): Kfn<number> {
  const k = ctx.k;
  const taken = pfns.splice(first);
  if (!taken.some((pfn) => k.pages.isDeviceCoherent(pfn))) {
    pfns.push(...taken);
    return 0;
  }
  assert("layout" in ctx, "FOLL_LONGTERM needs the migration context");
  const release = (pfn: number) => unpinUserPage(k, ledger, pfn);
  for (let i = 0; i < taken.length; i++) {
    const pfn = taken[i]!;
    if (!k.pages.isDeviceCoherent(pfn)) {
      release(pfn);
      continue;
    }
    // "Migration will fail if the folio is pinned, so convert the pin to a normal reference."
    k.pages.get(pfn);
    release(pfn);
    if ((yield* migrateDeviceCoherentFolio(ctx as MigrateContext, pfn)) !== 0) {
      for (const rest of taken.slice(i + 1)) release(rest);
      return -EBUSY;
    }
  }
  return -EAGAIN;
}

/** __get_user_pages: the pages of one call, as getUserPages describes. */
function* getUserPagesLocked(
  ctx: FaultContext,
  ledger: GupLedger,
  mm: MmStruct,
  vpn: number,
  count: number,
  gupFlags: number,
  pfns: number[],
): Kfn<number> {
  const k = ctx.k;
  assert(mm.mmapLock.heldBy(k.sched.current()), "get_user_pages without mmap_lock");
  assert(
    ((gupFlags & FOLL_GET) !== 0) !== ((gupFlags & FOLL_PIN) !== 0),
    "exactly one of FOLL_GET and FOLL_PIN",
  );
  const write = (gupFlags & FOLL_WRITE) !== 0;
  const pin = (gupFlags & FOLL_PIN) !== 0;
  for (let i = 0; i < count; i++) {
    const at = vpn + i;
    const vma = mm.findVma(at);
    const bad =
      vma === null ||
      (vma.flags & (VM_IO | VM_PFNMAP)) !== 0 ||
      (vma.flags & (write ? VM_WRITE : VM_READ)) === 0;
    if (bad) return i > 0 ? i : -EFAULT;
    let pfn = -1;
    // follow_page_mask, then faultin_page, until the page is there with the access wanted. Bounded:
    // each fault either installs the entry or reports an error; a racing unmap costs one more pass.
    for (let attempt = 0; attempt < 64 && pfn < 0; attempt++) {
      // follow_huge_pmd would take the reference on the whole THP; hmmsim splits it first, as
      // FOLL_SPLIT_PMD does (huge_memory.ts's eager split), and follows the 4 KiB page's PTE.
      // follow_huge_pmd takes the reference on the whole THP (as follow_hugetlb_page does on a hugetlb
      // folio) and returns the page asked for; FOLL_SPLIT_PMD splits the THP first, and so does hmmsim
      // for the huge zero folio (deliberate: GUP then returns the 4 KiB zero page).
      const leaf = k.pt.hugePmds > 0 && (vma.flags & VM_HUGETLB) === 0 ? k.pt.readPmdLeaf(mm.root, at) : 0;
      if (leaf !== 0 && ((gupFlags & FOLL_SPLIT_PMD) !== 0 || pteFrame(leaf) === k.hugeZeroPfn))
        yield* splitHugePmd(k, vma, at);
      const pte = k.pt.read(mm.root, at);
      const usable =
        ptePresent(pte) && !pteProtNone(pte) && (!write || pteWrite(pte)) && !(write && pteSpecial(pte));
      // gup_must_unshare: a read pin of an anonymous page that may be COW-shared would pin a page the
      // next write fault replaces; the kernel unshares it first (FAULT_FLAG_UNSHARE).
      const mustUnshare = usable && pin && !write && !pteSpecial(pte) && mustUnsharePage(k, pteFrame(pte));
      if (usable && !mustUnshare) {
        pfn = pteFrame(pte);
        break;
      }
      const faultFlags = write ? FAULT_FLAG_WRITE : mustUnshare ? FAULT_FLAG_UNSHARE : 0;
      const ret = yield* handleMmFault(ctx, vma, at, faultFlags);
      if ((ret & VM_FAULT_ERROR) !== 0) {
        if (i > 0) return i;
        return (ret & VM_FAULT_OOM) !== 0 ? -ENOMEM : -EFAULT;
      }
    }
    if (pfn < 0) return i > 0 ? i : -EFAULT;
    // The reference is the folio's (its head's); the ledger names the page GUP returned.
    const head = k.pages.compoundHead(pfn);
    if ((gupFlags & FOLL_PIN) !== 0) {
      k.pages.refcount[head]! += GUP_PIN_COUNTING_BIAS;
      ledger.pins.set(pfn, (ledger.pins.get(pfn) ?? 0) + 1);
    } else {
      k.pages.refcount[head]!++;
      ledger.gets.set(pfn, (ledger.gets.get(pfn) ?? 0) + 1);
    }
    pfns.push(pfn);
  }
  return count;
}

/** An anonymous page this process does not own exclusively (it may be shared with a fork). */
function mustUnsharePage(k: Kernel, pfn: number): boolean {
  const head = k.pages.compoundHead(pfn);
  return k.pages.isAnon(head) && !k.pages.has(head, PG_anon_exclusive);
}

function dropFromLedger(map: Map<number, number>, pfn: number): boolean {
  const count = map.get(pfn) ?? 0;
  if (count === 0) return false;
  if (count === 1) map.delete(pfn);
  else map.set(pfn, count - 1);
  return true;
}

/** unpin_user_page. */
export function unpinUserPage(k: Kernel, ledger: GupLedger, pfn: number): void {
  assert(dropFromLedger(ledger.pins, pfn), "unpin of a page that is not pinned", () => k.pages.describe(pfn));
  const head = k.pages.compoundHead(pfn);
  k.pages.refcount[head]! -= GUP_PIN_COUNTING_BIAS - 1;
  k.pages.putStructural(head);
}

/**
 * unpin_user_pages, checked: every entry must be a page with a pin outstanding, counting an entry that
 * appears twice as two unpins. The kernel has no errno for unpinning what was never pinned (it would
 * corrupt the refcount); hmmsim refuses the whole call with -EINVAL and unpins nothing.
 */
export function unpinUserPages(k: Kernel, ledger: GupLedger, pfns: readonly unknown[]): number {
  const wanted = new Map<number, number>();
  for (const pfn of pfns) {
    if (typeof pfn !== "number" || !Number.isSafeInteger(pfn)) return -EINVAL;
    const count = (wanted.get(pfn) ?? 0) + 1;
    if (count > (ledger.pins.get(pfn) ?? 0)) return -EINVAL;
    wanted.set(pfn, count);
  }
  for (const pfn of pfns) unpinUserPage(k, ledger, pfn as number);
  return 0;
}

/**
 * A FOLL_GET reference a kernel caller keeps for itself (make_device_exclusive's page): it leaves the
 * ledger, which counts references user space holds through GUP, and becomes one the thread holds.
 */
export function gupToHeld(k: Kernel, ledger: GupLedger, pfn: number): void {
  assert(dropFromLedger(ledger.gets, pfn), "a page GUP did not get", () => k.pages.describe(pfn));
  k.pages.takeOver(k.pages.compoundHead(pfn));
}

/** put_page for a reference taken with FOLL_GET. */
export function putUserPage(k: Kernel, ledger: GupLedger, pfn: number): void {
  assert(dropFromLedger(ledger.gets, pfn), "put of a page GUP did not get", () => k.pages.describe(pfn));
  k.pages.putStructural(k.pages.compoundHead(pfn));
}
