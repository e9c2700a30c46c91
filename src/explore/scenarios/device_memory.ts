/**
 * Scenarios of the fixed kernel for the memory types GPUs use today: device-exclusive access revoked
 * by the CPU, device-coherent memory the CPU reads and writes directly while it migrates, and a
 * long-term pin that must move a coherent page to RAM whatever the device does meanwhile. Each must
 * come out clean whatever the schedule, as the scenarios of kernel.ts.
 */
import { PAGE_SIZE } from "../../base/units.js";
import { FOLL_LONGTERM, FOLL_PIN, FOLL_WRITE, getUserPages } from "../../mm/gup.js";
import { PageTables, pteFrame, ptePresent } from "../../mm/pgtable.js";
import type { Kfn } from "../../sched/thread.js";
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { deviceVsCpu, smallSystem, vpnOf } from "./common.js";

const MODERN = { protocol: "modern", switches: {} } as const;
const COHERENT = { devices: [{ memory: "64KiB", type: "coherent" as const }] };

/** Device 0 takes two pages for exclusive (atomic) access while one CPU stores to one and another loads the other. */
export const exclusiveVsCpuScenario: Scenario = {
  name: "exclusive-vs-cpu",
  description:
    "modern: device 0 takes 2 pages for exclusive access (HMM_DMIRROR_EXCLUSIVE) while a CPU stores to page 0 and another loads page 1",
  config: MODERN,
  operations: [{ name: "device 0 EXCLUSIVE" }, { name: "CPU store page 0" }, { name: "CPU load page 1" }],
  build: (config, keep) =>
    deviceVsCpu(config, keep, { command: (fd, vpn) => fd.mirror.cmdExclusive(vpn, 2) }),
};

/** A coherent device migrates two pages to its memory while the CPU stores to one and loads the other. */
export const coherentMigrateVsCpuScenario: Scenario = {
  name: "coherent-migrate-vs-cpu",
  description:
    "modern: device-coherent device 0 migrates 2 pages to its memory (the CPU keeps mapping them) while a CPU stores to page 0 and another loads page 1",
  config: MODERN,
  operations: [
    { name: "device 0 MIGRATE_TO_DEV" },
    { name: "CPU store page 0" },
    { name: "CPU load page 1" },
  ],
  build: (config, keep) =>
    deviceVsCpu(config, keep, {
      extra: COHERENT,
      command: (fd, vpn) => fd.mirror.cmdMigrateToDevice(vpn, 2),
    }),
};

/**
 * A long-term pin (FOLL_LONGTERM) of page 0 while the coherent device migrates both pages to its memory,
 * one of them already there. Whatever the order, the pin ends on a page of RAM (check_and_migrate_
 * movable_pages moved it out, or the device never got it), the pinned page is the one the process maps
 * and the data is intact.
 */
export const longtermPinVsCoherentScenario: Scenario = {
  name: "longterm-pin-vs-coherent",
  description:
    "modern: the process pins page 0 long-term (FOLL_LONGTERM) while device-coherent device 0 migrates pages 0 and 1 to its memory",
  config: MODERN,
  operations: [{ name: "pin_user_pages(FOLL_LONGTERM) page 0" }, { name: "device 0 MIGRATE_TO_DEV" }],
  build(config, keep) {
    const system = smallSystem(config, 1, COHERENT);
    const k = system.kernel;
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(2 * PAGE_SIZE);
    proc.fillPages(addr, 2, 1);
    const vpn = vpnOf(addr);
    // Page 1 starts on the device: the migration has one page to move and one to leave.
    fd.migrateToDevice(addr + PAGE_SIZE, 1);
    const pinned: number[] = [];
    const threads: ScenarioThread[] = [];
    if (keep[0])
      threads.push({
        op: 0,
        cpu: 0,
        body: (function* (): Kfn<number> {
          yield* proc.mm.mmapLock.downRead();
          try {
            const flags = FOLL_PIN | FOLL_WRITE | FOLL_LONGTERM;
            return yield* getUserPages(system.migrateContext, system.gup, proc.mm, vpn, 1, flags, pinned);
          } finally {
            proc.mm.mmapLock.upRead();
          }
        })(),
        observe: (value) => `pinned ${String(value)}`,
      });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: fd.mirror.cmdMigrateToDevice(vpn, 2) });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 2),
      check: () => {
        const problems: string[] = [];
        for (const pfn of pinned) {
          if (k.pages.isDeviceCoherent(pfn))
            problems.push(`a long-term pin holds device-coherent pfn ${pfn}`);
          const table = k.pt.lookupTable(proc.mm.root, vpn);
          const pte = table < 0 ? 0 : k.pt.entries[PageTables.slot(table, vpn)]!;
          if (!ptePresent(pte) || pteFrame(pte) !== pfn)
            problems.push(`pinned pfn ${pfn} but the process's PTE is ${pte.toString(16)}`);
        }
        return problems;
      },
      watch: [{ process: proc.pid, vpn }],
    };
  },
};

export const DEVICE_MEMORY_SCENARIOS: readonly Scenario[] = [
  exclusiveVsCpuScenario,
  coherentMigrateVsCpuScenario,
  longtermPinVsCoherentScenario,
];
