/**
 * Pinned pages stay where they are: pin_user_pages holds a reference no migration may take away, so
 * the pin check (4.14) or the exclusive-page check in collect (modern) leaves those pages in system
 * memory while the rest of the range moves. MIGRATE_TO_DEV then fails its read-back with ENOENT.
 */
import { describe, expect, it } from "vitest";
import { HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL, HMM_DMIRROR_PROT_WRITE } from "../../src/drivers/dmirror.js";
import { lruAddDrainAll } from "../../src/mm/swap.js";
import { pageValue } from "../../src/process.js";
import { errorCode, P, PROTOCOLS, pageHolds, pfnAt, recollectedAccess, setup } from "./helpers.js";

const NPAGES = 16;
const PINNED = [3, 10];
const SEED = 21;

for (const protocol of PROTOCOLS) {
  describe(`pinned pages [${protocol}]`, () => {
    it("are left in place while the rest of the range migrates; unpinning restores normal refcounts", () => {
      const { system, proc, fd } = setup(protocol);
      const k = system.kernel;
      const addr = proc.mmap(NPAGES * P);
      proc.fillPages(addr, NPAGES, SEED);
      const pinned = PINNED.flatMap((i) => proc.pinPages(addr + i * P, 1, true));
      expect(pinned).toEqual(PINNED.map((i) => pfnAt(proc, addr + i * P)));

      expect(errorCode(() => fd.migrateToDevice(addr, NPAGES))).toBe("ENOENT");

      const expected = Array.from({ length: NPAGES }, (_, i) =>
        PINNED.includes(i)
          ? HMM_DMIRROR_PROT_WRITE
          : HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE,
      );
      expect(Array.from(fd.snapshot(addr, NPAGES))).toEqual(expected);
      // The pinned pages are the very pages that were pinned, still mapped where they were.
      expect(PINNED.map((i) => pfnAt(proc, addr + i * P))).toEqual(pinned);
      for (let i = 0; i < NPAGES; i++)
        expect(k.pages.isZoneDevice(pfnAt(proc, addr + i * P)), `page ${i}`).toBe(!PINNED.includes(i));
      expect(system.checkInvariants()).toEqual([]);

      // Data intact, as the device sees it (the pinned pages are faulted into the mirror, nothing moves).
      const back = fd.read(addr, NPAGES);
      expect(back.cpages).toBe(NPAGES);
      for (let i = 0; i < NPAGES; i++)
        expect(pageHolds(back.data!, i, pageValue(SEED, i)), `page ${i}`).toBe(true);
      expect(Array.from(fd.snapshot(addr, NPAGES))).toEqual(expected);

      proc.unpinPages(pinned);
      lruAddDrainAll(k);
      for (const pfn of pinned) {
        expect(k.pages.refcount[pfn]).toBe(1);
        expect(k.pages.mapcount[pfn]).toBe(1);
      }
      expect(system.checkInvariants()).toEqual([]);
      // Now nothing holds them: migrating again moves them too, and the CPU reads everything back.
      expect(fd.migrateToDevice(addr, NPAGES).cpages).toBe(NPAGES);
      // The pages already on the device are collected again by "4.14" (it selects device pages too) and
      // come back read-only there (see recollectedAccess); the two that just moved are writable.
      const local = HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL;
      expect(Array.from(fd.snapshot(addr, NPAGES))).toEqual(
        Array.from({ length: NPAGES }, (_, i) =>
          PINNED.includes(i) ? local | HMM_DMIRROR_PROT_WRITE : local | recollectedAccess(protocol),
        ),
      );
      expect(proc.checkPages(addr, NPAGES, SEED)).toEqual([]);
      fd.close();
      expect(system.checkInvariants()).toEqual([]);
    });
  });
}
