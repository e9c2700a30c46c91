/**
 * The device half of the invariant checker (called from checkInvariants): every open dmirror's mirror
 * agrees with the CPU page table it mirrors, every device's memory is accounted for, no pagemap that
 * memunmap_pages removed is still used. (A driver lock held by a thread that has gone is reported with
 * every other lock the scheduler tracks, in checkInvariants.)
 *
 * A mirror entry is compared with the PTE at its address in the mirrored mm: it must name the same pfn,
 * be writable only where the CPU mapping is, and not outlive the mm. A migration entry there means a
 * migration is under way, during which the driver may still mirror the source page read-only (or
 * already its destination), but not writable: a write there can be lost. At quiescence no migration
 * entry is left (the main checker reports one that is).
 */
import { entryAtomic, entryPfn, entryWritable } from "../drivers/dmirror.js";
import {
  describePte,
  isDeviceExclusiveEntry,
  isDevicePrivateEntry,
  isMigrationEntry,
  isWritableDevicePrivateEntry,
  pteFrame,
  ptePresent,
  pteProtNone,
  pteWrite,
} from "../mm/pgtable.js";
import type { System } from "../system.js";

export function checkMirrorInvariants(system: System, report: (line: string) => void): void {
  const k = system.kernel;
  const pages = k.pages;
  for (const { driver } of system.devices) {
    // Mirrors: each entry matches what the CPU maps at its address.
    for (const mirror of driver.mirrors.values()) {
      if (mirror.closed) continue;
      const mm = mirror.mm;
      const who = `dmirror ${driver.minor} open ${mirror.id} (mm ${mm.id})`;
      mirror.pt.forEach((vpn, entry) => {
        const pfn = entryPfn(entry);
        const at = `stale device mirror entry: ${who} maps vpn 0x${vpn.toString(16)} to pfn ${pfn}`;
        if (mm.exited) {
          report(`${at}, but that mm has exited`);
          return;
        }
        const pte = k.pt.read(mm.root, vpn);
        if (isMigrationEntry(pte)) {
          // A migration is under way. Mirroring its source read-only is harmless (nobody can change
          // it), and its destination is what the migrating driver maps next; but a writable entry for
          // the source lets the device store into a page whose copy may already be made: a lost write
          // (test_hmm.c's window (a)).
          if (entryWritable(entry) && pteFrame(pte) === pfn)
            report(`${at} writable over a migration entry (a device write there can be lost)`);
          return;
        }
        if (isDeviceExclusiveEntry(pte) !== entryAtomic(entry)) {
          // make_device_exclusive's MMU_NOTIFY_EXCLUSIVE erases the mirror's entry before the atomic one
          // is stored, and restoring the PTE erases that: the two come and go together.
          report(
            entryAtomic(entry)
              ? `${at} for atomic access where the CPU has no device-exclusive entry (${describePte(pte)})`
              : `${at} over a device-exclusive entry, which only an atomic mapping may be`,
          );
          return;
        }
        if (isDeviceExclusiveEntry(pte)) {
          if (pteFrame(pte) !== pfn)
            report(`${at} for atomic access where the CPU's entry names pfn ${pteFrame(pte)}`);
          return;
        }
        let cpuPfn = -1;
        let cpuWritable = false;
        if (ptePresent(pte) && !pteProtNone(pte)) {
          cpuPfn = pteFrame(pte);
          cpuWritable = pteWrite(pte);
        } else if (isDevicePrivateEntry(pte)) {
          cpuPfn = pteFrame(pte);
          cpuWritable = isWritableDevicePrivateEntry(pte);
        }
        if (cpuPfn < 0) report(`${at} where the CPU maps nothing accessible (${describePte(pte)})`);
        else if (cpuPfn !== pfn) report(`${at} where the CPU maps pfn ${cpuPfn}`);
        else if (entryWritable(entry) && !cpuWritable)
          report(`${at} writable where the CPU mapping is read-only`);
        // A page of a large folio lives while its head does (tail pages hold no references).
        if (pages.refcount[pages.compoundHead(pfn)] === 0) report(`${at}, a free page`);
        if (system.pagemaps.lookup(pfn)?.removed === true) report(`${at}, a page of a removed pagemap`);
      });
    }

    // Device memory: the chunks in service account for every page, in use or on the free list.
    for (const chunk of driver.chunks) {
      const what = `dmirror ${driver.minor} chunk (pagemap ${chunk.id})`;
      if (chunk.removed) report(`${what}: removed by memunmap_pages but still in service`);
      const removing = driver.isRemoving(chunk.id);
      let inUse = 0;
      for (let pfn = chunk.startPfn; pfn < chunk.endPfn; pfn++) {
        const free = pages.refcount[pfn] === 0;
        if (!free) inUse++;
        if (!free && driver.isFreePage(pfn)) report(`${what}: pfn ${pfn} is on the free list but in use`);
        if (free && !removing && !driver.isFreePage(pfn))
          report(`${what}: pfn ${pfn} is neither in use nor on the free list (lost)`);
      }
      if (inUse !== chunk.pagesInUse)
        report(`${what}: ${inUse} pages have references but the pagemap counts ${chunk.pagesInUse} in use`);
    }
  }

  // Pagemaps that memunmap_pages removed: their struct pages are gone, nothing may hold one.
  for (const pgmap of system.pagemaps.list) {
    if (pgmap === undefined || !pgmap.removed) continue;
    for (let pfn = pgmap.startPfn; pfn < pgmap.endPfn; pfn++) {
      if (pages.refcount[pfn] !== 0 || pages.mapcount[pfn] !== 0)
        report(`pfn ${pfn}: page of removed pagemap ${pgmap.id} still in use (${pages.describe(pfn)})`);
    }
  }
}
