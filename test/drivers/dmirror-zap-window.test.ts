/**
 * Window (d) of DmirrorSwitches (src/drivers/dmirror_devmem.ts): MADV_DONTNEED, which takes mmap_lock
 * for read as HMM_DMIRROR_MIGRATE_TO_DEV does, zaps the migration entries of the range between collect
 * and dmirror_migrate_finalize_and_map. dmirror_interval_invalidate has nothing to erase yet;
 * finalize_and_map then mirrors the destination pages (lib/test_hmm.c asks no sequence there), and
 * migrate_vma_finalize, finding no migration entry to replace, frees them: the mirror keeps a freed
 * device page, which the checker names. The corrected driver (invalidateOnOwnMigration) mirrors none of
 * a chunk that another thread's invalidation overlapped. Found by the surface property test.
 */
import { describe, expect, it } from "vitest";
import { Rng } from "../../src/base/rng.js";
import { PAGE_SIZE } from "../../src/base/units.js";
import { sysMadvise } from "../../src/mm/madvise.js";
import { MADV_DONTNEED } from "../../src/mm/mmap.js";
import { System } from "../../src/system.js";

const NPAGES = 2;
const SCHEDULES = 60;

/** How many of SCHEDULES random schedules of the race leave a stale mirror entry; checks what the CPU reads. */
function race(corrected: boolean, protocol: "4.14" | "modern") {
  let staleRuns = 0;
  for (let seed = 1; seed <= SCHEDULES; seed++) {
    const system = new System({
      ram: "1MiB",
      protocol,
      devices: [{ memory: "64KiB" }],
      dmirror: { invalidateOnOwnMigration: corrected },
    });
    const proc = system.spawn();
    const addr = proc.mmap(NPAGES * PAGE_SIZE);
    proc.fillPages(addr, NPAGES, 5);
    const fd = system.device(0).open(proc);
    const sched = system.kernel.sched;
    const vpn = addr / PAGE_SIZE;
    const migrate = sched.spawn("migrate", fd.mirror.cmdMigrateToDevice(vpn, NPAGES), 0);
    const zap = sched.spawn("zap", sysMadvise(system.kernel, proc.mm, addr, PAGE_SIZE, MADV_DONTNEED), 1);
    const rng = new Rng(seed);
    sched.setChooser((runnable) => rng.below(runnable.length));
    sched.runAll();
    sched.setChooser(() => 0);
    expect(migrate.state).toBe("done");
    expect(zap.result).toBe(0);
    const stale = system.checkInvariants().filter((line) => line.startsWith("stale device mirror entry"));
    if (stale.length > 0) staleRuns++;
    else expect(system.checkInvariants(), `seed ${seed}`).toEqual([]);
    // Whatever the mirror says, the CPU reads a zeroed first page and the second page's data.
    expect(proc.checkPages(addr, NPAGES, 5), `seed ${seed}`).toEqual([0]);
    expect(proc.readU32(addr), `seed ${seed}`).toBe(0);
  }
  return staleRuns;
}

describe("MADV_DONTNEED racing HMM_DMIRROR_MIGRATE_TO_DEV", () => {
  for (const protocol of ["4.14", "modern"] as const) {
    it(`leaves a mirror entry of a freed device page under test_hmm.c in some schedules (${protocol})`, () => {
      expect(race(false, protocol)).toBeGreaterThan(0);
    });

    it(`leaves none with the corrected driver (${protocol})`, () => {
      expect(race(true, protocol)).toBe(0);
    });
  }
});
