/**
 * checkInvariants: the whole-state checker the tests run at quiescence and the explorer runs after
 * every step. Each violation is one line naming the page, mm or lock and what is wrong.
 */

import type { OpenFile } from "../device.js";
import type { Kernel } from "../mm/kernel.js";
import { GUP_PIN_COUNTING_BIAS } from "../mm/memory.js";
import {
  AddressSpace,
  VM_ACCESS_FLAGS,
  VM_HUGEPAGE,
  VM_HUGETLB,
  VM_MIXEDMAP,
  VM_NOHUGEPAGE,
  VM_WRITE,
} from "../mm/mm_types.js";
import {
  HPAGE_PMD_NR,
  PG_anon,
  PG_anon_exclusive,
  PG_buddy,
  PG_head,
  PG_hugetlb,
  PG_locked,
  PG_lru,
  PG_tail,
} from "../mm/page.js";
import { ZERO_PFN } from "../mm/page_alloc.js";
import {
  describePte,
  isDeviceExclusiveEntry,
  isDevicePrivateEntry,
  isMigrationEntry,
  isReadableMigrationEntry,
  isWritableDevicePrivateEntry,
  pteDirty,
  pteFrame,
  ptePresent,
  pteProtNone,
  pteSpecial,
  pteWrite,
} from "../mm/pgtable.js";
import { batchedCount, pageLruList } from "../mm/swap.js";
import type { System } from "../system.js";
import { checkMirrorInvariants } from "./mirror_invariants.js";

/**
 * Stop listing after this many lines (one bug tends to break thousands of pages the same way); a last
 * line says how many more were found.
 */
const VIOLATIONS_MAX = 50;

