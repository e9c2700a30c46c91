import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "../../src/base/units.js";
import { lockPage, unlockPage } from "../../src/mm/filemap.js";
import { MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MREMAP_MAYMOVE } from "../../src/mm/mmap.js";
import {
  isMigrationEntry,
  isWritableMigrationEntry,
  pteDirty,
  pteFrame,
  pteWrite,
} from "../../src/mm/pgtable.js";
import { pageMapped, pteMapsPfn, removeMigrationPtes, rmapTargets, tryToMigrate } from "../../src/mm/rmap.js";
import type { Process } from "../../src/process.js";
import type { Kfn } from "../../src/sched/thread.js";
import type { System } from "../../src/system.js";
import { drain, inThread, pageOf, pfnAt, pteAt, smallSystem } from "./helpers.js";

const P = PAGE_SIZE;

function targetsOf(system: System, pfn: number): { pid: number; addr: number }[] {
  const pidOf = new Map(system.liveProcesses().map((proc) => [proc.mm, proc.pid]));
  return rmapTargets(system.kernel, pfn)
    .map(({ vma, vpn }) => ({ pid: pidOf.get(vma.mm) ?? -1, addr: vpn * P }))
    .sort((a, b) => a.pid - b.pid);
}

/**
 * Unmaps pfn everywhere with migration entries and maps it back, as a failed migration does, holding
 * a reference and the page lock throughout. `during` sees the PTEs in between.
 */
function unmapAndRemap(system: System, pfn: number, during: () => void): void {
  const k = system.kernel;
  inThread(
    system,
    (function* (): Kfn<void> {
      k.pages.get(pfn);
      yield* lockPage(k, pfn);
      yield* tryToMigrate(k, pfn);
      during();
      yield* removeMigrationPtes(k, pfn, pfn);
      unlockPage(k, pfn);
      k.pages.put(pfn);
    })(),
  );
}

