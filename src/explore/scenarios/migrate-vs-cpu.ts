/**
 * The canonical scenario (the one `npm run bench` times): device 0 migrates a 4-page buffer to its
 * memory while one CPU stores to page 1 and another loads page 2. Whatever the schedule, the load sees
 * the page's value, the store is kept, and the state is consistent.
 */
import { PAGE_SIZE } from "../../base/units.js";
import { pageValue } from "../../process.js";
import type { Kfn } from "../../sched/thread.js";
import { System } from "../../system.js";
import { peekWords } from "../observe.js";
import { type Scenario, type ScenarioThread, systemOptionsFor } from "../scenario.js";

const PAGES = 4;
const STORED = 0x5a5a;

export const migrateVsCpuScenario: Scenario = {
  name: "migrate-vs-cpu",
  description:
    "device 0 migrates a 4-page buffer to its memory (MIGRATE_TO_DEV) while a CPU stores to page 1 and another loads page 2",
  config: { protocol: "modern", switches: {} },
  operations: [{ name: "device 0 MIGRATE_TO_DEV" }, { name: "CPU store vpn+1" }, { name: "CPU load vpn+2" }],
  build(config, keep) {
    const system = new System(
      systemOptionsFor(config, { ram: "1MiB", store: "tokens", devices: [{ memory: "2MiB" }] }),
    );
    const k = system.kernel;
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(PAGES * PAGE_SIZE);
    proc.fillPages(addr, PAGES, 1);
    const vpn = addr / PAGE_SIZE;
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: fd.mirror.cmdMigrateToDevice(vpn, PAGES) });
    if (keep[1])
      threads.push({
        op: 1,
        cpu: 1,
        body: (function* (): Kfn<number> {
          const pfn = yield* proc.accessPage(vpn + 1, true);
          if (pfn >= 0) k.store.fill(pfn, STORED);
          return pfn;
        })(),
      });
    if (keep[2])
      threads.push({
        op: 2,
        cpu: 1,
        body: (function* (): Kfn<number> {
          const pfn = yield* proc.accessPage(vpn + 2, false);
          return pfn < 0 ? pfn : k.store.word(pfn);
        })(),
        observe: (value) => (value === pageValue(1, 2) ? "page 2's value" : `word ${String(value)}`),
      });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, PAGES),
      watch: [
        { process: proc.pid, vpn: vpn + 1 },
        { process: proc.pid, vpn: vpn + 2 },
      ],
    };
  },
};
