/**
 * checkInvariants: the whole-state checker the tests run at quiescence and the explorer runs after
 * every step. Each violation is one line naming the page, mm or lock and what is wrong.
 */
import { GUP_PIN_COUNTING_BIAS } from "../mm/memory.js";
import { AddressSpace, VM_ACCESS_FLAGS, VM_WRITE } from "../mm/mm_types.js";
import { PG_buddy, PG_locked, PG_lru } from "../mm/page.js";
import { ZERO_PFN } from "../mm/page_alloc.js";
import {
  describePte,
  isDevicePrivateEntry,
  isMigrationEntry,
  pteFrame,
  ptePresent,
  pteProtNone,
  pteSpecial,
  pteWrite,
} from "../mm/pgtable.js";
import { batchedCount } from "../mm/swap.js";
import type { System } from "../system.js";
import { checkMirrorInvariants } from "./mirror_invariants.js";

/** Stop collecting after this many lines: one bug tends to break thousands of pages the same way. */
const VIOLATIONS_MAX = 50;

export function checkInvariants(system: System): string[] {
  const k = system.kernel;
  const pages = k.pages;
  const out: string[] = [];
  const report = (line: string) => {
    if (out.length < VIOLATIONS_MAX) out.push(line);
  };
  const quiescent = k.sched.liveThreads().length === 0;

  // 1. Page tables: count mappings per page; every entry lies in a VMA that allows it.
  const mapped = new Map<number, number>();
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
          mapped.set(pfn, (mapped.get(pfn) ?? 0) + 1);
          countRss(pfn);
        } else if (isDevicePrivateEntry(pte)) {
          if (!pages.isZoneDevice(pfn)) report(`mm ${mm.id}: device-private entry to RAM pfn ${pfn}`);
          mapped.set(pfn, (mapped.get(pfn) ?? 0) + 1);
          countRss(pfn);
        } else if (isMigrationEntry(pte)) {
          if (quiescent)
            report(
              `mm ${mm.id}: migration entry for pfn ${pfn} left at vpn 0x${vpn.toString(16)} with no migration running`,
            );
        }
      }
    });
    if (!mm.exited && (mm.rssAnon !== anonMapped || mm.rssFile !== fileMapped))
      report(
        `mm ${mm.id}: RSS anon ${mm.rssAnon} file ${mm.rssFile} but PTEs map ${anonMapped} anon and ${fileMapped} file pages`,
      );
  }

  // 2. References each page should have.
  const batched = batchedCount(k);
  const cached = new Map<number, number>();
  for (const space of k.addressSpaces())
    for (const pfn of space.pages.values()) cached.set(pfn, (cached.get(pfn) ?? 0) + 1);
  const pfnEnd = pages.capacity;
  for (let pfn = 1; pfn < pfnEnd; pfn++) {
    const refcount = pages.refcount[pfn]!;
    const flags = pages.flags[pfn]!;
    const mapcount = pages.mapcount[pfn]!;
    const mappings = mapped.get(pfn) ?? 0;
    if (refcount === 0) {
      if (mapcount !== 0 || mappings !== 0)
        report(`pfn ${pfn}: free but mapped (mapcount ${mapcount}, ${mappings} PTEs)`);
      if ((flags & PG_locked) !== 0) report(`pfn ${pfn}: free but locked`);
      if ((flags & PG_lru) !== 0 || pages.lruList[pfn] !== -1) report(`pfn ${pfn}: free but on an LRU list`);
      if (batched.has(pfn)) report(`pfn ${pfn}: free but in an LRU add batch`);
      if (k.ram.isRam(pfn) && !k.ram.isFree(pfn)) report(`pfn ${pfn}: no references but not free`);
      continue;
    }
    if (k.ram.isRam(pfn) && (flags & PG_buddy) !== 0)
      report(`pfn ${pfn}: free in the allocator but has ${refcount} references`);
    if (mapcount !== mappings) report(`pfn ${pfn}: mapcount ${mapcount} but ${mappings} PTEs map it`);
    const gets = system.gup.gets.get(pfn) ?? 0;
    const pins = system.gup.pins.get(pfn) ?? 0;
    const expected =
      mappings +
      (cached.get(pfn) ?? 0) +
      (batched.get(pfn) ?? 0) +
      gets +
      pins * GUP_PIN_COUNTING_BIAS +
      pages.heldRefs[pfn]!;
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
  for (const table of k.ptl.heldKeys()) {
    if (k.ptl.holderOf(table)?.live !== true) report(`page-table lock ${table}: held by no running thread`);
  }

  // 4. LRU lists: links consistent with PG_lru and the sizes.
  for (let list = 0; list < k.lru.head.length; list++) {
    let count = 0;
    let prev = -1;
    for (let pfn = k.lru.head[list]!; pfn >= 0 && count <= pfnEnd; pfn = pages.lruNext[pfn]!) {
      if (pages.lruList[pfn] !== list || (pages.flags[pfn]! & PG_lru) === 0)
        report(`LRU list ${list}: pfn ${pfn} linked but not marked`);
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

  // 6. What the kernel itself would have reported.
  for (const bad of pages.badPages.slice(0, VIOLATIONS_MAX)) report(`bad page: ${bad.reason}`);
  return out;
}
