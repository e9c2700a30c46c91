/**
 * Scenarios of the fixed kernel with transparent huge pages (mm/huge_memory.c): two CPUs faulting the
 * same empty 2 MiB, a PMD split by MADV_DONTNEED racing CPU accesses and a migration to a device that
 * splits the same PMD, and a CPU write replacing the huge zero PMD while a device reads it; and with
 * hugetlbfs, a copy-on-write of a huge page while a device reads it. Each must
 * come out clean whatever the schedule: no deadlock, no assertion, the invariants hold (head and tail
 * pages, entire_mapcount, no orphan tail, no leaked folio) and what the threads saw matches some serial
 * order of their operations.
 */
import { PAGE_SIZE } from "../../base/units.js";
import { sysMadvise } from "../../mm/madvise.js";
import {
  MADV_DONTNEED,
  MADV_HUGEPAGE,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_HUGETLB,
  MAP_PRIVATE,
} from "../../mm/mmap.js";
import { HPAGE_PMD_NR } from "../../mm/page.js";
import type { Process } from "../../process.js";
import type { System } from "../../system.js";
import { peekWords } from "../observe.js";
import type { ExploreConfig, Scenario, ScenarioThread } from "../scenario.js";
import { cpuLoad, cpuStore, deviceRead, loaded, STORED, smallSystem, vpnOf } from "./common.js";

const MODERN = { protocol: "modern", switches: {} } as const;
/** A 2 MiB-aligned address for the huge range. */
const HUGE_ADDR = 0x10_0000_0000;
/** The pages of the huge range the scenarios look at (first words), and report. */
const LOOKED_AT = [0, 1, 100, 200, 300] as const;

/** A system with room for two THPs, and a process with one MADV_HUGEPAGE 2 MiB at HUGE_ADDR. */
function hugeSystem(config: ExploreConfig): { system: System; proc: Process; vpn: number } {
  const system = smallSystem(config, 1, { ram: "6MiB" });
  const proc = system.spawn();
  proc.mmap(HPAGE_PMD_NR * PAGE_SIZE, { addr: HUGE_ADDR, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED });
  proc.madvise(HUGE_ADDR, HPAGE_PMD_NR * PAGE_SIZE, MADV_HUGEPAGE);
  return { system, proc, vpn: vpnOf(HUGE_ADDR) };
}

function finalWords(proc: Process, vpn: number): string {
  return LOOKED_AT.map((page) => peekWords(proc, vpn + page, 1)).join(";");
}

/** Two CPUs store to different pages of an untouched MADV_HUGEPAGE 2 MiB: both fault a THP, one maps it. */
export const thpFaultRaceScenario: Scenario = {
  name: "thp-fault-race",
  description:
    "modern: two CPUs store to pages 0 and 300 of an untouched MADV_HUGEPAGE 2 MiB; each faults a THP and only one maps",
  config: MODERN,
  operations: [{ name: "CPU store page 0" }, { name: "CPU store page 300" }],
  build(config, keep) {
    const { system, proc, vpn } = hugeSystem(config);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: cpuStore(proc, vpn, STORED) });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: cpuStore(proc, vpn + 300, STORED + 1) });
    return {
      system,
      threads,
      observeFinal: () => finalWords(proc, vpn),
      check: () => {
        const k = system.kernel;
        // The loser's folio went back: at most one THP is in use, and no 4 KiB page besides.
        return k.ram.usedPages > HPAGE_PMD_NR ? [`${k.ram.usedPages} pages in use, more than one THP`] : [];
      },
      watch: [{ process: proc.pid, vpn }],
    };
  },
};

/**
 * A written THP: MADV_DONTNEED of pages 0-1 splits its PMD while a CPU stores to page 100 and another
 * loads page 200.
 */
export const thpSplitVsCpuScenario: Scenario = {
  name: "thp-split-vs-cpu",
  description:
    "modern: MADV_DONTNEED of pages 0-1 of a THP splits its PMD while a CPU stores to page 100 and another loads page 200",
  config: MODERN,
  operations: [
    { name: "MADV_DONTNEED pages 0-1" },
    { name: "CPU store page 100" },
    { name: "CPU load page 200" },
  ],
  build(config, keep) {
    const { system, proc, vpn } = hugeSystem(config);
    proc.fillPages(HUGE_ADDR, HPAGE_PMD_NR, 1);
    const k = system.kernel;
    const threads: ScenarioThread[] = [];
    if (keep[0])
      threads.push({ op: 0, cpu: 0, body: sysMadvise(k, proc.mm, HUGE_ADDR, 2 * PAGE_SIZE, MADV_DONTNEED) });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: cpuStore(proc, vpn + 100, STORED) });
    if (keep[2]) threads.push({ op: 2, cpu: 1, body: cpuLoad(proc, vpn + 200), observe: loaded });
    return {
      system,
      threads,
      observeFinal: () => finalWords(proc, vpn),
      watch: [
        { process: proc.pid, vpn },
        { process: proc.pid, vpn: vpn + 100 },
      ],
    };
  },
};