export function checkInvariants(system: System): string[] {
  const k = system.kernel;
  const pages = k.pages;
  const out: string[] = [];
  let unlisted = 0;
  const report = (line: string) => {
    if (out.length < VIOLATIONS_MAX) out.push(line);
    else unlisted++;
  };
  const quiescent = k.sched.liveThreads().length === 0;
  // A writable mapping of an anonymous page is its only mapping, so the page must be exclusive
  // (the kernel's VM_BUG_ON(pte_write(pte) && !PageAnonExclusive(page)) in do_swap_page and friends).
  const checkWritableAnon = (mmId: number, vpn: number, pfn: number) => {
    if (pages.isAnon(pfn) && !pages.has(pfn, PG_anon_exclusive))
      report(`mm ${mmId}: vpn 0x${vpn.toString(16)} maps shared anonymous pfn ${pfn} writable`);
  };

  // 0. VMAs: sorted, non-overlapping, and no contradictory flags.
  for (const mm of k.mms.values()) {
    let end = 0;
    for (const vma of mm.vmas) {
      if (vma.start < end) report(`mm ${mm.id}: ${vma} overlaps the VMA before it`);
      end = vma.end;
      if ((vma.flags & (VM_HUGEPAGE | VM_NOHUGEPAGE)) === (VM_HUGEPAGE | VM_NOHUGEPAGE))
        report(`mm ${mm.id}: ${vma} has both VM_HUGEPAGE and VM_NOHUGEPAGE`);
    }
  }

  // 1. Page tables: count mappings per page; every entry lies in a VMA that allows it.
  // Mappings per pfn, as a typed array: the per-pfn pass below reads it for every frame.
  const mapped = new Int32Array(pages.capacity);
  // Migration entries that carry a page's exclusivity (writable or readable-exclusive), per page.
  const exclusiveEntries = new Map<number, number>();
  // Huge PMDs mapping each large folio, by head pfn.
  const pmdMapped = new Map<number, number>();
  for (const mm of k.mms.values()) {
    // hmmsim's RSS counts the PTEs that map a page, present or device-private (migration entries not).
    let anonMapped = 0;
    let fileMapped = 0;
    const countRss = (pfn: number) => {
      if (pages.isAnon(pfn)) anonMapped++;
      else fileMapped++;
    };
    k.pt.forEachTable(mm.root, (table, firstVpn) => {
      for (let i = 0; i < 512; i++) {
        const pte = k.pt.entries[table * 512 + i]!;
        if (pte === 0) continue;
        const vpn = firstVpn + i;
        const vma = mm.findVma(vpn);
        if (vma === null) {
          report(`mm ${mm.id}: vpn 0x${vpn.toString(16)} has PTE ${describePte(pte)} outside any VMA`);
          continue;
        }
        const pfn = pteFrame(pte);
        if (ptePresent(pte)) {
          if ((vma.flags & VM_ACCESS_FLAGS) === 0 && !pteProtNone(pte)) {
            report(`mm ${mm.id}: vpn 0x${vpn.toString(16)} accessible PTE in a PROT_NONE VMA`);
          }
          if (pteWrite(pte) && (vma.flags & VM_WRITE) === 0)
            report(`mm ${mm.id}: vpn 0x${vpn.toString(16)} writable in a read-only VMA`);
          if (pteSpecial(pte)) {
            if (pfn !== ZERO_PFN) report(`mm ${mm.id}: vpn 0x${vpn.toString(16)} special PTE to pfn ${pfn}`);
            continue;
          }
          if (pteWrite(pte) && pfn === ZERO_PFN) report(`mm ${mm.id}: zero page mapped writable`);
          if (pages.isDevicePrivate(pfn))
            report(`mm ${mm.id}: vpn 0x${vpn.toString(16)} present PTE to device-private pfn ${pfn}`);
          // A page that is neither anonymous nor device memory nor in a page cache came from a driver
          // (vm_insert_page): only a driver's VMA, marked VM_MIXEDMAP by the insertion, maps one.
          if (
            !pages.isAnon(pfn) &&
            !pages.isZoneDevice(pfn) &&
            !(k.mappingOf(pfn) instanceof AddressSpace) &&
            (vma.driverFile === null || (vma.flags & VM_MIXEDMAP) === 0)
          )
            report(
              `mm ${mm.id}: vpn 0x${vpn.toString(16)} maps pfn ${pfn}, in no page cache and not anonymous, outside a driver's VM_MIXEDMAP VMA`,
            );
          mapped[pfn]!++;
          countRss(pfn);
          if (pteWrite(pte)) checkWritableAnon(mm.id, vpn, pfn);
        } else if (isDevicePrivateEntry(pte)) {
          if (!pages.isDevicePrivate(pfn))
            report(`mm ${mm.id}: device-private entry to pfn ${pfn}, which is not device-private memory`);
          mapped[pfn]!++;
          countRss(pfn);
          if (isWritableDevicePrivateEntry(pte)) checkWritableAnon(mm.id, vpn, pfn);
        } else if (isDeviceExclusiveEntry(pte)) {
          // Since the 6.15 rework the entry is a mapping: it keeps the rmap, the mapcount and the
          // reference of the PTE it replaced, which mapped an anonymous page the CPU maps directly:
          // system memory or device-coherent memory (make_device_exclusive asks only folio_test_anon,
          // and a device-coherent page migrated to is anonymous), never device-private memory.
          if (!pages.isAnon(pfn) || (pages.isZoneDevice(pfn) && !pages.isDeviceCoherent(pfn)))
            report(
              `mm ${mm.id}: vpn 0x${vpn.toString(16)} device-exclusive entry to pfn ${pfn}, not an anonymous page the CPU maps`,
            );
          mapped[pfn]!++;
          countRss(pfn);
        } else if (isMigrationEntry(pte)) {
          if (quiescent)
            report(
              `mm ${mm.id}: migration entry for pfn ${pfn} left at vpn 0x${vpn.toString(16)} with no migration running`,
            );
          // Only an anonymous page has an owner; a shared file page gets a writable entry per mapping.
          if (pages.isAnon(pfn) && !isReadableMigrationEntry(pte))
            exclusiveEntries.set(pfn, (exclusiveEntries.get(pfn) ?? 0) + 1);
        }
      }
    });
    // Huge PMDs: each lies wholly in one private anonymous VMA and maps the huge zero folio (read-only)
    // or the head of a large RAM folio, which counts 512 anonymous pages of RSS; in a hugetlb VMA, and
    // only there, a hugetlb folio of the pool (not in RSS).
    k.pt.forEachPmdLeaf(mm.root, 0, Number.MAX_SAFE_INTEGER, (_pmdKey, firstVpn, leaf) => {
      const where = `mm ${mm.id}: huge PMD at vpn 0x${firstVpn.toString(16)} (${describePte(leaf)})`;
      const vma = mm.findVma(firstVpn);
      if (vma === null || vma.end < firstVpn + HPAGE_PMD_NR || !vma.isAnonymous) {
        report(`${where} is not inside one anonymous VMA`);
        return;
      }
      if ((vma.flags & VM_ACCESS_FLAGS) === 0 && !pteProtNone(leaf))
        report(`${where} accessible in a PROT_NONE VMA`);
      if (pteWrite(leaf) && (vma.flags & VM_WRITE) === 0) report(`${where} writable in a read-only VMA`);
      const head = pteFrame(leaf);
      if (!ptePresent(leaf)) {
        report(`${where} is not present`);
        return;
      }
      if (head === k.hugeZeroPfn) {
        if (pteWrite(leaf)) report(`${where}: huge zero folio mapped writable`);
        return;
      }
      if (!k.ram.isRam(head) || !pages.isLargeHead(head)) {
        report(`${where} maps pfn ${head}, not the head of a large RAM folio`);
        return;
      }
      pmdMapped.set(head, (pmdMapped.get(head) ?? 0) + 1);
      const hugetlbVma = (vma.flags & VM_HUGETLB) !== 0;
      if (hugetlbVma !== pages.has(head, PG_hugetlb))
        report(
          `${where}: a ${hugetlbVma ? "hugetlb VMA" : "THP"} maps a ${hugetlbVma ? "THP" : "hugetlb folio"}`,
        );
      if (!hugetlbVma) anonMapped += HPAGE_PMD_NR;
      if (!pages.isAnon(head)) report(`${where} maps a folio that is not anonymous`);
      if (pteWrite(leaf)) checkWritableAnon(mm.id, firstVpn, head);
    });
    if (!mm.exited && (mm.rssAnon !== anonMapped || mm.rssFile !== fileMapped))
      report(
        `mm ${mm.id}: RSS anon ${mm.rssAnon} file ${mm.rssFile} but PTEs map ${anonMapped} anon and ${fileMapped} file pages`,
      );
  }

  // An exclusive anonymous page (PageAnonExclusive) has exactly one owner: one mapping, or, while it is
  // unmapped for migration, one migration entry that carries the exclusivity instead of the page.
  const checkExclusivity = (pfn: number, flags: number, mappings: number, entries: number) => {
    const exclusive = (flags & (PG_anon | PG_anon_exclusive)) === (PG_anon | PG_anon_exclusive);
    if (exclusive && mappings > 1) report(`pfn ${pfn}: exclusive anonymous page mapped ${mappings} times`);
    if (entries > 1)
      report(`pfn ${pfn}: ${entries} exclusive migration entries (writable or read-exclusive)`);
    if (exclusive && entries > 0)
      report(`pfn ${pfn}: marked exclusive while a migration entry carries its exclusivity`);
  };

  // 2. References each page should have.
  const batched = batchedCount(k);
  const cached = new Map<number, number>();
  for (const space of k.addressSpaces())
    for (const pfn of space.pages.values()) cached.set(pfn, (cached.get(pfn) ?? 0) + 1);
  // GUP's references are the folio's: a page of a hugetlb folio counts on its head.
  const gupGets = new Map<number, number>();
  const gupPins = new Map<number, number>();
  for (const [pfn, count] of system.gup.gets) {
    const head = pages.compoundHead(pfn);
    gupGets.set(head, (gupGets.get(head) ?? 0) + count);
  }
  for (const [pfn, count] of system.gup.pins) {
    const head = pages.compoundHead(pfn);
    gupPins.set(head, (gupPins.get(head) ?? 0) + count);
  }
  const pfnEnd = pages.capacity;
  let hugetlbHeads = 0;
  for (let pfn = 1; pfn < pfnEnd; pfn++) {
    const refcount = pages.refcount[pfn]!;
    const flags = pages.flags[pfn]!;
    const mapcount = pages.mapcount[pfn]!;
    if ((flags & PG_tail) !== 0) {
      checkTailPage(k, pfn, flags, mapped[pfn]!, batched.has(pfn), report);
      continue;
    }
    // A large folio's PMD mappings count as mappings of its head (folio_mapcount).
    const entire = (flags & PG_head) !== 0 ? pages.entireMapcount[pfn / HPAGE_PMD_NR]! : 0;
    const mappings = mapped[pfn]! + (pmdMapped.get(pfn) ?? 0);
    if ((flags & PG_head) !== 0) {
      if (entire !== (pmdMapped.get(pfn) ?? 0))
        report(`pfn ${pfn}: entire_mapcount ${entire} but ${pmdMapped.get(pfn) ?? 0} huge PMDs map it`);
      if (mapped[pfn]! > 0 || pages.mapcount[pfn] !== 0)
        report(`pfn ${pfn}: large folio head mapped by a PTE (hmmsim splits before mapping pages of a THP)`);
      if (pfn % HPAGE_PMD_NR !== 0) report(`pfn ${pfn}: head of a large folio not 512-aligned`);
    }
    if ((flags & PG_hugetlb) !== 0) {
      hugetlbHeads++;
      if ((flags & (PG_lru | PG_head)) !== PG_head || batched.has(pfn))
        report(`pfn ${pfn}: hugetlb folio not a large folio, or on an LRU (${pages.describe(pfn)})`);
    }
    if (refcount === 0 && (flags & PG_hugetlb) !== 0) {
      // A free folio of the hugetlb pool: listed there, unmapped, off every list.
      if (!k.hugetlb.isFree(pfn)) report(`pfn ${pfn}: hugetlb folio with no references not in the pool`);
      if (mappings !== 0 || (flags & (PG_locked | PG_lru | PG_anon)) !== 0)
        report(
          `pfn ${pfn}: free hugetlb folio mapped, locked, on an LRU or anonymous (${pages.describe(pfn)})`,
        );
      continue;
    }
    if (refcount === 0) {
      if (mapcount !== 0 || mappings !== 0)
        report(`pfn ${pfn}: free but mapped (mapcount ${mapcount}, ${mappings} PTEs)`);
      if ((flags & PG_locked) !== 0) report(`pfn ${pfn}: free but locked`);
      if ((flags & PG_lru) !== 0 || pages.lruList[pfn] !== -1) report(`pfn ${pfn}: free but on an LRU list`);
      if (batched.size > 0 && batched.has(pfn)) report(`pfn ${pfn}: free but in an LRU add batch`);
      if (k.ram.isRam(pfn) && !k.ram.isFree(pfn)) report(`pfn ${pfn}: no references but not free`);
      continue;
    }
    if (k.ram.isRam(pfn) && (flags & PG_buddy) !== 0)
      report(`pfn ${pfn}: free in the allocator but has ${refcount} references`);
    if (mapcount + entire !== mappings)
      report(`pfn ${pfn}: mapcount ${mapcount + entire} but ${mappings} PTEs and PMDs map it`);
    checkExclusivity(pfn, flags, mappings, exclusiveEntries.get(pfn) ?? 0);
    const gets = gupGets.get(pfn) ?? 0;
    const pins = gupPins.get(pfn) ?? 0;
    const expected =
      mappings +
      (cached.get(pfn) ?? 0) +
      (batched.get(pfn) ?? 0) +
      gets +
      pins * GUP_PIN_COUNTING_BIAS +
      pages.heldRefs[pfn]! +
      (pfn === k.hugeZeroPfn ? 1 : 0);
    if (refcount !== expected) {
      report(`pfn ${pfn}: refcount ${refcount} but ${expected} references exist (${pages.describe(pfn)})`);
    }
    if (quiescent && pages.heldRefs[pfn]! > 0) {
      report(`pfn ${pfn}: ${pages.heldRefs[pfn]} reference(s) still held with no thread running (leaked)`);
    }
    if (pages.isZoneDevice(pfn) && ((flags & PG_lru) !== 0 || batched.has(pfn))) {
      report(`pfn ${pfn}: ZONE_DEVICE page on the LRU`);
    }
  }

  if (hugetlbHeads !== k.hugetlb.total)
    report(`hugetlb pool: nr_hugepages ${k.hugetlb.total} but ${hugetlbHeads} hugetlb folios exist`);
  for (const head of k.hugetlb.free)
    if (pages.refcount[head] !== 0 || !pages.has(head, PG_hugetlb))
      report(`hugetlb pool: free folio ${head} in use or not a hugetlb folio (${pages.describe(head)})`);

  // 3. Locks: a locked page has a live holder, and only a locked page has a holder (unlock_page trusts
  // the holder alone).
  for (let pfn = 0; pfn < pfnEnd; pfn++) {
    if ((pages.flags[pfn]! & PG_locked) === 0) {
      if (pages.lockHolder[pfn] !== 0)
        report(`pfn ${pfn}: unlocked but has lock holder ${pages.lockHolder[pfn]}`);
      continue;
    }
    const holder = k.threadById(pages.lockHolder[pfn]!);
    if (holder === null) report(`pfn ${pfn}: locked but no running thread holds it`);
  }
  // Every other lock the scheduler tracks (mutexes, rwsems, page-table locks): a holder that finished or
  // failed without releasing it.
  for (const line of k.sched.locksHeldByGoneThreads())
    report(`lock held by a thread that no longer runs: ${line}`);

  // 4. LRU lists: links consistent with PG_lru and the sizes; each page on the list its flags name.
  for (let list = 0; list < k.lru.head.length; list++) {
    let count = 0;
    let prev = -1;
    for (let pfn = k.lru.head[list]!; pfn >= 0 && count <= pfnEnd; pfn = pages.lruNext[pfn]!) {
      if (pages.lruList[pfn] !== list || (pages.flags[pfn]! & PG_lru) === 0)
        report(`LRU list ${list}: pfn ${pfn} linked but not marked`);
      else if (pageLruList(k, pfn) !== list)
        report(`LRU list ${list}: pfn ${pfn} belongs on list ${pageLruList(k, pfn)} by its flags`);
      if (pages.lruPrev[pfn] !== prev) report(`LRU list ${list}: pfn ${pfn} has a broken back link`);
      prev = pfn;
      count++;
    }
    if (count !== k.lru.sizes[list])
      report(`LRU list ${list}: ${count} pages linked, size says ${k.lru.sizes[list]}`);
  }

  // 5. Page cache entries point back at their file.
  for (const space of k.addressSpaces()) {
    for (const [pgoff, pfn] of space.pages) {
      if (
        !(k.mappingOf(pfn) instanceof AddressSpace) ||
        k.mappingOf(pfn) !== space ||
        pages.index[pfn] !== pgoff
      ) {
        report(`file ${space.name}: page ${pgoff} at pfn ${pfn} does not point back at it`);
      }
    }
  }

  checkMirrorInvariants(system, report);
  checkLifetimes(system, quiescent, report);
  if (quiescent) checkTlbs(system, report);

  // 6. What the kernel itself would have reported.
  for (const bad of pages.badPages) report(`bad page: ${bad.reason}`);
  // 7. The checkers drivers registered (System.registerInvariantChecker): their state against ours.
  system.runInvariantCheckers(report);
  if (unlisted > 0) out.push(`... and ${unlisted} more violations not listed`);
  return out;
}

