/**
 * S4 (KERNEL-NOTES section 9): before ffa65753c431 (5.17, "mm/migrate.c: rework
 * migration_entry_wait() to not take a pageref") a CPU that faulted on a migration entry took a
 * reference on the page while it waited for the page lock. The migration's pin check cannot tell that
 * reference from a pin, so every CPU waiting on the entry makes the migration of that page fail; its
 * PTE is restored, the waiters wake, and the caller tries again. The kernel's FIXME in
 * migrate_vma_check_page called the result an infinite loop (4.14 papered over it for device pages by
 * never failing their check); the livelock is a migration that several CPUs touching the page keep
 * failing for as long as they keep touching it.
 *
 * The scenario: device 0 migrates a 2-page buffer that straddles a PTE table boundary (so collect
 * yields between its two halves, where a CPU can fault on page 0's migration entry) and, as drivers
 * that need the data on the device do, retries until every page is on the device; two CPUs load page
 * 0 meanwhile. `fault.migrationWaitTakesRef` brings the reference back.
 */
import { PAGE_SIZE } from "../../base/units.js";
import type { DeviceFile } from "../../device.js";
import { MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE } from "../../mm/mman.js";
import { LivelockError } from "../../sched/scheduler.js";
import type { Kfn } from "../../sched/thread.js";
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { cpuLoad, loaded, smallSystem } from "./common.js";

/** The last page of one PTE table and the first of the next. */
const FIRST_VPN = 3 * 512 - 1;
/** Attempts after which the migration is reported as one that never completes. */
const ATTEMPTS_MAX = 64;

/**
 * HMM_DMIRROR_MIGRATE_TO_DEV again and again until it reports every page mirrored on the device (the
 * command fails with -ENOENT when one stayed behind). Each retry is a scheduling point of a retry
 * loop: the driver spins until the CPUs that foiled the last attempt have moved on.
 */
export function* migrateUntilDone(fd: DeviceFile, vpn: number, npages: number): Kfn<number> {
  const sched = fd.mirror.device.ctx.k.sched;
  for (let attempt = 1; attempt <= ATTEMPTS_MAX; attempt++) {
    const ret = yield* fd.mirror.cmdMigrateToDevice(vpn, npages);
    if (typeof ret !== "number") return attempt;
    if (sched.contended) yield sched.atRetry("driver: migrate again until every page moved", 0);
  }
  throw new LivelockError(`MIGRATE_TO_DEV of ${npages} pages failed ${ATTEMPTS_MAX} times in a row`);
}

export const s4Scenario: Scenario = {
  name: "s4",
  description:
    "modern: device 0 migrates 2 pages, retrying until both moved, while two CPUs load page 0; a CPU " +
    "waiting on the migration entry with a page reference fails the migration's pin check",
  config: { protocol: "modern", switches: { "fault.migrationWaitTakesRef": false } },
  defect: { id: "S4", switches: { "fault.migrationWaitTakesRef": true }, kind: "livelock" },
  // The livelock needs a cycle in which every thread runs and the lock holder is preempted twice more.
  preemptions: 3,
  operations: [
    { name: "device 0 MIGRATE_TO_DEV until done" },
    { name: "CPU 1 load page 0" },
    { name: "CPU 2 load page 0" },
  ],
  build(config, keep) {
    const system = smallSystem(config, 1, { cpus: 3 });
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(2 * PAGE_SIZE, {
      addr: FIRST_VPN * PAGE_SIZE,
      flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
    });
    proc.fillPages(addr, 2, 1);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: migrateUntilDone(fd, FIRST_VPN, 2) });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: cpuLoad(proc, FIRST_VPN), observe: loaded });
    if (keep[2]) threads.push({ op: 2, cpu: 2, body: cpuLoad(proc, FIRST_VPN), observe: loaded });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, FIRST_VPN, 2),
      watch: [{ process: proc.pid, vpn: FIRST_VPN }],
    };
  },
};
