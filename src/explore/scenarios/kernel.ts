/**
 * Scenarios of the fixed kernel (issue item 6): races the migration protocol must survive, with no
 * defect switched on. Each must come out clean whatever the schedule: no deadlock, no assertion, the
 * invariants hold and what the threads saw matches some serial order of their operations.
 */
import { PAGE_SIZE } from "../../base/units.js";
import { dupMm } from "../../mm/fork.js";
import { sysMunmap } from "../../mm/mmap.js";
import type { Kfn } from "../../sched/thread.js";
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { deviceRead, deviceVsCpu, smallSystem, vpnOf } from "./common.js";

const MODERN = { protocol: "modern", switches: {} } as const;

/** Devices 0 and 1 migrate overlapping ranges of one buffer to their memory. */
export const twoDevicesOverlapScenario: Scenario = {
  name: "two-devices-overlap",
  description:
    "modern: device 0 migrates pages 0-2 of a buffer to its memory while device 1 migrates pages 1-3",
  config: MODERN,
  operations: [{ name: "device 0 MIGRATE_TO_DEV pages 0-2" }, { name: "device 1 MIGRATE_TO_DEV pages 1-3" }],
  build(config, keep) {
    const system = smallSystem(config, 2);
    const proc = system.spawn();
    const fd0 = system.device(0).open(proc);
    const fd1 = system.device(1).open(proc);
    const addr = proc.mmap(4 * PAGE_SIZE);
    proc.fillPages(addr, 4, 1);
    const vpn = vpnOf(addr);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: fd0.mirror.cmdMigrateToDevice(vpn, 3) });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: fd1.mirror.cmdMigrateToDevice(vpn + 1, 3) });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 4),
      watch: [
        { process: proc.pid, vpn: vpn + 1 },
        { process: proc.pid, vpn: vpn + 2 },
      ],
    };
  },
};

/** A CPU store and a CPU load on pages that device 0 is migrating back to system memory. */
export const cpuFaultsDuringMigrationScenario: Scenario = {
  name: "cpu-faults-during-migration",
  description:
    "modern: device 0 migrates 2 device pages back to system memory while a CPU stores to page 0 and another loads page 1",
  config: MODERN,
  operations: [
    { name: "device 0 MIGRATE_TO_SYS" },
    { name: "CPU store page 0" },
    { name: "CPU load page 1" },
  ],
  build: (config, keep) =>
    deviceVsCpu(config, keep, {
      prepare: (fd, addr) => fd.migrateToDevice(addr, 2),
      command: (fd, vpn) => fd.mirror.cmdMigrateToSystem(vpn, 2),
      cpus: [0, 1, 2],
    }),
};

/** fork while device 0 migrates the buffer to its memory; the child then reads what it inherited. */
export const forkDuringMigrationScenario: Scenario = {
  name: "fork-during-migration",
  description: "modern: the process forks while device 0 migrates 2 of its pages to device memory",
  config: MODERN,
  operations: [{ name: "device 0 MIGRATE_TO_DEV" }, { name: "fork" }],
  build(config, keep) {
    const system = smallSystem(config);
    const k = system.kernel;
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(2 * PAGE_SIZE);
    proc.fillPages(addr, 2, 1);
    const vpn = vpnOf(addr);
    let child: ReturnType<typeof system.adoptProcess> | null = null;
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: fd.mirror.cmdMigrateToDevice(vpn, 2) });
    if (keep[1])
      threads.push({
        op: 1,
        cpu: 1,
        body: (function* (): Kfn<number> {
          const mm = yield* dupMm(k, proc.mm);
          if (typeof mm === "number") return mm;
          child = system.adoptProcess(mm);
          return 0;
        })(),
      });
    return {
      system,
      threads,
      observeFinal: () =>
        `${peekWords(proc, vpn, 2)} child ${child === null ? "-" : peekWords(child, vpn, 2)}`,
      watch: [{ process: proc.pid, vpn }],
    };
  },
};

/** munmap of half the buffer while device 0 migrates all of it. */
export const munmapDuringMigrationScenario: Scenario = {
  name: "munmap-during-migration",
  description:
    "modern: the process unmaps page 1 of a 2-page buffer while device 0 migrates both pages to its memory",
  config: MODERN,
  operations: [{ name: "device 0 MIGRATE_TO_DEV" }, { name: "munmap page 1" }],
  build(config, keep) {
    const system = smallSystem(config);
    const k = system.kernel;
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(2 * PAGE_SIZE);
    proc.fillPages(addr, 2, 1);
    const vpn = vpnOf(addr);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: fd.mirror.cmdMigrateToDevice(vpn, 2) });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: sysMunmap(k, proc.mm, addr + PAGE_SIZE, PAGE_SIZE) });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 1),
      watch: [{ process: proc.pid, vpn: vpn + 1 }],
    };
  },
};

/** Device 1 mirrors a page through hmm_range_fault (READ) while device 0 migrates it to its memory. */
export const rangeFaultVsMigrationScenario: Scenario = {
  name: "hmm-range-fault-vs-migration",
  description: "modern: device 1 READs 2 pages (hmm_range_fault) while device 0 migrates them to its memory",
  config: MODERN,
  operations: [{ name: "device 1 READ" }, { name: "device 0 MIGRATE_TO_DEV" }],
  build(config, keep) {
    const system = smallSystem(config, 2);
    const proc = system.spawn();
    const reader = system.device(1).open(proc);
    const migrator = system.device(0).open(proc);
    const addr = proc.mmap(2 * PAGE_SIZE);
    proc.fillPages(addr, 2, 1);
    const vpn = vpnOf(addr);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 1, body: deviceRead(reader, vpn, 2), observe: String });
    // Migration is best effort (a page the READ's fault holds stays behind): its result is no observation.
    if (keep[1]) threads.push({ op: 1, cpu: 0, body: migrator.mirror.cmdMigrateToDevice(vpn, 2) });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 2),
      watch: [{ process: proc.pid, vpn }],
    };
  },
};

export const KERNEL_SCENARIOS: readonly Scenario[] = [
  twoDevicesOverlapScenario,
  cpuFaultsDuringMigrationScenario,
  forkDuringMigrationScenario,
  munmapDuringMigrationScenario,
  rangeFaultVsMigrationScenario,
];
