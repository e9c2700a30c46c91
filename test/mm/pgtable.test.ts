import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/base/assert.js";
import {
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  _PAGE_PROTNONE,
  _PAGE_RW,
  _PAGE_SPECIAL,
  describePte,
  isDeviceExclusiveEntry,
  isDevicePrivateEntry,
  isMigrationEntry,
  isSwapPte,
  isWritableDevicePrivateEntry,
  isWritableMigrationEntry,
  makeDevicePrivateEntry,
  makeMigrationEntry,
  mkPte,
  mkSwapPte,
  PageTables,
  pteDirty,
  pteFrame,
  pteNone,
  ptePresent,
  pteProtNone,
  pteSpecial,
  pteWithBits,
  pteWrite,
  pteYoung,
  SWP_DEVICE_EXCLUSIVE,
  SWP_MIGRATION_READ_EXCLUSIVE,
  swapType,
} from "../../src/mm/pgtable.js";

describe("PTE encoding", () => {
  it("a present PTE keeps its pfn and bits, for pfns far above 2^32", () => {
    for (const pfn of [0, 1, 12345, 2 ** 36 - 1]) {
      const pte = mkPte(pfn, _PAGE_RW | _PAGE_DIRTY);
      expect(pteFrame(pte)).toBe(pfn);
      expect(ptePresent(pte)).toBe(true);
      expect([pteWrite(pte), pteDirty(pte), pteYoung(pte), pteSpecial(pte), pteProtNone(pte)]).toEqual([
        true,
        true,
        false,
        false,
        false,
      ]);
      expect(isSwapPte(pte)).toBe(false);
    }
    expect(pteNone(0)).toBe(true);
    expect(pteNone(mkPte(0, 0))).toBe(false);
    expect(() => mkPte(-1, 0)).toThrow(AssertionError);
  });

  it("pteWithBits sets and clears bits without touching the pfn", () => {
    const pte = mkPte(777, _PAGE_RW);
    const changed = pteWithBits(pte, _PAGE_ACCESSED | _PAGE_PROTNONE, _PAGE_RW);
    expect(pteFrame(changed)).toBe(777);
    expect([pteWrite(changed), pteYoung(changed), pteProtNone(changed), ptePresent(changed)]).toEqual([
      false,
      true,
      true,
      true,
    ]);
    expect(pteWithBits(changed, _PAGE_RW, _PAGE_ACCESSED | _PAGE_PROTNONE)).toBe(pte);
  });

  it("swap-type entries carry type, offset and the old PTE's young and dirty bits", () => {
    const write = makeMigrationEntry(2 ** 33 + 5, true, true, true);
    expect([
      isSwapPte(write),
      ptePresent(write),
      isMigrationEntry(write),
      isWritableMigrationEntry(write),
    ]).toEqual([true, false, true, true]);
    expect(pteFrame(write)).toBe(2 ** 33 + 5);
    expect([pteYoung(write), pteDirty(write)]).toEqual([true, true]);
    const read = makeMigrationEntry(9, false);
    expect([isMigrationEntry(read), isWritableMigrationEntry(read), pteYoung(read)]).toEqual([
      true,
      false,
      false,
    ]);
    expect(isMigrationEntry(mkSwapPte(SWP_MIGRATION_READ_EXCLUSIVE, 9))).toBe(true);

    const dev = makeDevicePrivateEntry(4096, true);
    expect([isDevicePrivateEntry(dev), isWritableDevicePrivateEntry(dev), isMigrationEntry(dev)]).toEqual([
      true,
      true,
      false,
    ]);
    expect(isWritableDevicePrivateEntry(makeDevicePrivateEntry(4096, false))).toBe(false);
    const exclusive = mkSwapPte(SWP_DEVICE_EXCLUSIVE, 3);
    expect([isDeviceExclusiveEntry(exclusive), isDevicePrivateEntry(exclusive)]).toEqual([true, false]);
    expect(swapType(exclusive)).toBe(SWP_DEVICE_EXCLUSIVE);
    // A present PTE is none of these.
    const present = mkPte(3, _PAGE_RW);
    expect([
      isMigrationEntry(present),
      isDevicePrivateEntry(present),
      isDeviceExclusiveEntry(present),
    ]).toEqual([false, false, false]);
    expect(() => mkSwapPte(0, 1)).toThrow(/bad swap type/);
    expect(() => mkSwapPte(7, 1)).toThrow(/bad swap type/);
    expect(() => mkSwapPte(1, -1)).toThrow(/swap offset out of range/);
  });

  it("describes entries for people", () => {
    expect(describePte(0)).toBe("none");
    expect(describePte(mkPte(5, _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED))).toBe("pfn 5 WDA");
    expect(describePte(mkPte(0, _PAGE_SPECIAL))).toBe("pfn 0 RS");
    expect(describePte(makeMigrationEntry(7, true))).toBe("migration-write 7");
    expect(describePte(makeDevicePrivateEntry(8, false))).toBe("device-read 8");
  });
});

