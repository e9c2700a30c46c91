/**
 * S11 (KERNEL-NOTES section 9): until 41cddf83d8b0 (2025) migrate_device_finalize added the source
 * page to the LRU even when it had migrated away and was about to be freed; its memcg data had moved
 * to the device page, so whoever drained the per-CPU LRU batch hit folio_lruvec_lock's warning on a
 * page without a memcg. Today only the destination goes on the LRU (`migrate.finalizeLruOnlyDst`).
 * Device 0 migrates 2 pages to its memory on CPU 0 while a CPU store to page 0, also on CPU 0, may
 * fault it back; that migration back drains CPU 0's batch, and the warning is reported then.
 */
import { peekWords } from "../observe.js";
import type { Scenario, ScenarioThread } from "../scenario.js";
import { cpuStore, smallSystem, vpnOf } from "./common.js";

const STORED = 0x5a11;

export const s11Scenario: Scenario = {
  name: "s11",
  description:
    "modern: device 0 migrates 2 pages to its memory while a CPU store on the same CPU faults page 0 " +
    "back; finalize's putback of the freed source page warns when the LRU batch is drained",
  config: { protocol: "modern", switches: { "migrate.finalizeLruOnlyDst": true } },
  defect: { id: "S11", switches: { "migrate.finalizeLruOnlyDst": false }, kind: "invariant" },
  operations: [{ name: "device 0 MIGRATE_TO_DEV 2 pages" }, { name: "CPU store page 0" }],
  build(config, keep) {
    const system = smallSystem(config);
    const proc = system.spawn();
    const fd = system.device(0).open(proc);
    const addr = proc.mmap(2 * system.pageSize);
    proc.fillPages(addr, 2, 1);
    const vpn = vpnOf(addr);
    const threads: ScenarioThread[] = [];
    if (keep[0]) threads.push({ op: 0, cpu: 0, body: fd.mirror.cmdMigrateToDevice(vpn, 2) });
    if (keep[1]) threads.push({ op: 1, cpu: 0, body: cpuStore(proc, vpn, STORED) });
    return {
      system,
      threads,
      observeFinal: () => peekWords(proc, vpn, 2),
      watch: [{ process: proc.pid, vpn }],
    };
  },
};
