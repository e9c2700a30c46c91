/**
 * Device eviction (migrate_device_range, from dmirror_fops_release or HMM_DMIRROR_RELEASE) racing an
 * munmap of the page it is evicting (modern). migrate_device_range takes the device page by pfn and
 * locks it; munmap, which needs no page lock, can zap its device-private entry before
 * migrate_device_unmap looks. The page, mapped by nothing, skips try_to_migrate and so keeps
 * PG_anon_exclusive, which folio_migrate_flags copies ("We can still have PG_anon_exclusive set on an
 * effectively unmapped and unreferenced first sub-pages", mm/migrate.c); finalize then frees the new
 * page, no migration entry being left to point at it. hmmsim asserted the bit was clear and failed
 * the evicting thread instead. Found by the surface property test.
 */
import { describe, expect, it } from "vitest";
import { Rng } from "../../src/base/rng.js";
import { sysMunmap } from "../../src/mm/mmap.js";
import { System } from "../../src/system.js";
import { P } from "./helpers.js";

function onePageOnDevice() {
  const system = new System({ ram: "512KiB", protocol: "modern", devices: [{ memory: "64KiB" }] });
  const proc = system.spawn();
  const fd = system.device(0).open(proc);
  const addr = proc.mmap(P);
  proc.fillPages(addr, 1, 7);
  expect(fd.migrateToDevice(addr, 1).cpages).toBe(1);
  return { system, proc, fd, addr };
}

describe("device eviction racing munmap of the page (modern)", () => {
  it("evicts or frees the page under every one of 100 random schedules, with nothing left behind", () => {
    for (let seed = 1; seed <= 100; seed++) {
      const { system, proc, fd, addr } = onePageOnDevice();
      const sched = system.kernel.sched;
      const release = sched.spawn("release", fd.mirror.cmdRelease(), 0);
      const munmap = sched.spawn("munmap", sysMunmap(system.kernel, proc.mm, addr, P), 1);
      const rng = new Rng(seed);
      sched.setChooser((runnable) => rng.below(runnable.length));
      sched.runAll();
      sched.setChooser(() => 0);
      const where = `seed ${seed}`;
      expect(release.state, where).toBe("done");
      expect(munmap.result, where).toBe(0);
      expect(system.checkInvariants(), where).toEqual([]);
      expect(system.devices[0]!.usedPages, where).toBe(0);
      expect(() => proc.read(addr, 1), where).toThrow(expect.objectContaining({ signal: "SIGSEGV" }));
    }
  });
});
