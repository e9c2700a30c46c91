/**
 * PageAnonExclusive travels through migration entries, as in today's kernel: unmapping for migration
 * clears it on the page (folio_try_share_anon_rmap_pte) and records it in the entry (writable or
 * readable-exclusive), fork makes such an entry readable in both processes (copy_nonpresent_pte), and
 * remove_migration_pte maps the new page exclusively only from a non-readable entry. Before this, the
 * flag stayed on the page and was copied to the new one, so an eviction racing fork left parent and
 * child mapping one page marked exclusive, and the child's write landed in the parent's memory.
 */
import { describe, expect, it } from "vitest";
import { Rng } from "../../src/base/rng.js";
import { dupMm } from "../../src/mm/fork.js";
import { type MigrateVmaArgs, migrateVmaFinalize, migrateVmaSetup } from "../../src/mm/migrate_device.js";
import { MIGRATE_VMA_SELECT_SYSTEM } from "../../src/mm/migrate_pfn.js";
import type { MmStruct } from "../../src/mm/mm_types.js";
import { PROT_NONE, PROT_READ } from "../../src/mm/mmap.js";
import { PG_anon_exclusive } from "../../src/mm/page.js";
import {
  isMigrationEntry,
  isReadableExclusiveMigrationEntry,
  isReadableMigrationEntry,
  isWritableMigrationEntry,
  pteDirty,
  pteFrame,
  ptePresent,
  pteProtNone,
  pteYoung,
} from "../../src/mm/pgtable.js";
import type { Process } from "../../src/process.js";
import { type Kfn, PREEMPT } from "../../src/sched/thread.js";
import { System } from "../../src/system.js";
import { P, PROTOCOLS, pfnAt, pteAt, setup } from "./helpers.js";

/**
 * One written page on device 0, and the device file whose close evicts it (modern), in a system small
 * enough that hundreds of schedules cost little.
 */
function onePageOnDevice() {
  const system = new System({ ram: "512KiB", protocol: "modern", devices: [{ memory: "64KiB" }] });
  const proc = system.spawn();
  const s = { system, proc, fd: system.device(0).open(proc) };
  const addr = s.proc.mmap(P);
  s.proc.fillPages(addr, 1, 7);
  expect(s.fd.migrateToDevice(addr, 1).cpages).toBe(1);
  return { ...s, addr };
}

/**
 * Runs close() of the device file (dmirror_fops_release evicting the device's memory through
 * migrate_device_range) and fork() as two threads, in the order `steps` names at each choice (then
 * lowest id first); returns the child.
 */
function evictRacingFork(s: ReturnType<typeof onePageOnDevice>, choose: (step: number) => "close" | "fork") {
  const sched = s.system.kernel.sched;
  let step = 0;
  const close = sched.spawn("close", s.fd.closeFd(), 0);
  const fork = sched.spawn("fork", dupMm(s.system.kernel, s.proc.mm), 1);
  sched.setChooser((runnable) => {
    const wanted = choose(step++) === "close" ? close : fork;
    const index = runnable.indexOf(wanted);
    return Math.max(0, index);
  });
  sched.runAll();
  sched.setChooser(() => 0);
  expect(close.state).toBe("done");
  expect(fork.state).toBe("done");
  return s.system.adoptProcess(fork.result as MmStruct);
}

