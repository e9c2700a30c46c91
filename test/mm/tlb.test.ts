/**
 * The CPUs' TLBs: a walk fills the running CPU's TLB, a hit uses the cached pfn without looking at the
 * PTE, a write through a clean entry walks again, every kernel path that narrows a translation
 * flushes it, a write through a stale entry lands in the page the entry names, and the checker
 * reports entries that disagree with their PTE.
 */
import { describe, expect, it } from "vitest";
import { PAGE_SIZE } from "../../src/base/units.js";
import { trylockPage, unlockPage } from "../../src/mm/filemap.js";
import type { ProtocolVersion } from "../../src/mm/kernel.js";
import { MADV_DONTNEED, MADV_FREE, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ } from "../../src/mm/mman.js";
import {
  _PAGE_RW,
  isDevicePrivateEntry,
  isMigrationEntry,
  mkPte,
  pteDirty,
  pteFrame,
  pteWithBits,
} from "../../src/mm/pgtable.js";
import { removeMigrationPtes, tryToMigrate } from "../../src/mm/rmap.js";
import { TLB_ENTRIES } from "../../src/mm/tlb.js";
import type { Process } from "../../src/process.js";
import { System } from "../../src/system.js";

const P = PAGE_SIZE;

function small(protocol: ProtocolVersion = "modern", migrateSwitches = {}): System {
  return new System({
    ram: "4MiB",
    protocol,
    store: "tokens",
    devices: [{ memory: "256KiB" }],
    migrateSwitches,
    dmirror: { invalidateOnOwnMigration: true },
  });
}

/** One access to vpn on `cpu`, as a thread of its own: returns the pfn it reached. */
function access(system: System, proc: Process, vpn: number, write: boolean, cpu: number): number {
  return system.kernel.sched.call("access", proc.accessPage(vpn, write), cpu);
}

/** The entry `cpu` caches for vpn of proc: { pfn, writable, dirty } or null. */
function cached(system: System, proc: Process, vpn: number, cpu = proc.cpu) {
  const value = system.kernel.tlb.lookup(cpu, proc.mm.id, vpn);
  if (value < 0) return null;
  return { pfn: Math.floor(value / 4), writable: (value & 2) !== 0, dirty: (value & 1) !== 0 };
}

function pteAt(system: System, proc: Process, vpn: number): number {
  return system.kernel.pt.read(proc.mm.root, vpn);
}

describe("TLB fills and hits", () => {
  it("a write fills the CPU's TLB writable and dirty; a hit ignores the PTE", () => {
    const system = small();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    const vpn = addr / P;
    proc.fillPages(addr, 1, 7);
    const pfn = pteFrame(pteAt(system, proc, vpn));
    expect(cached(system, proc, vpn)).toEqual({ pfn, writable: true, dirty: true });
    expect(cached(system, proc, vpn, 1 - proc.cpu)).toBeNull();
    // Point the PTE elsewhere behind the TLB's back: the CPU still reaches the cached page.
    const k = system.kernel;
    const table = k.pt.lookupTable(proc.mm.root, vpn);
    const other = k.ram.allocPage();
    k.pt.entries[table * 512 + (vpn & 511)] = mkPte(other, _PAGE_RW | 4 | 8);
    expect(access(system, proc, vpn, false, proc.cpu)).toBe(pfn);
    // Another CPU has no entry, so it walks and reaches the PTE's page.
    expect(access(system, proc, vpn, false, 1 - proc.cpu)).toBe(other);
  });

  it("a write through a clean entry walks and sets the PTE's dirty bit", () => {
    const system = small();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    const vpn = addr / P;
    proc.fillPages(addr, 1, 7);
    proc.madvise(addr, P, MADV_FREE);
    expect(pteDirty(pteAt(system, proc, vpn))).toBe(false);
    expect(cached(system, proc, vpn)).toBeNull(); // MADV_FREE flushed the dirty entry
    access(system, proc, vpn, false, proc.cpu);
    expect(cached(system, proc, vpn)).toMatchObject({ writable: true, dirty: false });
    access(system, proc, vpn, true, proc.cpu);
    expect(pteDirty(pteAt(system, proc, vpn))).toBe(true);
    expect(cached(system, proc, vpn)).toMatchObject({ writable: true, dirty: true });
  });

  it("a write through a read-only entry faults and drops it", () => {
    const system = small();
    const proc = system.spawn();
    const addr = proc.mmap(P);
    const vpn = addr / P;
    proc.touch(addr, 1, false); // the zero page, read-only
    expect(cached(system, proc, vpn)).toMatchObject({ writable: false });
    proc.touch(addr, 1, true);
    const pfn = pteFrame(pteAt(system, proc, vpn));
    expect(cached(system, proc, vpn)).toEqual({ pfn, writable: true, dirty: true });
    expect(system.checkInvariants()).toEqual([]);
  });

  it("holds at most TLB_ENTRIES entries per CPU, evicting by index", () => {
    const system = small();
    const proc = system.spawn();
    const pages = TLB_ENTRIES * 2;
    const addr = proc.mmap(pages * P);
    proc.fillPages(addr, pages, 1);
    expect(system.kernel.tlb.size).toBe(TLB_ENTRIES);
    expect(proc.checkPages(addr, pages, 1)).toEqual([]);
  });
});