describe("PageTables", () => {
  it("has no entries until a table is made, and reads back what was stored", () => {
    const pt = new PageTables();
    const root = pt.newRoot();
    const vpn = 0x7_ffff_f000 - 1; // near the top of a 47-bit address space
    expect(pt.lookupTable(root, vpn)).toBe(-1);
    expect(pt.read(root, vpn)).toBe(0);
    const table = pt.ensureTable(root, vpn);
    expect(pt.lookupTable(root, vpn)).toBe(table);
    expect(pt.ensureTable(root, vpn)).toBe(table);
    pt.entries[PageTables.slot(table, vpn)] = mkPte(42, _PAGE_RW);
    expect(pteFrame(pt.read(root, vpn))).toBe(42);
    expect(pt.read(root, vpn - 1)).toBe(0);
  });

  it("one PTE table covers 512 aligned pages; roots are independent", () => {
    const pt = new PageTables();
    const a = pt.newRoot();
    const b = pt.newRoot();
    const t = pt.ensureTable(a, 1024);
    expect(pt.ensureTable(a, 1024 + 511)).toBe(t);
    expect(pt.ensureTable(a, 1024 + 512)).not.toBe(t);
    expect(pt.lookupTable(b, 1024)).toBe(-1);
    expect(pt.tablesInUse).toBe(2);
  });

  it("forEachTable visits tables in address order with their first vpn", () => {
    const pt = new PageTables();
    const root = pt.newRoot();
    const vpns = [2 ** 27 * 3 + 512 * 7, 0, 512 * 513, 2 ** 18 * 5];
    for (const vpn of vpns) pt.ensureTable(root, vpn);
    const seen: number[] = [];
    pt.forEachTable(root, (table, firstVpn) => {
      expect(pt.lookupTable(root, firstVpn)).toBe(table);
      seen.push(firstVpn);
    });
    expect(seen).toEqual([...vpns].sort((x, y) => x - y));
  });

  it("grows past its first pools and keeps earlier entries", () => {
    const pt = new PageTables();
    const root = pt.newRoot();
    for (let i = 0; i < 200; i++) {
      const table = pt.ensureTable(root, i * 512 * 512); // a new PMD and PTE table each time
      pt.entries[PageTables.slot(table, i * 512 * 512)] = mkPte(i + 1, 0);
    }
    for (let i = 0; i < 200; i++) expect(pteFrame(pt.read(root, i * 512 * 512))).toBe(i + 1);
  });

  it("freeRoot refuses tables that still map and reuses freed tables zeroed", () => {
    const pt = new PageTables();
    const root = pt.newRoot();
    const table = pt.ensureTable(root, 5);
    pt.entries[PageTables.slot(table, 5)] = mkPte(1, 0);
    expect(() => pt.freeRoot(root)).toThrow(/freeing a page table that still maps: pfn 1/);
    pt.entries[PageTables.slot(table, 5)] = 0;
    pt.entries[PageTables.slot(table, 6)] = 0;
    const fresh = new PageTables();
    const r1 = fresh.newRoot();
    const t1 = fresh.ensureTable(r1, 9);
    fresh.entries[PageTables.slot(t1, 9)] = mkPte(3, 0);
    fresh.entries[PageTables.slot(t1, 9)] = 0;
    fresh.freeRoot(r1);
    expect(fresh.tablesInUse).toBe(0);
    const r2 = fresh.newRoot();
    const t2 = fresh.ensureTable(r2, 9);
    expect(t2).toBe(t1);
    expect(fresh.read(r2, 9)).toBe(0);
    expect(fresh.tablesInUse).toBe(1);
  });
});
