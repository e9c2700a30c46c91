import { describe, expect, it } from "vitest";
import { pteFrame } from "../../src/mm/pgtable.js";
import { System } from "../../src/system.js";

describe("dmirror device memory", () => {
  it("hands out the lowest free device page first, and a freed page before higher ones", () => {
    const system = new System({ ram: "4MiB", store: "tokens", devices: [{ memory: "1MiB" }] });
    const proc = system.spawn();
    const addr = proc.mmap(8 * 4096);
    proc.fillPages(addr, 8, 5);
    const fd = system.device(0).open(proc);
    expect(fd.migrateToDevice(addr, 8).cpages).toBe(8);
    const device = system.device(0).driver;
    const first = device.chunks[0]!.startPfn;
    const pfns = Array.from({ length: 8 }, (_, i) => system.kernel.pt.read(proc.mm.root, addr / 4096 + i));
    const framesOf = (ptes: number[]) => ptes.map(pteFrame);
    expect(framesOf(pfns)).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((i) => first + i));
    // Pages 2 and 5 come back to RAM, freeing their device frames; the next two to go out take them.
    expect(fd.migrateToSystem(addr + 2 * 4096, 1).cpages).toBe(1);
    expect(fd.migrateToSystem(addr + 5 * 4096, 1).cpages).toBe(1);
    expect(fd.migrateToDevice(addr + 5 * 4096, 1).cpages).toBe(1);
    expect(fd.migrateToDevice(addr + 2 * 4096, 1).cpages).toBe(1);
    const again = framesOf([2, 5].map((i) => system.kernel.pt.read(proc.mm.root, addr / 4096 + i)));
    expect(again).toEqual([first + 5, first + 2]);
    expect(proc.checkPages(addr, 8, 5)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });
});