describe("device eviction racing fork (modern)", () => {
  it("the recorded schedule that lost the parent's data: the child's write stays in the child", () => {
    // Found by 300 random schedules on the code before the fix (54 of them lost the write): fork takes
    // mmap_lock and copies the migration entry eviction installed; finalize then maps the new page in
    // both. The child's write must copy the page, not reuse it.
    const s = onePageOnDevice();
    const order = ["fork", "fork", "fork", "close", "close", "fork", "close"] as const;
    const child = evictRacingFork(s, (step) => order[step] ?? "close");
    expect(s.system.checkInvariants()).toEqual([]);
    const shared = pfnAt(s.proc, s.addr);
    expect(pfnAt(child, s.addr)).toBe(shared);
    expect(s.system.kernel.pages.has(shared, PG_anon_exclusive)).toBe(false);
    child.fillPages(s.addr, 1, 9);
    expect(s.proc.checkPages(s.addr, 1, 7)).toEqual([]);
    expect(child.checkPages(s.addr, 1, 9)).toEqual([]);
    expect(s.system.checkInvariants()).toEqual([]);
  });

  it("the recorded schedule that stranded a migration entry in the child: finalize reaches it", () => {
    // Before the fix remove_migration_ptes walked a list of VMAs taken before it yielded, so the child's
    // VMA, linked by fork meanwhile, was never visited and its copy of the entry stayed: every access
    // by the child waited on it forever.
    const s = onePageOnDevice();
    const order = ["fork", "close", "close", "fork", "fork", "fork"] as const;
    const child = evictRacingFork(s, (step) => order[step] ?? "close");
    expect(isMigrationEntry(pteAt(child, s.addr))).toBe(false);
    expect(child.checkPages(s.addr, 1, 7)).toEqual([]);
    expect(s.system.checkInvariants()).toEqual([]);
  });

  it("keeps both processes' data and every invariant over 300 random schedules", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const s = onePageOnDevice();
      const rng = new Rng(seed);
      const child = evictRacingFork(s, () => (rng.below(2) === 0 ? "close" : "fork"));
      const where = `seed ${seed}`;
      expect(s.system.checkInvariants(), where).toEqual([]);
      child.fillPages(s.addr, 1, 9);
      expect(s.proc.checkPages(s.addr, 1, 7), where).toEqual([]);
      s.proc.fillPages(s.addr, 1, 11);
      expect(child.checkPages(s.addr, 1, 9), where).toEqual([]);
      expect(s.system.checkInvariants(), where).toEqual([]);
    }
  });
});

/**
 * Runs migrate_vma_setup over one page, then `between` while the page is unmapped (its migration entry
 * in place), then migrate_vma_finalize with no destination, which restores the page.
 */
function withMigrationEntry(system: System, proc: Process, addr: number, between: () => void): void {
  const ctx = system.migrateContext;
  const sched = system.kernel.sched;
  const args: MigrateVmaArgs = {
    vma: proc.mm.findVma(addr / P),
    start: addr,
    end: addr + P,
    src: new Float64Array(1),
    dst: new Float64Array(1),
    pgmapOwner: system.device(0).driver,
    flags: MIGRATE_VMA_SELECT_SYSTEM,
  };
  let setUp = false;
  let released = false;
  const migration = sched.spawn(
    "migration",
    (function* (): Kfn<void> {
      expect(yield* migrateVmaSetup(ctx, args)).toBe(0);
      setUp = true;
      // Bounded by the test: `between` runs to completion while this waits.
      while (!released) yield PREEMPT;
      yield* migrateVmaFinalize(ctx, args);
    })(),
  );
  // A second thread keeps the scheduler contended, so setup stops at its scheduling points.
  const idle = sched.spawn(
    "idle",
    (function* (): Kfn<void> {
      while (!released) yield PREEMPT;
    })(),
  );
  while (!setUp) sched.step();
  expect(migration.live && idle.live).toBe(true);
  const pending = [migration, idle];
  // `between` makes plain calls, which the scheduler runs as their own threads to completion while these
  // two wait (a plain call's thread is the only one the chooser picks until it finishes).
  sched.setChooser((runnable) => {
    const index = runnable.findIndex((thread) => !pending.includes(thread));
    return Math.max(0, index);
  });
  between();
  released = true;
  sched.setChooser(() => 0);
  sched.runAll();
}