describe("TLB flushes where the kernel flushes", () => {
  /** A process with one written page cached on both CPUs. */
  function cachedOnBoth(protocol: ProtocolVersion = "modern") {
    const system = small(protocol);
    const proc = system.spawn();
    const addr = proc.mmap(2 * P);
    const vpn = addr / P;
    proc.fillPages(addr, 2, 3);
    access(system, proc, vpn, false, 1 - proc.cpu);
    expect(cached(system, proc, vpn)).not.toBeNull();
    expect(cached(system, proc, vpn, 1 - proc.cpu)).not.toBeNull();
    const gone = () => cached(system, proc, vpn) === null && cached(system, proc, vpn, 1 - proc.cpu) === null;
    return { system, proc, addr, vpn, gone };
  }

  it("munmap (zap_pte_range)", () => {
    const { proc, addr, gone, system } = cachedOnBoth();
    proc.munmap(addr, P);
    expect(gone()).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("MADV_DONTNEED", () => {
    const { proc, addr, gone, system } = cachedOnBoth();
    proc.madvise(addr, P, MADV_DONTNEED);
    expect(gone()).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("mprotect (change_protection, then flush_tlb_range)", () => {
    const { proc, addr, gone, system } = cachedOnBoth();
    proc.mprotect(addr, P, PROT_READ);
    expect(gone()).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("mremap (move_ptes)", () => {
    const { proc, addr, gone, system } = cachedOnBoth();
    const target = proc.mmap(P);
    proc.mremap(addr, P, P, MREMAP_MAYMOVE | MREMAP_FIXED, target);
    expect(gone()).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("fork (flush_tlb_mm of the parent after write-protecting for COW)", () => {
    const { proc, vpn, gone, system } = cachedOnBoth();
    const child = proc.fork();
    expect(gone()).toBe(true);
    // The parent's next write copies; the child keeps the old contents.
    access(system, proc, vpn, true, proc.cpu);
    expect(child.checkPages(vpn * P, 2, 3)).toEqual([]);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("do_wp_page's copy (ptep_clear_flush) drops other CPUs' entries of the old page", () => {
    const { proc, vpn, system } = cachedOnBoth();
    const child = proc.fork();
    const shared = pteFrame(pteAt(system, proc, vpn));
    access(system, proc, vpn, false, 1 - proc.cpu);
    expect(cached(system, proc, vpn, 1 - proc.cpu)).toMatchObject({ pfn: shared, writable: false });
    const copy = access(system, proc, vpn, true, proc.cpu);
    expect(copy).not.toBe(shared);
    expect(cached(system, proc, vpn, 1 - proc.cpu)).toBeNull();
    expect(system.checkInvariants()).toEqual([]);
    child.exit();
  });

  it("exit (every entry of the mm)", () => {
    const { proc, system } = cachedOnBoth();
    proc.exit();
    expect(system.kernel.tlb.size).toBe(0);
    expect(system.checkInvariants()).toEqual([]);
  });

  for (const protocol of ["4.14", "modern"] as const) {
    it(`migration to the device (migrate_vma_collect_pmd, ${protocol})`, () => {
      const { proc, addr, vpn, gone, system } = cachedOnBoth(protocol);
      const fd = system.device(0).open(proc);
      fd.migrateToDevice(addr, 1);
      expect(isDevicePrivateEntry(pteAt(system, proc, vpn))).toBe(true);
      expect(gone()).toBe(true);
      expect(system.checkInvariants()).toEqual([]);
    });
  }

  it("try_to_migrate_one (ptep_clear_flush)", () => {
    const { proc, vpn, gone, system } = cachedOnBoth();
    const k = system.kernel;
    const pfn = pteFrame(pteAt(system, proc, vpn));
    let flushed = false;
    k.sched.call(
      "unmap and remap",
      (function* () {
        expect(trylockPage(k, pfn)).toBe(true);
        yield* tryToMigrate(k, pfn);
        flushed = isMigrationEntry(pteAt(system, proc, vpn)) && gone();
        yield* removeMigrationPtes(k, pfn, pfn);
        unlockPage(k, pfn);
      })(),
    );
    expect(flushed).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });
});

describe("a stale TLB entry", () => {
  it("takes a write to the page it names while collect has not flushed yet (4.14 order)", () => {
    const system = small("modern", { collectFlushUnderPtl: false });
    const proc = system.spawn();
    const addr = proc.mmap(P);
    const vpn = addr / P;
    proc.fillPages(addr, 1, 3);
    const old = pteFrame(pteAt(system, proc, vpn));
    const k = system.kernel;
    const fd = system.device(0).open(proc);
    const sched = k.sched;
    let storedAt = -1;
    const migrator = sched.spawn("MIGRATE_TO_DEV", fd.mirror.cmdMigrateToDevice(vpn, 1), 1);
    const storer = sched.spawn(
      "store",
      (function* () {
        storedAt = yield* proc.accessPage(vpn, true);
        k.store.fill(storedAt, 0x77);
      })(),
      proc.cpu,
    );
    // The migration runs until collect is about to flush; then the store runs to its end.
    sched.setChooser((runnable) => {
      const flushNext = migrator.label === "migrate_vma_collect_pmd: flush_tlb_range";
      const want = flushNext && storer.live ? storer : migrator;
      const index = runnable.indexOf(want);
      return Math.max(index, 0);
    });
    let sawMigrationEntry = false;
    while (sched.step()) {
      if (storedAt >= 0 && !sawMigrationEntry) {
        sawMigrationEntry = isMigrationEntry(pteAt(system, proc, vpn));
      }
    }
    sched.setChooser(() => 0);
    expect(storedAt).toBe(old);
    expect(sawMigrationEntry).toBe(true);
    // The copy came after the flush, so the device page has the store (no MADV_DONTNEED raced here).
    const dev = pteAt(system, proc, vpn);
    expect(isDevicePrivateEntry(dev)).toBe(true);
    expect(k.store.holds(pteFrame(dev), 0x77)).toBe(true);
    expect(system.checkInvariants()).toEqual([]);
  });

  it("is reported by the checker: another pfn, writable where the PTE is not, no present PTE", () => {
    const system = small();
    const proc = system.spawn();
    const addr = proc.mmap(3 * P);
    const vpn = addr / P;
    proc.fillPages(addr, 3, 1);
    const k = system.kernel;
    const table = k.pt.lookupTable(proc.mm.root, vpn);
    const slot = (v: number) => table * 512 + (v & 511);
    expect(system.checkInvariants()).toEqual([]);
    // A kernel path that forgot its flush: moved, write-protected, unmapped.
    const other = k.ram.allocPage();
    k.pt.entries[slot(vpn)] = mkPte(other, _PAGE_RW | 4 | 8);
    k.pt.entries[slot(vpn + 1)] = pteWithBits(k.pt.entries[slot(vpn + 1)]!, 0, _PAGE_RW);
    const third = k.pt.entries[slot(vpn + 2)]!;
    k.pt.entries[slot(vpn + 2)] = 0;
    const lines = system.checkInvariants().filter((line) => line.startsWith("stale TLB entry"));
    expect(lines).toEqual([
      expect.stringMatching(/vpn 0x[0-9a-f]+ -> pfn \d+ writable dirty, but the PTE names pfn/),
      expect.stringMatching(/writable dirty, but the PTE is read-only/),
      expect.stringMatching(/, but the PTE is none/),
    ]);
    // And the write through the first lands in the page the TLB names, not the PTE's.
    const cachedPfn = cached(system, proc, vpn)!.pfn;
    expect(access(system, proc, vpn, true, proc.cpu)).toBe(cachedPfn);
    expect(cachedPfn).not.toBe(other);
    k.pt.entries[slot(vpn + 2)] = third;
  });
});
