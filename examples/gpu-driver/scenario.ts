/**
 * Scenarios for `hmmsim explore --scenario examples/gpu-driver/scenario.ts`: toygpu's operations run
 * as threads, one scenario per bug and a fixed twin of each (the driver's options are not kernel
 * switches, so each variant is a scenario of its own, and a schedule string names the variant).
 *
 *   gpu-driver-own-migrate        toygpu migrates a page to its memory while the device writes it
 *                                 (skipOwnMigrate: the write is mapped to the page migrated away)
 *   gpu-driver-retry-unlocked     the CPU faults a device page back while the device writes it
 *                                 (retryCheckUnlocked: the write is mapped to the page freed)
 *   gpu-driver-evict              eviction, a device read and a CPU store on device pages (fixed)
 *
 * and `-fixed` twins of the first two. Each execution builds a fresh system; the explorer judges it
 * with the model's invariants, toygpu's registered checker and the data oracle (every serial order of
 * the operations leaves the device's value in the page).
 */
import { type Kfn, PAGE_SIZE, pageValue, System } from "hmmsim/driver";
import { type ExploreConfig, peekWords, type Scenario, type ScenarioThread, systemOptionsFor } from "hmmsim/explore";
import { ToyGpu, type ToyGpuOptions } from "./driver.js";

/** What the device stores. */
const DEVICE_VALUE = 0x6d6d;
/** What a CPU store writes. */
const CPU_VALUE = 0x5a5a;
const PAGES = 2;

/** A fresh system with one process, PAGES filled pages of it, and toygpu mirroring it. */
function setup(config: ExploreConfig, options: Omit<ToyGpuOptions, "pages">) {
  if (config.protocol !== "modern") throw new Error("toygpu uses migrate_vma_setup: protocol modern only");
  const system = new System(systemOptionsFor(config, { ram: "1MiB", store: "tokens", devices: [] }));
  const proc = system.spawn();
  const addr = proc.mmap(PAGES * PAGE_SIZE);
  proc.fillPages(addr, PAGES, 1);
  const gpu = system.attachDriver("toygpu", (ctx) => new ToyGpu(ctx, proc.mm, { pages: 8, ...options }));
  const vpn = addr / PAGE_SIZE;
  const run = <T>(name: string, body: Kfn<T>): T => system.kernel.sched.call(name, body);
  return { system, proc, gpu, vpn, run };
}

/** A CPU load of the page at vpn, as a thread: the word it read (or the signal, negative). */
function* cpuLoad(s: ReturnType<typeof setup>, vpn: number): Kfn<number> {
  const pfn = yield* s.proc.accessPage(vpn, false);
  return pfn < 0 ? pfn : s.system.kernel.store.word(pfn);
}

function* cpuStore(s: ReturnType<typeof setup>, vpn: number, value: number): Kfn<number> {
  const pfn = yield* s.proc.accessPage(vpn, true);
  if (pfn >= 0) s.system.kernel.store.fill(pfn, value);
  return pfn;
}

const describeWord = (value: unknown, vpnIndex: number): string =>
  value === pageValue(1, vpnIndex) ? "the old value" : value === DEVICE_VALUE ? "the device's value" : `word ${String(value)}`;

const FIXED = { protocol: "modern", switches: {} } as const;

function ownMigrate(skipOwnMigrate: boolean): Scenario {
  return {
    name: skipOwnMigrate ? "gpu-driver-own-migrate" : "gpu-driver-own-migrate-fixed",
    description: `toygpu migrates a page to its memory while the device writes it${skipOwnMigrate ? " (bug: skipOwnMigrate)" : ""}`,
    config: FIXED,
    operations: [{ name: "toygpu migrate vpn to device" }, { name: "device write vpn" }],
    build(config, keep) {
      const s = setup(config, { skipOwnMigrate });
      const threads: ScenarioThread[] = [];
      if (keep[0]) threads.push({ op: 0, cpu: 0, body: s.gpu.migrateToDevice(s.vpn, 1) });
      if (keep[1]) threads.push({ op: 1, cpu: 1, body: s.gpu.deviceAccess(s.vpn, true, DEVICE_VALUE) });
      return {
        system: s.system,
        threads,
        observeFinal: () => peekWords(s.proc, s.vpn, 1),
        watch: [{ process: s.proc.pid, vpn: s.vpn }],
      };
    },
  };
}

function retryUnlocked(retryCheckUnlocked: boolean): Scenario {
  return {
    name: retryCheckUnlocked ? "gpu-driver-retry-unlocked" : "gpu-driver-retry-unlocked-fixed",
    description: `the CPU faults a toygpu page back to RAM while the device writes it${retryCheckUnlocked ? " (bug: retryCheckUnlocked)" : ""}`,
    config: FIXED,
    operations: [{ name: "CPU load vpn" }, { name: "device write vpn" }],
    build(config, keep) {
      const s = setup(config, { retryCheckUnlocked });
      // The page starts in device memory, not yet in the device page table (it maps on first use).
      s.run("toygpu migrate", s.gpu.migrateToDevice(s.vpn, 1));
      const threads: ScenarioThread[] = [];
      if (keep[0]) threads.push({ op: 0, cpu: 0, body: cpuLoad(s, s.vpn), observe: (v) => describeWord(v, 0) });
      if (keep[1]) threads.push({ op: 1, cpu: 1, body: s.gpu.deviceAccess(s.vpn, true, DEVICE_VALUE) });
      return {
        system: s.system,
        threads,
        observeFinal: () => peekWords(s.proc, s.vpn, 1),
        watch: [{ process: s.proc.pid, vpn: s.vpn }],
      };
    },
  };
}

/** The fixed driver's eviction against a device read of one device page and a CPU store to the other. */
export const evictScenario: Scenario = {
  name: "gpu-driver-evict",
  description: "toygpu evicts its memory while the device reads one of its pages and the CPU stores to another",
  config: FIXED,
  operations: [{ name: "toygpu evict all" }, { name: "device read vpn" }, { name: "CPU store vpn+1" }],
  build(config, keep) {
    const s = setup(config, {});
    s.run("toygpu migrate", s.gpu.migrateToDevice(s.vpn, PAGES));
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: s.gpu.evictAll() });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: s.gpu.deviceAccess(s.vpn, false), observe: (v) => describeWord(v, 0) });
    if (keep[2]) threads.push({ op: 2, cpu: 0, body: cpuStore(s, s.vpn + 1, CPU_VALUE) });
    return {
      system: s.system,
      threads,
      observeFinal: () => peekWords(s.proc, s.vpn, PAGES),
      watch: [
        { process: s.proc.pid, vpn: s.vpn },
        { process: s.proc.pid, vpn: s.vpn + 1 },
      ],
    };
  },
};

export const ownMigrateScenario = ownMigrate(true);
export const ownMigrateFixedScenario = ownMigrate(false);
export const retryUnlockedScenario = retryUnlocked(true);
export const retryUnlockedFixedScenario = retryUnlocked(false);

export const scenarios: readonly Scenario[] = [
  ownMigrateScenario,
  retryUnlockedScenario,
  ownMigrateFixedScenario,
  retryUnlockedFixedScenario,
  evictScenario,
];
