/**
 * HMM_DMIRROR_FLAG_FAIL_ALLOC: the next page allocation of a migration fails, once. The page it was
 * for stays where it was, with its data.
 */
import { describe, expect, it } from "vitest";
import { HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL, HMM_DMIRROR_PROT_WRITE } from "../../src/drivers/dmirror.js";
import { isDevicePrivateEntry, pteFrame } from "../../src/mm/pgtable.js";
import { pageValue } from "../../src/process.js";
import { errorCode, P, PROTOCOLS, pageHolds, recollectedAccess, setup } from "./helpers.js";

const SEED = 33;

for (const protocol of PROTOCOLS) {
  describe(`FAIL_ALLOC [${protocol}]`, () => {
    it("to the device: the page stays a system page with its data (ENOENT), and the flag is one-shot", () => {
      const { system, proc, fd } = setup(protocol);
      const addr = proc.mmap(2 * P);
      proc.fillPages(addr, 2, SEED);
      const usedBefore = system.device(0).usedPages;
      fd.setFlags(addr);
      expect(errorCode(() => fd.migrateToDevice(addr, 1))).toBe("ENOENT");
      expect(Array.from(fd.snapshot(addr, 2))).toEqual([HMM_DMIRROR_PROT_WRITE, HMM_DMIRROR_PROT_WRITE]);
      expect(system.kernel.pages.isZoneDevice(system.kernel.pt.read(proc.mm.root, addr / P))).toBe(false);
      expect(system.device(0).usedPages).toBe(usedBefore);
      expect(proc.checkPages(addr, 2, SEED)).toEqual([]);
      expect(system.checkInvariants()).toEqual([]);
      // The flag was consumed: the same migration now succeeds.
      expect(fd.migrateToDevice(addr, 2).cpages).toBe(2);
      expect(proc.checkPages(addr, 2, SEED)).toEqual([]);
      fd.close();
      expect(system.checkInvariants()).toEqual([]);
    });

    it("back to system memory: the page stays on the device with its data", () => {
      const { system, proc, fd } = setup(protocol);
      const addr = proc.mmap(2 * P);
      proc.fillPages(addr, 2, SEED);
      expect(fd.migrateToDevice(addr, 2).cpages).toBe(2);
      const onDevice = HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE;
      expect(Array.from(fd.snapshot(addr, 2))).toEqual([onDevice, onDevice]);
      fd.setFlags(addr);
      if (protocol === "modern") {
        // dmirror_devmem_fault_alloc_and_copy returns VM_FAULT_OOM: MIGRATE_TO_SYS fails with ENOMEM.
        expect(errorCode(() => fd.migrateToSystem(addr, 2))).toBe("ENOMEM");
        expect(Array.from(fd.snapshot(addr, 2))).toEqual([onDevice, onDevice]);
      } else {
        // migrate_vma() cannot fail a page: the driver marks the one it could not bring back with
        // MIGRATE_PFN_ERROR, releases what it allocated and reports ENOMEM itself. Both pages were
        // collected and restored, and the restore loses their write bit (see recollectedAccess).
        expect(errorCode(() => fd.migrateToSystem(addr, 2))).toBe("ENOMEM");
        const restored = HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | recollectedAccess(protocol);
        expect(Array.from(fd.snapshot(addr, 2))).toEqual([restored, restored]);
      }
      for (let i = 0; i < 2; i++) {
        const pte = system.kernel.pt.read(proc.mm.root, addr / P + i);
        expect(isDevicePrivateEntry(pte), `page ${i}`).toBe(true);
        expect(system.kernel.pages.isZoneDevice(pteFrame(pte))).toBe(true);
      }
      expect(system.checkInvariants()).toEqual([]);
      // The data, as the device reads it (no CPU access, which would fault the pages back).
      const back = fd.read(addr, 2);
      expect(back.cpages).toBe(2);
      for (let i = 0; i < 2; i++)
        expect(pageHolds(back.data!, i, pageValue(SEED, i)), `page ${i}`).toBe(true);
      // The flag was consumed: the same migration now moves both pages.
      expect(fd.migrateToSystem(addr, 2).cpages).toBe(2);
      expect(proc.checkPages(addr, 2, SEED)).toEqual([]);
      fd.close();
      expect(system.checkInvariants()).toEqual([]);
    });
  });
}