/**
 * A written THP: device 0 migrates pages 0-3 (its collect splits the THP) while MADV_DONTNEED of
 * pages 256-257 splits the same PMD and a CPU stores to page 1.
 */
export const thpSplitVsMigrateScenario: Scenario = {
  name: "thp-split-vs-migrate",
  description:
    "modern: device 0 migrates pages 0-3 of a THP (collect splits it) while MADV_DONTNEED of pages 256-257 splits the same PMD and a CPU stores to page 1",
  config: MODERN,
  operations: [
    { name: "device 0 MIGRATE_TO_DEV pages 0-3" },
    { name: "MADV_DONTNEED pages 256-257" },
    { name: "CPU store page 1" },
  ],
  build(config, keep) {
    const { system, proc, vpn } = hugeSystem(config);
    proc.fillPages(HUGE_ADDR, HPAGE_PMD_NR, 1);
    const k = system.kernel;
    const fd = system.device(0).open(proc);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: fd.mirror.cmdMigrateToDevice(vpn, 4) });
    if (keep[1])
      threads.push({
        op: 1,
        cpu: 1,
        body: sysMadvise(k, proc.mm, HUGE_ADDR + 256 * PAGE_SIZE, 2 * PAGE_SIZE, MADV_DONTNEED),
      });
    if (keep[2]) threads.push({ op: 2, cpu: 1, body: cpuStore(proc, vpn + 1, STORED) });
    return {
      system,
      threads,
      observeFinal: () => `${finalWords(proc, vpn)};${peekWords(proc, vpn + 256, 1)}`,
      watch: [
        { process: proc.pid, vpn },
        { process: proc.pid, vpn: vpn + 1 },
      ],
    };
  },
};

/**
 * A read-faulted huge zero PMD: a CPU stores to page 1 (do_huge_zero_wp_pmd replaces it with a THP)
 * while device 0 READs pages 0-1 through its mirror. The device reads zeros or the stored value, never
 * a stale zero page after the store.
 */
export const hugeZeroWpVsDeviceReadScenario: Scenario = {
  name: "huge-zero-wp-vs-device-read",
  description:
    "modern: a CPU stores to page 1 of a huge zero PMD (a THP replaces it) while device 0 READs pages 0-1",
  config: MODERN,
  operations: [{ name: "CPU store page 1" }, { name: "device 0 READ pages 0-1" }],
  build(config, keep) {
    const { system, proc, vpn } = hugeSystem(config);
    proc.touch(HUGE_ADDR, 1, false);
    const fd = system.device(0).open(proc);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: cpuStore(proc, vpn + 1, STORED) });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: deviceRead(fd, vpn, 2), observe: String });
    return {
      system,
      threads,
      observeFinal: () => finalWords(proc, vpn),
      check: () => {
        // After both, a device READ sees what the CPU stored: no mirror entry of the zero folio is left.
        const words = new Uint32Array(2);
        const ret = system.kernel.sched.call("check", fd.mirror.cmdRead(vpn, 2, null, words));
        if (typeof ret === "number" || !keep[0]) return [];
        return words[1] === STORED ? [] : [`device READ after the store sees ${words[1]}, not ${STORED}`];
      },
      watch: [{ process: proc.pid, vpn: vpn + 1 }],
    };
  },
};

/**
 * A hugetlb page shared with a forked child: the parent's store copies it (hugetlb_wp) while device 0
 * READs it through its mirror. The device reads the old value or the new one, never the old folio
 * after the store.
 */
export const hugetlbCowVsDeviceReadScenario: Scenario = {
  name: "hugetlb-cow-vs-device-read",
  description:
    "modern: the parent stores to a hugetlb page it shares with a child (hugetlb_wp copies it) while device 0 READs it",
  config: MODERN,
  operations: [{ name: "CPU store page 1" }, { name: "device 0 READ pages 0-1" }],
  build(config, keep) {
    const system = smallSystem(config, 1, { ram: "6MiB", hugepages: 2 });
    const proc = system.spawn();
    proc.mmap(HPAGE_PMD_NR * PAGE_SIZE, {
      addr: HUGE_ADDR,
      flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_HUGETLB,
    });
    proc.fillPages(HUGE_ADDR, 2, 1);
    proc.fork();
    const vpn = vpnOf(HUGE_ADDR);
    const fd = system.device(0).open(proc);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: cpuStore(proc, vpn + 1, STORED) });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: deviceRead(fd, vpn, 2), observe: String });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 2),
      watch: [{ process: proc.pid, vpn: vpn + 1 }],
    };
  },
};

export const THP_SCENARIOS: readonly Scenario[] = [
  thpFaultRaceScenario,
  thpSplitVsCpuScenario,
  thpSplitVsMigrateScenario,
  hugeZeroWpVsDeviceReadScenario,
  hugetlbCowVsDeviceReadScenario,
];