/**
 * A tail page of a large folio: its head (the 512-aligned pfn below) is a large folio's head, so no
 * split left it orphaned; it holds no reference, mapping, lock or LRU link of its own (the folio's live
 * on the head).
 */
function checkTailPage(
  k: Kernel,
  pfn: number,
  flags: number,
  mappings: number,
  batched: boolean,
  report: (line: string) => void,
): void {
  const pages = k.pages;
  const head = pfn - (pfn % HPAGE_PMD_NR);
  if (!pages.isLargeHead(head))
    report(`pfn ${pfn}: tail page whose head ${head} is not a large folio (orphan tail)`);
  if (pages.refcount[pfn] !== 0 || pages.mapcount[pfn] !== 0 || pages.heldRefs[pfn] !== 0 || mappings !== 0)
    report(`pfn ${pfn}: tail page with references or mappings of its own (${pages.describe(pfn)})`);
  if ((flags & (PG_locked | PG_lru | PG_buddy | PG_head)) !== 0 || pages.lruList[pfn] !== -1 || batched)
    report(`pfn ${pfn}: tail page locked, on an LRU, free or a head (${pages.describe(pfn)})`);
}

/**
 * Processes, their mms, open files and notifiers agree: a live process's mm has not exited; every open
 * file's reference count is the number of descriptors, in live processes, that name it, and a file no
 * descriptor names has been released; with no thread running, no mm is inside an invalidation and none
 * has subscriptions waiting to be linked or unlinked (the deferred list).
 */
