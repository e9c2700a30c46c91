/**
 * Random interleavings of everything that can touch one buffer at once: two devices migrating
 * overlapping ranges to their memory, one migrating back, a CPU store and a CPU load. Whatever the
 * schedule, no thread deadlocks or trips an assertion, every page keeps its data (the stored page
 * its new value), and the whole state is consistent afterwards.
 */
import { describe, expect, it } from "vitest";
import { Rng } from "../../src/base/rng.js";
import { pteFrame } from "../../src/mm/pgtable.js";
import type { Kfn } from "../../src/sched/thread.js";
import { P, PROTOCOLS, setup } from "./helpers.js";

const NPAGES = 6;
const SEEDS = 60;

for (const protocol of PROTOCOLS) {
  describe(`concurrent migrations and CPU accesses [${protocol}]`, () => {
    it(`keep data and invariants over ${SEEDS} random schedules`, () => {
      for (let seed = 1; seed <= SEEDS; seed++) {
        const { system, proc, fd } = setup(protocol);
        const k = system.kernel;
        const sched = k.sched;
        const addr = proc.mmap(NPAGES * P);
        proc.fillPages(addr, NPAGES, 1);
        const other = system.device(1).open(proc);
        const vpn = addr / P;
        const rng = new Rng(seed);
        const stored = rng.below(NPAGES);
        const value = 0x5a000000 + seed;
        sched.setChooser((runnable) => rng.below(runnable.length));
        const threads = [
          sched.spawn("device 0 MIGRATE_TO_DEV", fd.mirror.cmdMigrateToDevice(vpn, NPAGES), 0),
          sched.spawn("device 1 MIGRATE_TO_DEV", other.mirror.cmdMigrateToDevice(vpn + 1, NPAGES - 2), 1),
          sched.spawn(
            "CPU store",
            (function* (): Kfn<number> {
              const pfn = yield* proc.accessPage(vpn + stored, true);
              if (pfn >= 0) k.store.fill(pfn, value);
              return pfn;
            })(),
            1,
          ),
          sched.spawn("device 0 MIGRATE_TO_SYS", fd.mirror.cmdMigrateToSystem(vpn, NPAGES), 0),
          sched.spawn("CPU load", proc.accessPage(vpn + rng.below(NPAGES), false), 1),
        ];
        const where = `seed ${seed}`;
        sched.runAll();
        sched.setChooser(() => 0);
        for (const thread of threads) expect(thread.state, `${where}: ${thread}`).toBe("done");
        const storedPfn = pteFrame(k.pt.read(proc.mm.root, vpn + stored));
        expect(k.store.holds(storedPfn, value), `${where}: the stored page`).toBe(true);
        const others = proc.checkPages(addr, NPAGES, 1).filter((index) => index !== stored);
        expect(others, where).toEqual([]);
        expect(system.checkInvariants(), where).toEqual([]);
      }
    });
  });
}
