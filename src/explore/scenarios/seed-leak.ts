/**
 * seed-leak (KERNEL-NOTES section 9): the posted seed of migrate_vma never drops the reference collect
 * took once prepare has isolated the page, so every page fails the pin check (one reference more than
 * its mappings and the migration), nothing migrates, and each page keeps one reference for ever. The
 * series as merged puts it in prepare (a5430dda8a3a, `migrate.dropCollectRefAfterIsolate`). A CPU
 * load races the migration so the scenario has a schedule to explore; the leak shows at the end,
 * whatever the schedule, as references the invariant checker finds held by no thread.
 */
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { cpuLoad, loaded, smallSystem, vpnOf } from "./common.js";

const PAGES = 2;

export const seedLeakScenario: Scenario = {
  name: "seed-leak",
  description:
    "seed protocol: device 0 migrates 2 pages to its memory while a CPU loads page 1; without prepare's " +
    "put_page after isolation every page fails the pin check and keeps a leaked reference",
  // The fixed kernel is the series as merged (4.14), where a5430dda8a3a put the reference back. The
  // seed with only the put restored is no fixed kernel: it cannot bring a device page back (its
  // collect skips device-private entries), so the CPU load of a migrated page would refault for ever.
  config: { protocol: "4.14", switches: {} },
  defect: { id: "seed-leak", protocol: "seed", switches: {}, kind: "invariant" },
  operations: [{ name: "device 0 MIGRATE_TO_DEV 2 pages" }, { name: "CPU load page 1" }],
  build(config, keep) {
    const system = smallSystem(config);
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(PAGES * system.pageSize);
    proc.fillPages(addr, PAGES, 1);
    const vpn = vpnOf(addr);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: fd.mirror.cmdMigrateToDevice(vpn, PAGES) });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: cpuLoad(proc, vpn + 1), observe: loaded });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, PAGES),
      watch: [
        { process: proc.pid, vpn },
        { process: proc.pid, vpn: vpn + 1 },
      ],
    };
  },
};
