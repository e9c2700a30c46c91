/**
 * S10 (KERNEL-NOTES section 9): before a5430dda8a3a finalize put every page back with
 * putback_lru_page, ZONE_DEVICE pages included, so a page moved to device memory landed on an LRU
 * list (and a device page migrated back left one there on its way to being freed). 4.14 puts device
 * pages (`migrate.zoneDeviceAwarePutback`). Device 0 migrates 2 pages to its memory while a CPU
 * stores to page 1, which may fault it back from the device; the invariant checker finds device
 * pages on the LRU at the end.
 */
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { cpuStore, smallSystem, vpnOf } from "./common.js";

const STORED = 0x5a10;

export const s10Scenario: Scenario = {
  name: "s10",
  description:
    "4.14: device 0 migrates 2 pages to its memory while a CPU stores to page 1; with putback_lru_page " +
    "on ZONE_DEVICE pages the device pages end on an LRU list",
  config: { protocol: "4.14", switches: { "migrate.zoneDeviceAwarePutback": true } },
  defect: { id: "S10", switches: { "migrate.zoneDeviceAwarePutback": false }, kind: "invariant" },
  operations: [{ name: "device 0 MIGRATE_TO_DEV 2 pages" }, { name: "CPU store page 1" }],
  build(config, keep) {
    const system = smallSystem(config);
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(2 * system.pageSize);
    proc.fillPages(addr, 2, 1);
    const vpn = vpnOf(addr);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: fd.mirror.cmdMigrateToDevice(vpn, 2) });
    if (keep[1]) threads.push({ op: 1, cpu: 1, body: cpuStore(proc, vpn + 1, STORED) });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 2),
      watch: [{ process: proc.pid, vpn: vpn + 1 }],
    };
  },
};