function checkLifetimes(system: System, quiescent: boolean, report: (line: string) => void): void {
  const descriptors = new Map<OpenFile, number>();
  for (const process of system.liveProcesses()) {
    if (process.mm.exited) report(`pid ${process.pid}: alive but its mm ${process.mm.id} has exited`);
    for (const file of process.files) descriptors.set(file.file, (descriptors.get(file.file) ?? 0) + 1);
  }
  for (const [file, count] of descriptors) {
    if (file.references !== count)
      report(
        `open file of dmirror ${file.mirror.device.minor}: ${file.references} references, ${count} descriptors`,
      );
    if (file.mirror.closed)
      report(`open file of dmirror ${file.mirror.device.minor}: named by a descriptor but released`);
  }
  for (const { driver } of system.devices) {
    for (const mirror of driver.mirrors.values()) {
      const named = [...descriptors.keys()].some((file) => file.mirror === mirror);
      if (!mirror.closed && !named)
        report(
          `dmirror ${driver.minor} open ${mirror.id}: not released, but no descriptor names it (leaked)`,
        );
    }
  }
  if (!quiescent) return;
  for (const mm of system.kernel.mms.values()) {
    if (mm.activeInvalidations !== 0)
      report(`mm ${mm.id}: ${mm.activeInvalidations} invalidation(s) in progress with no thread running`);
    if (mm.deferredNotifiers.length > 0)
      report(
        `mm ${mm.id}: ${mm.deferredNotifiers.length} notifier(s) on the deferred list with no thread running`,
      );
  }
}