describe("migration entries carry exclusivity", () => {
  it("collect clears PG_anon_exclusive and installs a writable entry for a writable exclusive page", () => {
    const { system, proc } = setup("modern");
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 3);
    const pfn = pfnAt(proc, addr);
    expect(system.kernel.pages.has(pfn, PG_anon_exclusive)).toBe(true);
    withMigrationEntry(system, proc, addr, () => {
      const pte = pteAt(proc, addr);
      expect(isWritableMigrationEntry(pte)).toBe(true);
      expect(system.kernel.pages.has(pfn, PG_anon_exclusive)).toBe(false);
      expect(system.checkInvariants()).toEqual([]);
    });
    // Restored from a writable entry: exclusive again, so a write reuses the page.
    expect(pfnAt(proc, addr)).toBe(pfn);
    expect(system.kernel.pages.has(pfn, PG_anon_exclusive)).toBe(true);
    proc.fillPages(addr, 1, 4);
    expect(pfnAt(proc, addr)).toBe(pfn);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("a read-only exclusive page gets a readable-exclusive entry, and mprotect keeps it so", () => {
    const { system, proc } = setup("modern");
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 3);
    proc.mprotect(addr, P, PROT_READ);
    const pfn = pfnAt(proc, addr);
    withMigrationEntry(system, proc, addr, () => {
      expect(isReadableExclusiveMigrationEntry(pteAt(proc, addr))).toBe(true);
    });
    expect(system.kernel.pages.has(pfn, PG_anon_exclusive)).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("mprotect turns a writable migration entry of an anonymous page into a readable-exclusive one, keeping young and dirty", () => {
    const { system, proc } = setup("modern");
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 3);
    withMigrationEntry(system, proc, addr, () => {
      expect(isWritableMigrationEntry(pteAt(proc, addr))).toBe(true);
      proc.mprotect(addr, P, PROT_READ);
      const pte = pteAt(proc, addr);
      expect(isReadableExclusiveMigrationEntry(pte)).toBe(true);
      expect(pteYoung(pte) && pteDirty(pte)).toBe(true);
    });
    // change_pte_range's readable-exclusive entry: restored exclusive and read-only.
    const pte = pteAt(proc, addr);
    expect(ptePresent(pte)).toBe(true);
    expect(system.kernel.pages.has(pteFrame(pte), PG_anon_exclusive)).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("fork makes a writable migration entry readable in both, keeping its young and dirty bits; the restored page is shared", () => {
    const { system, proc } = setup("modern");
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 3);
    const pfn = pfnAt(proc, addr);
    let child: Process | null = null;
    withMigrationEntry(system, proc, addr, () => {
      child = proc.fork();
      for (const p of [proc, child]) {
        const pte = pteAt(p, addr);
        expect(isReadableMigrationEntry(pte)).toBe(true);
        expect(pteFrame(pte)).toBe(pfn);
        expect(pteYoung(pte) && pteDirty(pte)).toBe(true);
      }
    });
    const forked = child as unknown as Process;
    expect(pfnAt(proc, addr)).toBe(pfn);
    expect(pfnAt(forked, addr)).toBe(pfn);
    expect(system.kernel.pages.has(pfn, PG_anon_exclusive)).toBe(false);
    expect(system.checkInvariants()).toEqual([]);
    // Copy-on-write holds: each side's write is its own.
    forked.fillPages(addr, 1, 5);
    expect(proc.checkPages(addr, 1, 3)).toEqual([]);
    expect(forked.checkPages(addr, 1, 5)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe.each(PROTOCOLS)("fork under PROT_NONE [%s]", (protocol) => {
  it("copies a pinned exclusive page for the child with an inaccessible PTE (copy_present_page uses vm_page_prot)", () => {
    const { system, proc } = setup(protocol);
    const addr = proc.mmap(P);
    proc.fillPages(addr, 1, 6);
    const pinned = proc.pinPages(addr, 1, true);
    proc.mprotect(addr, P, PROT_NONE);
    const child = proc.fork();
    const pte = pteAt(child, addr);
    expect(ptePresent(pte)).toBe(true);
    expect(pteFrame(pte)).not.toBe(pinned[0]);
    expect(pteProtNone(pte)).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
    // Once the child may read, it sees the copy.
    child.mprotect(addr, P, PROT_READ);
    expect(child.checkPages(addr, 1, 6)).toEqual([]);
    proc.unpinPages(pinned);
    expect(system.checkInvariants()).toEqual([]);
  });
});
