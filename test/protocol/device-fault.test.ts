/**
 * A CPU access to a device-private page faults (do_swap_page → migrate_to_ram): dmirror moves that one
 * page back to system memory with its bytes, and leaves the rest of the range on the device.
 */
import { describe, expect, it } from "vitest";
import { HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL, HMM_DMIRROR_PROT_WRITE } from "../../src/drivers/dmirror.js";
import { pageValue } from "../../src/process.js";
import { P, PROTOCOLS, recollectedAccess, setup } from "./helpers.js";

const NPAGES = 8;
const SEED = 5;
const ON_DEVICE = HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE; // 0x22

for (const protocol of PROTOCOLS) {
  describe(`CPU fault on a device-private page [${protocol}]`, () => {
    for (const [what, write] of [
      ["read", false],
      ["write", true],
    ] as const) {
      it(`a CPU ${what} brings that page back with its bytes, and only that page`, () => {
        const { system, proc, fd } = setup(protocol);
        const stats = system.kernel.stats;
        const addr = proc.mmap(NPAGES * P);
        proc.fillPages(addr, NPAGES, SEED);
        expect(fd.migrateToDevice(addr, NPAGES).cpages).toBe(NPAGES);
        expect(Array.from(fd.snapshot(addr, NPAGES))).toEqual(new Array(NPAGES).fill(ON_DEVICE));

        const target = 5;
        const faultsBefore = stats.deviceFaults;
        const at = addr + target * P;
        if (write) {
          proc.writeU32(at + 8, 0x5eed);
        } else {
          const bytes = proc.read(at, P);
          const words = new Uint32Array(bytes.buffer);
          expect(words.every((word) => word === pageValue(SEED, target))).toBe(true);
        }
        expect(stats.deviceFaults).toBe(faultsBefore + 1);
        const expected = new Array(NPAGES).fill(ON_DEVICE);
        // A write fault maps the page writable; a read fault keeps the entry's write bit, which "4.14"
        // loses (see recollectedAccess).
        expected[target] = write ? HMM_DMIRROR_PROT_WRITE : recollectedAccess(protocol);
        expect(Array.from(fd.snapshot(addr, NPAGES))).toEqual(expected);
        expect(system.kernel.pages.isZoneDevice(system.kernel.pt.read(proc.mm.root, at / P))).toBe(false);

        // The page's bytes: all of the old page, plus the one word written.
        const page = new Uint32Array(proc.read(at, P).buffer);
        page.forEach((word, w) => {
          const want = write && w === 2 ? 0x5eed : pageValue(SEED, target);
          if (word !== want) expect.fail(`word ${w} is ${word}, expected ${want}`);
        });
        // No further device fault: the page is in RAM now.
        expect(stats.deviceFaults).toBe(faultsBefore + 1);
        // The other pages are still on the device, with their data as the device reads it.
        const back = fd.read(addr, NPAGES);
        expect(back.cpages).toBe(NPAGES);
        for (let i = 0; i < NPAGES; i++) {
          if (i !== target) expect(back.words[i], `page ${i}`).toBe(pageValue(SEED, i));
        }
        expect(Array.from(fd.snapshot(addr, NPAGES))).toEqual(expected);
        fd.close();
        expect(system.checkInvariants()).toEqual([]);
      });
    }
  });
}
