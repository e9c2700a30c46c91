/**
 * Device-exclusive entries (make_device_exclusive, remove_device_exclusive_entry, as reworked in 6.15):
 * a CPU access revokes the device's atomic access and keeps the CPU's write; fork restores the entry
 * and shares the page copy-on-write; munmap frees what the entries mapped.
 */
import { describe, expect, it } from "vitest";
import { EINVAL, ENOMEM, EOPNOTSUPP, EPERM } from "../../src/base/errno.js";
import { PAGE_SIZE, TASK_SIZE } from "../../src/base/units.js";
import { lockPage, unlockPage } from "../../src/mm/filemap.js";
import { dupMm } from "../../src/mm/fork.js";
import type { MmStruct } from "../../src/mm/mm_types.js";
import { MAP_ANONYMOUS, MAP_SHARED } from "../../src/mm/mmap.js";
import { isDeviceExclusiveEntry, pteFrame } from "../../src/mm/pgtable.js";
import { type Kfn, PREEMPT } from "../../src/sched/thread.js";
import { System } from "../../src/system.js";
import { errnoOf } from "../support/errno-of.js";

const PAGES = 8;

function exclusiveSystem() {
  const system = new System({ ram: "16MiB", devices: [{ memory: "4MiB" }] });
  const proc = system.spawn();
  const fd = system.device(0).open(proc);
  const addr = proc.mmap(PAGES * PAGE_SIZE);
  proc.fillPages(addr, PAGES, 5);
  const back = new Uint8Array(PAGES * PAGE_SIZE);
  expect(fd.exclusive(addr, PAGES, back).cpages).toBe(PAGES);
  return { system, proc, fd, addr, back };
}

function exclusiveEntries(system: System, mmRoot: number, vpn: number, count: number): number {
  let found = 0;
  for (let i = 0; i < count; i++) if (isDeviceExclusiveEntry(system.kernel.pt.read(mmRoot, vpn + i))) found++;
  return found;
}

