/**
 * The invariant checker names each kind of broken state in its own words: each test builds a
 * consistent state, breaks one fact behind the model's back, and expects exactly the line for it.
 */
import { describe, expect, it } from "vitest";
import { VM_HUGEPAGE, VM_NOHUGEPAGE } from "../../src/mm/mm_types.js";
import { PG_active, PG_anon_exclusive } from "../../src/mm/page.js";
import { _PAGE_RW, pteWithBits } from "../../src/mm/pgtable.js";
import { lruAddDrainAll } from "../../src/mm/swap.js";
import { System } from "../../src/system.js";

const P = 4096;

function oneProcess() {
  const system = new System({ ram: "1MiB", devices: [] });
  const proc = system.spawn();
  const addr = proc.mmap(2 * P);
  proc.fillPages(addr, 1, 1);
  const k = system.kernel;
  const vpn = addr / P;
  const pfn = Math.floor(k.pt.read(proc.mm.root, vpn) / 1024);
  expect(system.checkInvariants()).toEqual([]);
  return { system, proc, addr, k, vpn, pfn };
}

describe("checkInvariants", () => {
  it("names an exclusive anonymous page mapped twice", () => {
    const { system, proc, k, pfn } = oneProcess();
    proc.fork();
    k.pages.set(pfn, PG_anon_exclusive);
    expect(system.checkInvariants()).toEqual([`pfn ${pfn}: exclusive anonymous page mapped 2 times`]);
  });

  it("names a writable mapping of a shared anonymous page", () => {
    const { system, proc, k, vpn, pfn } = oneProcess();
    proc.fork();
    const table = k.pt.lookupTable(proc.mm.root, vpn);
    const slot = table * 512 + (vpn & 511);
    k.pt.entries[slot] = pteWithBits(k.pt.entries[slot]!, _PAGE_RW, 0);
    expect(system.checkInvariants()).toEqual([
      `mm ${proc.mm.id}: vpn 0x${vpn.toString(16)} maps shared anonymous pfn ${pfn} writable`,
    ]);
  });

  it("names a VMA with both VM_HUGEPAGE and VM_NOHUGEPAGE", () => {
    const { system, proc, vpn } = oneProcess();
    const vma = proc.mm.findVma(vpn)!;
    vma.flags |= VM_HUGEPAGE | VM_NOHUGEPAGE;
    expect(system.checkInvariants()).toEqual([
      `mm ${proc.mm.id}: ${vma} has both VM_HUGEPAGE and VM_NOHUGEPAGE`,
    ]);
  });

  it("names a page on an LRU list its flags do not name", () => {
    const { system, k, pfn } = oneProcess();
    system.kernel.sched.call(
      "drain",
      (function* () {
        lruAddDrainAll(k);
      })(),
    );
    expect(system.checkInvariants()).toEqual([]);
    k.pages.set(pfn, PG_active);
    expect(system.checkInvariants()).toEqual([`LRU list 0: pfn ${pfn} belongs on list 1 by its flags`]);
  });

  it("says how many violations it did not list past its first 50", () => {
    const system = new System({ ram: "1MiB", devices: [] });
    const proc = system.spawn();
    const addr = proc.mmap(60 * P);
    proc.fillPages(addr, 60, 1);
    proc.fork();
    for (let pfn = 0; pfn < system.kernel.pages.capacity; pfn++)
      if (system.kernel.pages.isAnon(pfn)) system.kernel.pages.set(pfn, PG_anon_exclusive);
    const lines = system.checkInvariants();
    expect(lines).toHaveLength(51);
    expect(lines[50]).toBe("... and 10 more violations not listed");
  });
});
