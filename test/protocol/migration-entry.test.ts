/**
 * No write is lost while a page is unmapped for migration: a CPU that touches the page meanwhile finds
 * a migration entry, waits for the migration to finish (migration_entry_wait), retries, and stores into
 * whichever page the PTE then maps. The migration runs as one thread and the CPU store as another;
 * a seeded chooser interleaves them differently for each seed.
 */
import { describe, expect, it } from "vitest";
import { Rng } from "../../src/base/rng.js";
import type { Kfn } from "../../src/sched/thread.js";
import { P, PROTOCOLS, setup } from "./helpers.js";

const NPAGES = 8;
const TARGET = 3;
const VALUE = 0xabcd1234;
const SEEDS = 100;

for (const protocol of PROTOCOLS) {
  describe(`CPU write during a migration [${protocol}]`, () => {
    it(`is never lost, over ${SEEDS} schedules, and some schedules wait on a migration entry`, () => {
      let schedulesThatWaited = 0;
      for (let seed = 1; seed <= SEEDS; seed++) {
        const { system, proc, fd } = setup(protocol);
        const k = system.kernel;
        const sched = k.sched;
        const addr = proc.mmap(NPAGES * P);
        proc.fillPages(addr, NPAGES, 3);
        const vpn = addr / P + TARGET;

        // The migration runs alone for a random number of choices, then the two threads interleave
        // at random: this reaches the window where the migration entries are installed.
        const rng = new Rng(seed);
        const head = rng.below(40);
        let migrationId = -1;
        sched.setChooser((runnable, choice) => {
          const migration = runnable.findIndex((thread) => thread.id === migrationId);
          if (choice < head && migration >= 0) return migration;
          return rng.below(runnable.length);
        });
        const waitsBefore = k.stats.migrationWaits;
        const migration = sched.spawn(
          "MIGRATE_TO_DEV",
          fd.mirror.cmdMigrateToDevice(addr / P, NPAGES),
          proc.cpu,
        );
        migrationId = migration.id;
        const writer = sched.spawn(
          "CPU store",
          (function* (): Kfn<number> {
            const pfn = yield* proc.accessPage(vpn, true);
            // The store itself: no scheduling point between the PTE check and the write, as with a TLB.
            if (pfn >= 0) k.store.fill(pfn, VALUE);
            return pfn;
          })(),
          (proc.cpu + 1) % sched.cpus,
        );
        sched.runAll();
        sched.setChooser(() => 0);

        const where = `seed ${seed}, schedule ${JSON.stringify(sched.schedule)}`;
        expect(writer.state, where).toBe("done");
        expect(writer.result as number, where).toBeGreaterThanOrEqual(0);
        expect(migration.state, where).toBe("done");
        // The migration either completed or lost the written page back to RAM before its read-back.
        const result = migration.result;
        if (typeof result === "number") expect(result, where).toBe(-2);
        else expect(result, where).toEqual({ cpages: NPAGES, faults: 0 });
        if (k.stats.migrationWaits > waitsBefore) schedulesThatWaited++;

        expect(proc.readU32(vpn * P), where).toBe(VALUE);
        const page = new Uint32Array(proc.read(vpn * P, P).buffer);
        expect(
          page.every((word) => word === VALUE),
          where,
        ).toBe(true);
        // The other pages kept their data wherever they are.
        const others = proc.checkPages(addr, NPAGES, 3);
        expect(others, where).toEqual([TARGET]);
        expect(system.checkInvariants(), where).toEqual([]);
      }
      expect(schedulesThatWaited).toBeGreaterThan(0);
    });
  });
}