describe("device-exclusive entries", () => {
  it("replace the CPU's PTEs, keep mapcount and data, and are revoked by a CPU write that is kept", () => {
    const { system, proc, fd, addr, back } = exclusiveSystem();
    const vpn = addr / PAGE_SIZE;
    expect(exclusiveEntries(system, proc.mm.root, vpn, PAGES)).toBe(PAGES);
    expect(system.checkInvariants()).toEqual([]);
    expect(errnoOf(() => fd.checkExclusive(addr, PAGES))).toBe(EPERM);
    // The device read the data back; the CPU's reads revoke the device's access page by page.
    expect(back).toEqual(proc.read(addr, PAGES * PAGE_SIZE));
    expect(proc.checkPages(addr, PAGES, 5)).toEqual([]);
    expect(exclusiveEntries(system, proc.mm.root, vpn, PAGES)).toBe(0);
    fd.checkExclusive(addr, PAGES);
    // Again, and this time a store revokes page 0, and is kept.
    fd.exclusive(addr, 1);
    expect(errnoOf(() => fd.checkExclusive(addr, PAGES))).toBe(EPERM);
    proc.write(addr, new Uint8Array([1, 2, 3, 4]));
    expect(exclusiveEntries(system, proc.mm.root, vpn, PAGES)).toBe(0);
    expect([...proc.read(addr, 4)]).toEqual([1, 2, 3, 4]);
    fd.checkExclusive(addr, PAGES);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("are made ordinary again by fork, which then shares the pages copy-on-write", () => {
    const { system, proc, addr } = exclusiveSystem();
    const child = proc.fork();
    expect(exclusiveEntries(system, proc.mm.root, addr / PAGE_SIZE, PAGES)).toBe(0);
    child.write(addr, new Uint8Array(PAGE_SIZE).fill(0xee));
    expect(proc.checkPages(addr, PAGES, 5)).toEqual([]);
    expect(child.read(addr, 1)[0]).toBe(0xee);
    expect(child.checkPages(addr, PAGES, 5)).toEqual([0]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("fail a fork while one of their pages is locked (copy_nonpresent_pte's -EBUSY), with ENOMEM", () => {
    const { system, proc, addr } = exclusiveSystem();
    const k = system.kernel;
    const vpn = addr / PAGE_SIZE;
    const pfn = pteFrame(system.kernel.pt.read(proc.mm.root, vpn));
    const mms = k.mms.size;
    let forked: MmStruct | number = 0;
    // A kernel thread holds the page lock (as migrate_device_range would) across the fork.
    // The holder runs until it has the lock (its first PREEMPT), then the fork whenever it can.
    let locked = false;
    k.sched.setChooser((runnable) => {
      const fork = runnable.findIndex((thread) => thread.name === "fork");
      return locked && fork >= 0
        ? fork
        : Math.max(
            0,
            runnable.findIndex((thread) => thread.name === "holder"),
          );
    });
    k.sched.spawn(
      "holder",
      (function* (): Kfn<void> {
        yield* lockPage(k, pfn);
        locked = true;
        yield PREEMPT;
        unlockPage(k, pfn);
      })(),
    );
    k.sched.spawn(
      "fork",
      (function* (): Kfn<void> {
        yield PREEMPT;
        forked = yield* dupMm(k, proc.mm);
      })(),
    );
    k.sched.runAll();
    expect(forked).toBe(-ENOMEM);
    expect(k.mms.size).toBe(mms);
    // The parent is untouched: the entries it had not reached are still device-exclusive.
    expect(exclusiveEntries(system, proc.mm.root, vpn, PAGES)).toBe(PAGES);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("CHECK_EXCLUSIVE over the rest of user space (2^35 pages) answers from the mirror's entries, at once", () => {
    const { system, proc, fd, addr } = exclusiveSystem();
    const rest = (TASK_SIZE - addr) / PAGE_SIZE;
    expect(errnoOf(() => fd.checkExclusive(addr, rest))).toBe(EPERM);
    proc.write(addr, new Uint8Array(PAGES * PAGE_SIZE));
    expect(() => fd.checkExclusive(addr, rest)).not.toThrow();
    expect(system.checkInvariants()).toEqual([]);
  });

  it("are zapped by munmap, which frees their pages and the device's atomic mappings go with them", () => {
    const { system, proc, fd, addr } = exclusiveSystem();
    const vpn = addr / PAGE_SIZE;
    const pfns = Array.from({ length: PAGES }, (_, i) =>
      pteFrame(system.kernel.pt.read(proc.mm.root, vpn + i)),
    );
    proc.munmap(addr, PAGES * PAGE_SIZE);
    // Unmapped, and no reference left but the ones the checker accounts for (an LRU add batch's).
    for (const pfn of pfns) expect(system.kernel.pages.mapcount[pfn]).toBe(0);
    fd.checkExclusive(addr, PAGES);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("need anonymous memory (EOPNOTSUPP for a shared mapping) and the modern protocol (EINVAL)", () => {
    const system = new System({ ram: "16MiB", devices: [{ memory: "4MiB" }] });
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const shared = proc.mmap(PAGE_SIZE, { flags: MAP_SHARED | MAP_ANONYMOUS });
    expect(errnoOf(() => fd.exclusive(shared, 1))).toBe(EOPNOTSUPP);
    expect(system.checkInvariants()).toEqual([]);
    const old = new System({ ram: "16MiB", protocol: "4.14", devices: [{ memory: "4MiB" }] });
    const oldProc = old.spawn();
    const oldFd = old.device(0).open(oldProc);
    const a = oldProc.mmap(PAGE_SIZE);
    expect(errnoOf(() => oldFd.exclusive(a, 1))).toBe(EINVAL);
    expect(errnoOf(() => oldFd.checkExclusive(a, 1))).toBe(EINVAL);
  });

  it("may map a device-coherent page (make_device_exclusive asks only folio_test_anon), which the CPU then gets back", () => {
    // Found by the surface property: HMM_DMIRROR_EXCLUSIVE after a migration to coherent memory. The
    // kernel's make_device_exclusive (mm/rmap.c) refuses only pages that are not anonymous or are
    // hugetlb; a device-coherent page a migration put in an anonymous VMA is anonymous, so it gets
    // the entry, and remove_device_exclusive_entry (mm/memory.c) restores its PTE like any other.
    const system = new System({ ram: "16MiB", devices: [{ memory: "4MiB", type: "coherent" }] });
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(2 * PAGE_SIZE);
    proc.fillPages(addr, 2, 7);
    expect(fd.migrateToDevice(addr, 2).cpages).toBe(2);
    expect(fd.exclusive(addr, 2).cpages).toBe(2);
    const vpn = addr / PAGE_SIZE;
    expect(exclusiveEntries(system, proc.mm.root, vpn, 2)).toBe(2);
    expect(system.kernel.pages.isDeviceCoherent(pteFrame(system.kernel.pt.read(proc.mm.root, vpn)))).toBe(
      true,
    );
    expect(system.checkInvariants()).toEqual([]);
    expect(errnoOf(() => fd.checkExclusive(addr, 2))).toBe(EPERM);
    expect(proc.checkPages(addr, 2, 7)).toEqual([]);
    expect(() => fd.checkExclusive(addr, 2)).not.toThrow();
    expect(system.checkInvariants()).toEqual([]);
  });
});