/**
 * At quiescence every CPU's TLB agrees with the page tables: each entry belongs to a live mm and
 * translates a present, accessible PTE of the same pfn, is writable only where the PTE is, and dirty
 * only where the PTE is (a dirty entry writes without setting the PTE's bit again). The kernel flushes
 * wherever it narrows a translation; an entry left behind is a write or read that reaches a page the
 * page table no longer gives (S12). An entry that is narrower than its PTE (read-only, clean) is fine:
 * the next write walks.
 */
function checkTlbs(system: System, report: (line: string) => void): void {
  const k = system.kernel;
  if (k.tlb.size === 0) return;
  for (const entry of k.tlb.entries()) {
    const where = `stale TLB entry: cpu ${entry.cpu} caches mm ${entry.mmId} vpn 0x${entry.vpn.toString(16)} -> pfn ${entry.pfn}${entry.writable ? " writable" : ""}${entry.dirty ? " dirty" : ""}`;
    const mm = k.mms.get(entry.mmId);
    if (mm === undefined || mm.exited) {
      report(`${where}, but the mm is gone`);
      continue;
    }
    const pte = k.pt.read(mm.root, entry.vpn);
    if (!ptePresent(pte) || pteProtNone(pte)) {
      report(`${where}, but the PTE is ${describePte(pte)}`);
      continue;
    }
    if (pteFrame(pte) !== entry.pfn) report(`${where}, but the PTE names pfn ${pteFrame(pte)}`);
    else if (entry.writable && !pteWrite(pte)) report(`${where}, but the PTE is read-only`);
    else if (entry.dirty && !pteDirty(pte)) report(`${where}, but the PTE is clean`);
  }
}