describe("rmap walk", () => {
  it("finds an anonymous page in its process, then in both processes after fork", () => {
    const system = smallSystem();
    const parent = system.spawn();
    const addr = parent.mmap(2 * P);
    parent.writeU32(addr + P, 1);
    const pfn = pfnAt(parent, addr + P);
    expect(targetsOf(system, pfn)).toEqual([{ pid: parent.pid, addr: addr + P }]);
    const child = parent.fork();
    expect(targetsOf(system, pfn)).toEqual([
      { pid: parent.pid, addr: addr + P },
      { pid: child.pid, addr: addr + P },
    ]);
    child.munmap(addr, 2 * P);
    expect(targetsOf(system, pfn)).toEqual([{ pid: parent.pid, addr: addr + P }]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("finds a page after mremap moved it, and after a split of its VMA", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(3 * P, { addr: 0x10_0000_0000, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    proc.write(addr, pageOf(1, 3));
    const pfn = pfnAt(proc, addr + 2 * P);
    proc.mmap(P, { addr: addr + 3 * P, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
    const moved = proc.mremap(addr, 3 * P, 4 * P, MREMAP_MAYMOVE);
    expect(targetsOf(system, pfn)).toEqual([{ pid: proc.pid, addr: moved + 2 * P }]);
    proc.munmap(moved + P, P);
    expect(targetsOf(system, pfn)).toEqual([{ pid: proc.pid, addr: moved + 2 * P }]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("finds a file page in every process that maps it", () => {
    const system = smallSystem();
    const file = system.createFile("f", 2 * P);
    const a = system.spawn();
    const b = system.spawn();
    const addrA = a.mmap(2 * P, { file });
    const addrB = b.mmap(P, { file, offset: P });
    a.touch(addrA, 2, true);
    const pfn = pfnAt(a, addrA + P);
    expect(targetsOf(system, pfn)).toEqual([
      { pid: a.pid, addr: addrA + P },
      { pid: b.pid, addr: addrB },
    ]);
    // rmap lists where the page may be mapped; only a's PTE maps it until b touches it.
    expect(system.kernel.pages.mapcount[pfn]).toBe(1);
    b.touch(addrB, 1, false);
    expect(pfnAt(b, addrB)).toBe(pfn);
    expect(system.kernel.pages.mapcount[pfn]).toBe(2);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a page nobody maps has no rmap targets", () => {
    const system = smallSystem();
    expect(rmapTargets(system.kernel, 5)).toEqual([]);
    expect(pageMapped(system.kernel, 5)).toBe(false);
  });
});

describe("try_to_migrate and remove_migration_ptes", () => {
  it("replace a writable mapping with a writable migration entry and put it back", () => {
    const system = smallSystem();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    proc.write(addr, pageOf(0x3c));
    drain(system);
    const pfn = pfnAt(proc, addr);
    const pages = system.kernel.pages;
    unmapAndRemap(system, pfn, () => {
      const entry = pteAt(proc, addr);
      expect(isMigrationEntry(entry)).toBe(true);
      expect(isWritableMigrationEntry(entry)).toBe(true);
      expect(pteFrame(entry)).toBe(pfn);
      expect(pteMapsPfn(entry, pfn)).toBe(false);
      expect(pageMapped(system.kernel, pfn)).toBe(false);
      // The mapping's reference is gone; ours remains.
      expect(pages.refcount[pfn]).toBe(1);
      expect(proc.mm.rssAnon).toBe(0);
    });
    const pte = pteAt(proc, addr);
    expect(pteFrame(pte)).toBe(pfn);
    expect(pteWrite(pte) && pteDirty(pte)).toBe(true);
    expect([pages.refcount[pfn], pages.mapcount[pfn]]).toEqual([1, 1]);
    expect(proc.read(addr, P)).toEqual(pageOf(0x3c));
    expect(system.checkInvariants()).toEqual([]);
  });

  it("unmap every process that shares a COW page, read-only, and map them all back", () => {
    const system = smallSystem();
    const parent = system.spawn();
    const addr = parent.mmap(P);
    parent.writeU32(addr, 42);
    const child = parent.fork();
    drain(system);
    const pfn = pfnAt(parent, addr);
    unmapAndRemap(system, pfn, () => {
      for (const proc of [parent, child]) {
        expect(isMigrationEntry(pteAt(proc, addr))).toBe(true);
        expect(isWritableMigrationEntry(pteAt(proc, addr))).toBe(false);
      }
      expect(system.kernel.pages.mapcount[pfn]).toBe(0);
    });
    expect([pfnAt(parent, addr), pfnAt(child, addr)]).toEqual([pfn, pfn]);
    expect(system.kernel.pages.mapcount[pfn]).toBe(2);
    // Still COW: the child's write copies.
    child.writeU32(addr, 43);
    expect([parent.readU32(addr), child.readU32(addr)]).toEqual([42, 43]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a CPU access during the migration waits and then sees the data", () => {
    const system = smallSystem();
    const proc: Process = system.spawn();
    const addr = proc.mmap(P);
    proc.writeU32(addr, 7);
    const pfn = pfnAt(proc, addr);
    const k = system.kernel;
    const roundRobin = (runnable: readonly unknown[], i: number) => i % runnable.length;
    k.sched.setChooser(roundRobin);
    const log: string[] = [];
    k.sched.spawn(
      "migrator",
      (function* (): Kfn<void> {
        k.pages.get(pfn);
        yield* lockPage(k, pfn);
        yield* tryToMigrate(k, pfn);
        log.push("unmapped");
        for (let i = 0; i < 4; i++) yield 0;
        yield* removeMigrationPtes(k, pfn, pfn);
        log.push("remapped");
        unlockPage(k, pfn);
        k.pages.put(pfn);
      })(),
    );
    k.sched.spawn(
      "cpu",
      (function* (): Kfn<void> {
        yield 0;
        yield 0;
        const got = yield* proc.accessPage(addr / P, false);
        log.push(`access got pfn ${got}`);
      })(),
    );
    k.sched.runAll();
    expect(log).toEqual(["unmapped", "remapped", `access got pfn ${pfn}`]);
    expect(k.stats.migrationWaits).toBeGreaterThan(0);
    expect(system.checkInvariants()).toEqual([]);
  });
});
